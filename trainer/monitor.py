"""Which way a monitored metric improves (early stopping, the best checkpoint), read
from its name. No TensorFlow: the config checks ``training.early_stopping.monitor``
with it before anything heavy loads."""

from __future__ import annotations

# Metric names (after "val_" and a head's prefix) that are better when lower / higher.
_LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "rmse", "mape", "crossentropy")
_HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall")


def monitor_mode(monitor: str) -> str:
    """``"min"`` or ``"max"``: how a monitored metric improves, from its name
    (``val_loss``, ``val_delayed_auc``, ``rmse`` ...). Keras' own ``auto`` mode
    takes anything without "acc" for a loss, AUC included."""
    name = monitor.removeprefix("val_")
    if name.endswith(_HIGHER_IS_BETTER):
        return "max"
    if name.endswith(_LOWER_IS_BETTER):
        return "min"
    raise ValueError(
        f"cannot tell whether {monitor!r} is better lower or higher: monitor a loss, "
        f"error, mae, mse or rmse (lower) or an accuracy, auc, precision or recall (higher)"
    )
