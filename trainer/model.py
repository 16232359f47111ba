"""The Estimator-era contract on tf_keras: ``train``, ``evaluate``, ``predict``,
``export_saved_model``, around a tf_keras model, a head and the transform output."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from serving_input import ServingInputReceiver
from trainer import export
from trainer.distribution import barrier, is_chief, write_dir
from trainer.heads import ClassificationHead, Head, MultiHead

InputFn = Callable[[], tf.data.Dataset]


def as_tft_output(transform_output: str | tft.TFTransformOutput) -> tft.TFTransformOutput:
    """Accepts a transform output directory or an already open ``TFTransformOutput``."""
    if isinstance(transform_output, tft.TFTransformOutput):
        return transform_output
    return tft.TFTransformOutput(transform_output)


# Metric names (after "val_" and a head's prefix) that are better when lower / higher.
_LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "rmse", "mape", "crossentropy")
_HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall")

HISTORY_FILE = "history.csv"
BACKUP_DIR = "backup"
# The legacy HDF5 format: the ".weights.h5" one fails to load into a MirroredStrategy
# model (its metrics' sync-on-read variables).
BEST_CHECKPOINT = os.path.join("checkpoints", "best.h5")


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


def _best_so_far(history_path: str, monitor: str, mode: str) -> float | None:
    """The best ``monitor`` value of the epochs already run (a resumed run's history)."""
    if not tf.io.gfile.exists(history_path):
        return None
    with tf.io.gfile.GFile(history_path) as f:
        values = [float(row[monitor]) for row in csv.DictReader(f) if row.get(monitor)]
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


class BestCheckpoint(tf_keras.callbacks.Callback):
    """Saves the weights whenever ``monitor`` improves, atomically (written beside, then
    renamed): a run killed while saving keeps the previous best intact, which Keras'
    ``ModelCheckpoint`` writing in place does not. ``best``: the value to beat (a
    resumed run's best so far)."""

    def __init__(self, path: str, monitor: str, mode: str, best: float | None = None):
        super().__init__()
        self.path, self.monitor, self.mode = path, monitor, mode
        self.best = best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best = float(value)
            tf.io.gfile.makedirs(os.path.dirname(self.path))
            # The same suffix: it picks the weights file format.
            temp = os.path.join(os.path.dirname(self.path), f".tmp-{os.path.basename(self.path)}")
            self.model.save_weights(temp)
            tf.io.gfile.rename(temp, self.path, overwrite=True)


class Model:
    """A trainable, exportable model: a tf_keras model (transformed features -> logits)
    with a head, bound to the tf.Transform output it was trained on.

    Use it directly for a user's own tf_keras model; the canned models
    (:class:`trainer.DNNClassifier`, ...) build theirs from the transformed metadata.
    A :class:`~trainer.MultiHead` takes a model whose output is a dict (head name ->
    logits) and ``label_key`` the list of its label keys.
    ``class_weights`` (a single-label classifier's, in label vocabulary order) weigh
    each training example by its class (see :func:`trainer.class_weights`).
    ``loss`` replaces the head's (training only: the export never carries it).
    ``postprocess`` maps the head's predictions (a dict of tensors) to the exported
    ones, e.g. per-token tag ids to tag names; it is traced into the export.
    Build the model inside a ``tf.distribute`` strategy's ``scope()`` to train with it.
    """

    def __init__(
        self,
        keras_model: tf_keras.Model,
        head: Head,
        transform_output: str | tft.TFTransformOutput,
        label_key: str | Sequence[str],
        *,
        model_dir: str | None = None,
        optimizer: str | tf_keras.optimizers.Optimizer = "adam",
        learning_rate: float = 0.01,
        class_weights: Sequence[float] | None = None,
        postprocess: Callable[[dict], dict] | None = None,
        loss=None,
    ):
        self.keras_model = keras_model
        self.postprocess = postprocess
        self.head = head
        self.tft_output = as_tft_output(transform_output)
        self.label_key = label_key if isinstance(label_key, str) else list(label_key)
        self.model_dir = model_dir
        if class_weights is not None and not isinstance(head, ClassificationHead):
            raise ValueError(f"class_weights need a single-label classification head, not {head}")
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        if isinstance(optimizer, str):
            optimizer = tf_keras.optimizers.get(
                {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
            )
        self.keras_model.compile(
            optimizer=optimizer,
            loss=loss if loss is not None else head.loss(),
            metrics=head.metrics(),
            loss_weights=head.loss_weights(),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(label={self.label_key!r}, head={self.head!r}, "
            f"inputs={list(self.keras_model.input_names)}, model_dir={self.model_dir!r})"
        )

    @property
    def label_keys(self) -> list[str]:
        """The transformed labels the model learns (one, or a multi-head model's)."""
        return [self.label_key] if isinstance(self.label_key, str) else list(self.label_key)

    def _dataset(self, input_fn: InputFn, *, weighted: bool = False) -> tf.data.Dataset:
        if weighted and self.class_weights is not None:
            weights = tf.constant(self.class_weights, tf.float32)
            return input_fn().map(
                lambda x, y: (x, self.head.label_for_loss(y), tf.gather(weights, y))
            )
        return input_fn().map(lambda x, y: (x, self.head.label_for_loss(y)))

    def train(
        self,
        input_fn: InputFn,
        *,
        eval_input_fn: InputFn | None = None,
        epochs: int = 1,
        early_stopping_patience: int | None = None,
        monitor: str = "val_loss",
    ) -> dict[str, list[float]]:
        """Fits the model; returns the Keras history (per-epoch metrics, every epoch of a
        resumed run included).

        With ``model_dir``: TensorBoard logs (``logs/``), the best checkpoint by
        ``monitor`` (``checkpoints/best.h5``), the per-epoch history
        (``history.csv``) and a backup after each epoch (``backup/``): a run killed
        midway, started again, resumes from its last finished epoch. With
        ``early_stopping_patience``, stops when ``monitor`` stops improving (its mode,
        min or max, from its name: :func:`monitor_mode`) and restores the best weights.
        Under a multi-worker strategy every worker calls it; only the chief writes
        ``model_dir`` (:mod:`trainer.distribution`), and a rerun of all the workers
        resumes from the chief's backup.
        """
        if not eval_input_fn and monitor.startswith("val_"):
            monitor = monitor.removeprefix("val_")
        mode = monitor_mode(monitor)
        callbacks = []
        if early_stopping_patience is not None:
            callbacks.append(
                tf_keras.callbacks.EarlyStopping(
                    monitor=monitor,
                    mode=mode,
                    patience=early_stopping_patience,
                    restore_best_weights=True,
                )
            )
        if not self.model_dir:
            history = self._fit(input_fn, eval_input_fn, epochs, callbacks)
            return {k: [float(v) for v in vs] for k, vs in history.history.items()}
        strategy = self.keras_model.distribute_strategy
        # Read by every worker: the chief's files. Written: into out_dir (the model
        # folder on the chief, a temporary one on the other workers).
        history_path = os.path.join(self.model_dir, HISTORY_FILE)
        best_path = os.path.join(self.model_dir, BEST_CHECKPOINT)
        backup_dir = os.path.join(self.model_dir, BACKUP_DIR)
        # Keras empties the backup folder when a fit finishes; a killed one leaves files.
        resuming = tf.io.gfile.isdir(backup_dir) and bool(tf.io.gfile.listdir(backup_dir))
        if not resuming and is_chief(strategy) and tf.io.gfile.exists(history_path):
            tf.io.gfile.remove(history_path)  # a finished run's: this one starts afresh
        with write_dir(self.model_dir, strategy) as out_dir:
            # In this order: a run killed between two of them has saved its best
            # weights and its backup before its history row (the row is the proof).
            callbacks += [
                BestCheckpoint(
                    os.path.join(out_dir, BEST_CHECKPOINT),
                    monitor,
                    mode,
                    # A resumed run keeps the best of the epochs before the interruption.
                    best=_best_so_far(history_path, monitor, mode) if resuming else None,
                ),
                # Keras' own multi-worker handling: the chief writes the backup, every
                # worker restores from it.
                tf_keras.callbacks.BackupAndRestore(backup_dir),
                tf_keras.callbacks.CSVLogger(os.path.join(out_dir, HISTORY_FILE), append=True),
                tf_keras.callbacks.TensorBoard(os.path.join(out_dir, "logs")),
            ]
            self._fit(input_fn, eval_input_fn, epochs, callbacks)
        barrier(strategy)  # the chief's last checkpoint and history row are written
        if early_stopping_patience is not None and tf.io.gfile.exists(best_path):
            # Also when training ran out of epochs, or resumed: the best epoch's weights.
            self.keras_model.load_weights(best_path)
        with tf.io.gfile.GFile(history_path) as f:
            rows = list(csv.DictReader(f))
        return {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"}

    def _fit(self, input_fn: InputFn, eval_input_fn: InputFn | None, epochs: int, callbacks):
        return self.keras_model.fit(
            self._dataset(input_fn, weighted=True),
            validation_data=self._dataset(eval_input_fn) if eval_input_fn else None,
            epochs=epochs,
            callbacks=callbacks,
            verbose=0,
        )

    def _by_head(self, metrics: dict[str, float]) -> dict:
        """Keras' flat metric names -> ``{head: {metric: value}}`` for a multi-head model
        (the summed loss under ``loss``); unchanged for one head."""
        if not isinstance(self.head, MultiHead):
            return metrics
        # Keras prefixes a metric with its output layer's name: the outputs are the dict
        # (head name -> logits) flattened in sorted key order.
        layers = dict(zip(sorted(self.head.heads), self.keras_model.output_names))
        nested: dict = {"loss": metrics["loss"], **{name: {} for name in self.head.heads}}
        for key, value in metrics.items():
            owners = [n for n in layers if key.startswith(f"{layers[n]}_")]
            if owners:  # the longest layer name that prefixes the key
                name = max(owners, key=lambda n: len(layers[n]))
                nested[name][key[len(layers[name]) + 1 :]] = value
        return nested

    def evaluate(self, input_fn: InputFn) -> dict:
        """Loss and metrics over one pass of ``input_fn``; also ``model_dir/metrics.json``.

        One head: ``{metric: value}``; a multi-head model: ``{"loss": the weighted sum,
        head: {metric: value}}``.
        """
        metrics = self.keras_model.evaluate(self._dataset(input_fn), verbose=0, return_dict=True)
        metrics = self._by_head({k: float(v) for k, v in metrics.items()})
        if self.model_dir and is_chief(self.keras_model.distribute_strategy):
            tf.io.gfile.makedirs(self.model_dir)
            with tf.io.gfile.GFile(os.path.join(self.model_dir, "metrics.json"), "w") as f:
                json.dump(metrics, f, indent=2)
        return metrics

    def predict(self, input_fn: InputFn) -> dict[str, np.ndarray]:
        """The ``predict`` outputs for every example of ``input_fn`` (transformed features)."""
        batches = []
        for batch in input_fn():
            features = batch[0] if isinstance(batch, tuple) else batch
            logits = self.keras_model(features, training=False)
            predictions = export.predictions_of(self.head, logits, self.postprocess, features)
            batches.append({k: v.numpy() for k, v in predictions.items()})
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]} if batches else {}

    def export_saved_model(
        self,
        export_dir_base: str,
        serving_input_fn: Callable[[], ServingInputReceiver],
        *,
        version: int | None = None,
        warmup_examples: Sequence[bytes] = (),
        check_examples: Sequence[bytes] | None = None,
        feature_annotations: Mapping[str, Mapping] | None = None,
        statistics: str | None = None,
    ) -> str:
        """Exports for TF Serving; returns ``export_dir_base/<version>``.

        With a parsing ``serving_input_fn``, the signatures are the head's canned-estimator
        set (``serving_default`` = ``classification`` for a classifier, ``regression``
        for a regressor; ``predict``) plus ``predict_raw`` and ``transform_features``;
        with a raw one, ``serving_default`` = ``predict``.
        ``warmup_examples`` (serialized raw tf.Examples) are written as TF Serving's
        warm-up requests; ``feature_annotations`` (feature -> e.g. ``{"list": True}``)
        go beside them into ``assets.extra/raw_feature_spec.json``. The version is
        published only after a fresh process has loaded it as TF Serving does and run
        every signature on ``check_examples`` (default: the warm-up examples), also
        with every nullable feature absent (:func:`trainer.export.export_saved_model`).
        ``statistics``: a training statistics file the export carries for the server's
        per-request data checks.
        """
        return export.export_saved_model(
            self.keras_model,
            self.head,
            self.tft_output,
            export_dir_base,
            serving_input_fn,
            label_keys=self.label_keys,
            version=version,
            warmup_examples=warmup_examples,
            check_examples=check_examples,
            feature_annotations=feature_annotations,
            postprocess=self.postprocess,
            statistics=statistics,
        )
