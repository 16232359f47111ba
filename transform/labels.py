"""Labels in the ``preprocessing_fn``: what the trainer's heads learn from.

Kept apart from the feature steps (:mod:`tfbake.transform.preprocessing`): a feature is
replayed at serving time, a label only ever exists in training data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform import schema_inference

from tfbake.transform.ops.categories import ones_per_value

# The label's class counts, beside its vocabulary (class weights are computed from it).
FREQUENCY_SUFFIX = "_frequency"


def label_value_op(label_key: str) -> str:
    """The name of the op holding a class label's value (after cleaning, before its
    vocabulary), by which the Beam job finds eval values that are no training class."""
    return "tfbake_label_value_" + re.sub(r"[^A-Za-z0-9_.]", "_", label_key)


def label_id_op(label_key: str) -> str:
    """The name of the op holding the ids of a label whose values are a list (one id
    per value of :func:`label_value_op`); a class label's ids are its output."""
    return "tfbake_label_id_" + re.sub(r"[^A-Za-z0-9_.]", "_", label_key)


def transform_label(
    label: tf.Tensor | tf.SparseTensor,
    label_key: str,
    classification: bool,
    classes: Sequence[str] | None = None,
    normalize: bool = False,
) -> tf.Tensor:
    """The transformed label a head learns from.

    A class label becomes its id in the label vocabulary (named ``label_key``; its
    order is the order of the exported ``classes``), and the vocabulary with counts is
    stored as ``<label_key>_frequency`` (same analysis pass). With ``classes``, a
    multi-label label (a list per example, sparse) becomes a float [K] multi-hot
    vector in that order; a value outside ``classes`` fails the job, naming the label.
    A regression target becomes a float, z-scored over the training data with
    ``normalize`` (the trainer reads the map back: :func:`tfbake.trainer.label_statistics`).
    """
    if classes is not None:
        return _multi_hot(label, label_key, classes)
    if classification:
        label = tf.identity(label, name=label_value_op(label_key))
        tft.vocabulary(
            label,
            vocab_filename=f"{label_key}{FREQUENCY_SUFFIX}",
            store_frequency=True,
            weights=ones_per_value(label),  # so each count is written as a float: "363.0"
        )
        return tft.compute_and_apply_vocabulary(
            label, vocab_filename=label_key, weights=ones_per_value(label)
        )
    label = tf.cast(label, tf.float32)
    return tft.scale_to_z_score(label) if normalize else label


def _multi_hot(label: tf.SparseTensor, label_key: str, classes: Sequence[str]) -> tf.Tensor:
    # The class count is known when the graph is built, so the output has the static
    # shape [K] the schema needs (a vocabulary computed from the data would not).
    values = tf.sparse.to_dense(
        tf.strings.as_string(label) if label.dtype != tf.string else label, default_value=""
    )
    matches = tf.equal(values[:, :, tf.newaxis], tf.constant(list(classes))[tf.newaxis, tf.newaxis])
    known = tf.reduce_any(matches, axis=2) | tf.equal(values, "")
    check = tf.debugging.Assert(
        tf.reduce_all(known),
        [
            f'label "{label_key}" has a value outside its classes {list(classes)}:',
            tf.boolean_mask(values, ~known),
        ],
        summarize=10,
    )
    with tf.control_dependencies([check]):
        return tf.cast(tf.reduce_any(matches, axis=1), tf.float32)


def transform_tags(tags: tf.SparseTensor, label_key: str, length: int) -> tf.Tensor:
    """A sequence-tagging label (one tag per token, a list per example) -> int64 [length]
    tag ids aligned with its token ids: tag vocabulary id + 1, so that id 0 is reserved
    for padding (the loss and metrics skip it), padded with 0 and cut at ``length`` as
    the token ids are. The tag vocabulary is named ``label_key``; a tag of eval data
    that training data never had fails the job, naming it (as an unknown class does).
    """
    # Named as a class label's value and id, so the Beam job finds eval tags that are no
    # training tag as it finds unknown classes (transform.unknown_labels).
    values = tf.identity(tags.values, name=label_value_op(label_key))
    named_tags = tf.SparseTensor(tags.indices, values, tags.dense_shape)
    ids = tft.compute_and_apply_vocabulary(
        named_tags, vocab_filename=label_key, weights=ones_per_value(named_tags)
    )
    named = tf.identity(ids.values, name=label_id_op(label_key))
    ragged = tf.RaggedTensor.from_sparse(tf.SparseTensor(ids.indices, named, ids.dense_shape)) + 1
    dense = ragged.to_tensor(default_value=0, shape=[None, length])
    size = tft.experimental.get_vocabulary_size_by_name(label_key)
    schema_inference.set_tensor_schema_override(
        dense, tf.constant(0, tf.int64), tf.cast(size, tf.int64)
    )
    return dense
