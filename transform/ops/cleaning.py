"""Cleaning raw string values, in the graph: strip, case folding and a map of values.

Applied to the raw strings before any analyzer (the vocabulary is built from the
cleaned values) and, being part of the transform graph, to what serving clients send:
``" Retail"`` in a training file and ``"Retail"`` in a request get the same id, and an
eval label spelled ``"high."`` can be mapped to the training class ``"high"``.

Order: strip (surrounding whitespace), then case folding, then ``map`` (whole values,
compared after the two).
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf

from tfbake.transform.preprocessing_config import Cleaning


def _clean_values(values: tf.Tensor, cleaning: Cleaning) -> tf.Tensor:
    if cleaning.strip:
        values = tf.strings.strip(values)
    if cleaning.case == "lower":
        values = tf.strings.lower(values, encoding="utf-8")
    elif cleaning.case == "upper":
        values = tf.strings.upper(values, encoding="utf-8")
    if cleaning.map:
        values = map_values(values, cleaning.map)
    return values


def map_values(values: tf.Tensor, mapping: Mapping[str, str]) -> tf.Tensor:
    """Each value found among ``mapping``'s keys replaced by its value, others kept."""
    keys = tf.constant(list(mapping))
    replacements = tf.constant(list(mapping.values()))
    matches = tf.equal(values[..., tf.newaxis], keys)
    replaced = tf.gather(replacements, tf.argmax(tf.cast(matches, tf.int32), axis=-1))
    return tf.where(tf.reduce_any(matches, axis=-1), replaced, values)


def clean_strings(x, cleaning: Cleaning | None):
    """``x`` (a string Tensor, SparseTensor or RaggedTensor) with its values cleaned."""
    if cleaning is None or not cleaning.active or x.dtype != tf.string:
        return x
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, _clean_values(x.values, cleaning), x.dense_shape)
    if isinstance(x, tf.RaggedTensor):
        return x.with_flat_values(_clean_values(x.flat_values, cleaning))
    return _clean_values(x, cleaning)
