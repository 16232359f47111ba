"""Crosses: two or more categorical raw features hashed together into one categorical id.

The raw values are crossed (not their vocabulary ids), so a cross does not depend on
any vocabulary. A row where a nullable input is missing gets the id of its own,
``hash_buckets``.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from tfbake.transform.ops.categories import with_missing_id
from tfbake.transform.ops.missing import densify


def _as_column(x):
    """A raw input as ``tf.sparse.cross_hashed`` takes it: [batch, 1] or [batch, 0 or 1]."""
    return x if isinstance(x, tf.SparseTensor) else tf.expand_dims(x, 1)


def cross_output(inputs: Sequence, hash_buckets: int) -> tf.Tensor:
    """Scalar categorical raw features (dense or nullable) -> [batch] int64 ids."""
    crossed = tf.sparse.cross_hashed([_as_column(x) for x in inputs], num_buckets=hash_buckets)
    if not any(isinstance(x, tf.SparseTensor) for x in inputs):
        crossed = densify(crossed, 0)  # every row has exactly one cross: no missing id
    return with_missing_id(crossed, tf.constant(hash_buckets, tf.int64))
