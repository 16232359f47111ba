"""Numbers: imputation, clipping, log1p, scaling and quantile buckets.

A number leaves as float32 [] (the contract's *number*); ``bucketize`` turns it into
a categorical id. The steps apply in the order impute -> clip -> log1p -> bucketize /
scale, each analyzer over the training data as the previous step left it.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from transform.ops.categories import most_frequent
from transform.ops.missing import densify, present
from transform.preprocessing_config import NUMBER_ONLY_IMPUTE, Bucketize, Clip, ImputeStrategy


def impute(x, strategy: ImputeStrategy | None, value, name: str) -> tf.Tensor:
    """A dense [batch] tensor: ``x`` itself, or a nullable ``x`` with its gaps filled."""
    if not isinstance(x, tf.SparseTensor):
        return x
    if strategy in NUMBER_ONLY_IMPUTE:
        values = tf.cast(x.values, tf.float32)
        if strategy == "mean":
            fill = tft.mean(values, name=f"{name}_impute_mean")
        else:
            fill = tft.quantiles(values, num_buckets=2, epsilon=0.01, name=f"{name}_median")[0, 0]
        fill = tf.cast(fill, x.dtype)
    elif strategy == "most_frequent":
        fill = most_frequent(x, name)
    else:
        fill = tf.constant(value, dtype=x.dtype)
    return tf.where(present(x), densify(x, tf.zeros([], x.dtype)), fill)


def number_outputs(
    x: tf.Tensor,
    name: str,
    *,
    clip: Clip | None = None,
    log1p: bool = False,
    bucketize: Bucketize | None = None,
    scale: str | None = None,
) -> dict[str, tf.Tensor]:
    """A dense number -> ``{name: float32}``, or bucket ids under ``name`` (with ``scale``
    also set: the ids under ``<name>_bucketized`` and the scaled number under ``name``)."""
    x = tf.cast(x, tf.float32)
    if clip is not None:
        low = -float("inf") if clip.min is None else clip.min
        high = float("inf") if clip.max is None else clip.max
        x = tf.clip_by_value(x, low, high)
    if log1p:
        x = tf.math.log1p(x)
    outputs = {}
    scaled = scale not in (None, "none")
    if bucketize:
        key = f"{name}_bucketized" if scaled else name
        outputs[key] = tft.bucketize(x, bucketize.num_buckets, name=f"{name}_bucketize")
        if not scaled:
            return outputs
    if scale == "z_score":
        outputs[name] = tft.scale_to_z_score(x, name=f"{name}_z_score")
    elif scale == "min_max":
        outputs[name] = tft.scale_to_0_1(x, name=f"{name}_min_max")
    else:
        outputs[name] = x
    return outputs
