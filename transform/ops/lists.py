"""Lists of categorical ids (a list feature's values, a text's tokens) as fixed-shape outputs.

- ``ids``: an *id sequence*, int64 [L]: the ids shifted by +1 so that 0 is padding,
  truncated or padded with 0 to L (``max_items`` / ``max_tokens``);
- ``multi_hot``: a *dense vector*, float32 [V]: 1. for each id present;
- ``bag_of_words`` / ``tfidf`` (text): float32 [V], counts or TF-IDF weights.

V is static (``vocabulary.top_k`` + OOV buckets, or ``hash_buckets``) so the schema
gets a ``FixedLenFeature([V])``; ids the vocabulary never fills leave zeros.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform import schema_inference

from tfbake.transform.preprocessing_config import IdListOutput


def _scatter(ids: tf.SparseTensor, values: tf.Tensor, size: int) -> tf.Tensor:
    """Row-wise sums of ``values`` at each row's ids: a [batch, size] float32 tensor."""
    rows = ids.indices[:, 0]
    positions = tf.stack([rows, ids.values], axis=1)
    shape = tf.stack([ids.dense_shape[0], tf.constant(size, tf.int64)])
    return tf.scatter_nd(positions, tf.cast(values, tf.float32), shape)


def id_list_output(
    ids: tf.SparseTensor | tf.RaggedTensor,
    output: IdListOutput,
    name: str,
    *,
    size,
    length: int | None = None,
) -> tf.Tensor:
    """[batch, n] ids in ``[0, size)``, sparse or ragged -> the ``output`` kind.

    ``size`` is an int for the dense kinds (the vector's length) and may be a tensor
    for ``ids`` (the schema's domain: 0..size).
    """
    if output == "ids":
        # Ragged straight to the padded tensor: a text's tokens come ragged from the
        # split, and a round trip through a SparseTensor costs ~15 ops per request.
        ragged = ids if isinstance(ids, tf.RaggedTensor) else tf.RaggedTensor.from_sparse(ids)
        dense = (ragged + 1).to_tensor(default_value=0, shape=[None, length])
        schema_inference.set_tensor_schema_override(
            dense, tf.constant(0, tf.int64), tf.cast(size, tf.int64)
        )
        return dense
    if isinstance(ids, tf.RaggedTensor):
        ids = ids.to_sparse()
    if output == "tfidf":
        indices, weights = tft.tfidf(ids, size, name=f"{name}_tfidf")
        return _scatter(indices, weights.values, size)
    counts = _scatter(ids, tf.ones_like(ids.values, tf.float32), size)
    return tf.minimum(counts, 1.0) if output == "multi_hot" else counts
