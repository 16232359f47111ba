"""Nullable raw features: the [batch, 0 or 1] SparseTensor that parsing gives them."""

from __future__ import annotations

import tensorflow as tf


def densify(x: tf.SparseTensor, fill) -> tf.Tensor:
    """A [batch] tensor of a nullable feature's value, ``fill`` where it is missing."""
    return tf.sparse.to_dense(
        tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
        default_value=tf.cast(fill, x.dtype),
    )[:, 0]


def present(x: tf.SparseTensor) -> tf.Tensor:
    """A [batch] bool tensor: whether each row carries the nullable feature."""
    return tf.sparse.to_dense(
        tf.SparseTensor(x.indices, tf.ones_like(x.values, tf.bool), [x.dense_shape[0], 1]),
        default_value=False,
    )[:, 0]


def is_missing_indicator(x) -> tf.Tensor:
    """The ``<feature>_is_missing`` number: 1. where the value is absent, else 0."""
    return 1.0 - tf.cast(present(x), tf.float32)
