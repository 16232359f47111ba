"""Numbers: imputation, clipping, log1p, scaling and quantile buckets.

A number leaves as float32 [] (the contract's *number*); ``bucketize`` turns it into
a categorical id. The steps apply in the order impute -> clip -> log1p -> bucketize /
scale, each analyzer over the training data as the previous step left it. A scale
after an imputation is derived from statistics computed beside the fill
(:class:`ImputedNumber`), so it costs no extra pass over the data.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import tensorflow as tf
import tensorflow_transform as tft
from pydantic import BaseModel, ConfigDict, Field, model_validator

from transform.ops.categories import most_frequent
from transform.ops.missing import densify, present

ImputeStrategy = Literal["mean", "median", "most_frequent", "constant"]
NUMBER_ONLY_IMPUTE = ("mean", "median")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bucketize(_Strict):
    """A number turned into a quantile bucket id (a categorical feature)."""

    num_buckets: int = Field(gt=1)


class Clip(_Strict):
    """Values below ``min`` become ``min``, above ``max`` become ``max`` (either optional)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Clip:
        if self.min is None and self.max is None:
            raise ValueError("clip needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"clip: min {self.min} is above max {self.max}")
        return self


def _fill(x: tf.SparseTensor, strategy: ImputeStrategy, value, name: str) -> tf.Tensor:
    """The value a nullable ``x``'s gaps are filled with (an analyzer's result but for
    ``constant``), as ``x``'s dtype."""
    if strategy in NUMBER_ONLY_IMPUTE:
        values = tf.cast(x.values, tf.float32)
        if strategy == "mean":
            fill = tft.mean(values, name=f"{name}_impute_mean")
        else:
            fill = tft.quantiles(values, num_buckets=2, epsilon=0.01, name=f"{name}_median")[0, 0]
        return tf.cast(fill, x.dtype)
    if strategy == "most_frequent":
        return most_frequent(x, name)
    return tf.constant(value, dtype=x.dtype)


@dataclasses.dataclass(frozen=True)
class ImputedNumber:
    """A nullable number with its gaps filled, kept in parts: the dense column and what it
    is made of (the present values, the fill, which rows miss).

    A statistic of the imputed column is derived from statistics of the parts, which
    are computed in the same analysis phase as the fill. Computed on the column itself
    it would wait for the fill: one more pass over the data, and a statistic that
    tf.Transform's analysis cache does not keep.
    """

    dense: tf.Tensor
    values: tf.Tensor
    fill: tf.Tensor
    missing: tf.Tensor

    def map(self, fn) -> ImputedNumber:
        """The same column with an elementwise ``fn`` applied to every value."""
        return ImputedNumber(fn(self.dense), fn(self.values), fn(self.fill), self.missing)


def imputed_number(
    x, strategy: ImputeStrategy | None, value, name: str
) -> tf.Tensor | ImputedNumber:
    """:func:`impute` for a number that is scaled next: an :class:`ImputedNumber` for a
    nullable ``x``, ``x`` itself for a required one."""
    if not isinstance(x, tf.SparseTensor):
        return x
    fill = _fill(x, strategy, value, name)
    is_present = present(x)
    dense = tf.where(is_present, densify(x, tf.zeros([], x.dtype)), fill)
    return ImputedNumber(dense, x.values, fill, tf.logical_not(is_present))


def impute(x, strategy: ImputeStrategy | None, value, name: str) -> tf.Tensor:
    """A dense [batch] tensor: ``x`` itself, or a nullable ``x`` with its gaps filled."""
    number = imputed_number(x, strategy, value, name)
    return number.dense if isinstance(number, ImputedNumber) else number


def _counts(x: ImputedNumber, name: str) -> tuple[tf.Tensor, tf.Tensor]:
    """(rows, rows missing) over the training data, exact (int64), as float64."""
    missing = tf.cast(x.missing, tf.int64)
    counts = tft.sum(
        tf.stack([tf.ones_like(missing), missing], axis=1),
        reduce_instance_dims=False,
        name=f"{name}_counts",
    )
    return tf.cast(counts[0], tf.float64), tf.cast(counts[1], tf.float64)


def _z_score(x, name: str) -> tf.Tensor:
    """``tft.scale_to_z_score`` of the column; of an :class:`ImputedNumber` from the mean
    and variance of its present values, the fill and the share of rows present:
    ``mean = p m + (1 - p) f``, ``var = p (v + (m - mean)^2) + (1 - p) (f - mean)^2``."""
    if not isinstance(x, ImputedNumber):
        return tft.scale_to_z_score(x, name=f"{name}_z_score")
    with tf.name_scope(f"{name}_z_score"):
        rows, missing = _counts(x, name)
        share = tf.math.divide_no_nan(rows - missing, rows)
        values_mean = tf.cast(tft.mean(x.values, name=f"{name}_z_score_mean"), tf.float64)
        values_var = tf.cast(tft.var(x.values, name=f"{name}_z_score_var"), tf.float64)
        fill = tf.cast(x.fill, tf.float64)
        # multiply_no_nan: no present value at all leaves the fill's statistics alone.
        mean = tf.math.multiply_no_nan(values_mean, share) + (1 - share) * fill
        var = tf.math.multiply_no_nan(values_var + (values_mean - mean) ** 2, share) + (
            1 - share
        ) * (fill - mean) ** 2
        # As tft.scale_to_z_score: float32 statistics, no division by a zero deviation.
        mean, std = tf.cast(mean, tf.float32), tf.sqrt(tf.cast(var, tf.float32))
        centered = x.dense - mean
        return tf.where(tf.not_equal(std, 0), centered / std, centered)


def _min_max(x, name: str) -> tf.Tensor:
    """``tft.scale_to_0_1`` of the column; of an :class:`ImputedNumber` from the present
    values' minimum and maximum and the fill, when a row misses."""
    if not isinstance(x, ImputedNumber):
        return tft.scale_to_0_1(x, name=f"{name}_min_max")
    with tf.name_scope(f"{name}_min_max"):
        _, missing = _counts(x, name)
        low = tft.min(x.values, name=f"{name}_min_max_min")
        high = tft.max(x.values, name=f"{name}_min_max_max")
        filled = missing > 0
        low = tf.where(filled, tf.minimum(low, x.fill), low)
        high = tf.where(filled, tf.maximum(high, x.fill), high)
        # As tft.scale_to_0_1: a constant column goes through a sigmoid.
        return tf.where(low < high, (x.dense - low) / (high - low), tf.math.sigmoid(x.dense))


def number_outputs(
    x: tf.Tensor | ImputedNumber,
    name: str,
    *,
    clip: Clip | None = None,
    log1p: bool = False,
    bucketize: Bucketize | None = None,
    scale: str | None = None,
) -> dict[str, tf.Tensor]:
    """A dense number (or an :class:`ImputedNumber`) -> ``{name: float32}``, or bucket ids
    under ``name`` (with ``scale`` also set: the ids under ``<name>_bucketized`` and the
    scaled number under ``name``)."""
    steps = [lambda t: tf.cast(t, tf.float32)]
    if clip is not None:
        low = -float("inf") if clip.min is None else clip.min
        high = float("inf") if clip.max is None else clip.max
        steps.append(lambda t: tf.clip_by_value(t, low, high))
    if log1p:
        steps.append(tf.math.log1p)
    for step in steps:
        x = x.map(step) if isinstance(x, ImputedNumber) else step(x)
    dense = x.dense if isinstance(x, ImputedNumber) else x
    outputs = {}
    scaled = scale not in (None, "none")
    if bucketize:
        key = f"{name}_bucketized" if scaled else name
        # Quantiles of an imputed column need the fill first: a later analysis phase.
        outputs[key] = tft.bucketize(dense, bucketize.num_buckets, name=f"{name}_bucketize")
        if not scaled:
            return outputs
    if scale == "z_score":
        outputs[name] = _z_score(x, name)
    elif scale == "min_max":
        outputs[name] = _min_max(x, name)
    else:
        outputs[name] = dense
    return outputs
