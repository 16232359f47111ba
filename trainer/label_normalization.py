"""A regression label's normalization, read back from the tf.Transform graph.

Label normalization is preprocessing, so it is written once, in the
``preprocessing_fn`` (e.g. ``tft.scale_to_z_score(label)``, whose mean and std are
TFT analyzers computed over the training data). The trainer learns the normalized
label; the export must answer in the user's units. :func:`label_statistics` finds
the ``(mean, std)`` to undo by running the transform graph itself on a few raw label
values, so it needs no side channel. (TFT's schema annotations, the other way to
carry analyzer values to the trainer, are not available in its open-source builds.)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

# Raw label values the graph is probed with; three, to tell an affine map from others.
_PROBES = (0.0, 1.0, 2.0)


def label_statistics(tft_output: tft.TFTransformOutput, label_key: str) -> tuple[float, float]:
    """``(mean, std)`` such that ``raw label = transformed label * std + mean``.

    ``(0.0, 1.0)`` when the ``preprocessing_fn`` passes the label through. Raises
    ``ValueError`` when the label is not a float raw feature mapped to a transformed
    feature of the same name, or when that map is not affine (a log, a bucketization):
    give the head its statistics explicitly then.
    """
    raw_spec = tft_output.raw_feature_spec()
    spec = raw_spec.get(label_key)
    if not isinstance(spec, tf.io.FixedLenFeature) or spec.dtype != tf.float32 or spec.shape:
        raise ValueError(
            f'label "{label_key}" is not a scalar float raw feature ({spec}); '
            "pass label_normalization=(mean, std) explicitly"
        )
    # The transform layer prunes the outputs whose inputs are missing, as it does for
    # the label at serving time; here only the label goes in and only it comes out.
    transformed = tft_output.transform_features_layer()(
        {label_key: tf.constant(_PROBES, tf.float32)}
    )
    if label_key not in transformed:
        raise ValueError(
            f'the preprocessing_fn has no output "{label_key}" computed from the raw label '
            "alone; pass label_normalization=(mean, std) explicitly"
        )
    t0, t1, t2 = np.asarray(transformed[label_key], np.float64).reshape(-1)
    scale = t1 - t0  # transformed units per raw unit: 1 / std
    if scale <= 0 or not np.isclose(t2 - t1, scale, rtol=1e-4, atol=1e-6):
        raise ValueError(
            f'the preprocessing_fn maps label "{label_key}" {list(_PROBES)} -> '
            f"{[t0, t1, t2]}, not by an increasing affine map (x - mean) / std; "
            "pass label_normalization=(mean, std) explicitly"
        )
    std = 1.0 / scale
    return float(-t0 * std), float(std)
