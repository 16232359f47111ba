"""``tf.SequenceExample`` records (``data.format: sequence_example``): context features
and feature_lists, as tfbake reads, writes and serves them.

Which features are feature_lists is derived from the config: the multi-valued ones
(``list: true`` features and list labels), one value per step; every other feature is
a context feature. A SequenceExample stands for the ``tf.Example`` whose features are its
context features plus each feature_list as one multi-valued feature, so the Beam job
reads it as that tf.Example (same checks, rejects and decoder), and the export parses
it into the same raw feature tensors ``tf.io.parse_example`` gives. A serialized
tf.Example is a SequenceExample with context only (both keep those features in field 1).

Every writer of a serving request or warm-up record serializes a raw row with
:func:`serialize_row`, so no two of them can disagree on the format.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import tensorflow as tf

from tfbake.serving_input.feature_spec import FeatureSpec
from tfbake.serving_input.tf_example import encode_example


def _declared(feature_spec: FeatureSpec, feature_lists: Collection[str]) -> tuple[set, set]:
    lists = {name for name in feature_lists if name in feature_spec}
    return lists, set(feature_spec) - lists


def example_of(
    record: tf.train.SequenceExample, feature_spec: FeatureSpec, feature_lists: Collection[str]
) -> tf.train.Example:
    """The ``tf.Example`` a SequenceExample stands for: its context features, and each
    feature_list of ``feature_lists`` as one feature of its steps' values.

    Raises ValueError naming the feature (and step) when a declared feature is in the
    wrong part (a feature_list in the context, a context feature in feature_lists), a
    step has other than one value, or the steps differ in type. Undeclared features are
    left out, as the tf.Example reader leaves them.
    """
    lists, context = _declared(feature_spec, feature_lists)
    example = tf.train.Example()
    features = example.features.feature
    for name, feature in record.context.feature.items():
        if name in lists:
            raise ValueError(
                f'feature "{name}" is a feature_list (one value per step), found in the context'
            )
        if name in context:
            features[name].CopyFrom(feature)
    for name, steps in record.feature_lists.feature_list.items():
        if name in context:
            raise ValueError(
                f'feature "{name}" is a context feature, found in feature_lists'
            )
        if name not in lists:
            continue
        first = None
        for step, value in enumerate(steps.feature):
            kind = value.WhichOneof("kind")
            count = len(getattr(value, kind).value) if kind else 0
            if count != 1:
                raise ValueError(
                    f'feature_list "{name}": step {step} has {count} values; '
                    "a feature_list holds one value per step"
                )
            if first is None:
                first = kind
            elif kind != first:
                raise ValueError(
                    f'feature_list "{name}": step {step} is a {kind}, step 0 a {first}'
                )
            getattr(features[name], kind).value.extend(getattr(value, kind).value)
    return example


def example_of_record(
    record: bytes, feature_spec: FeatureSpec, feature_lists: Collection[str] = ()
) -> tf.train.Example:
    """A serialized record as the ``tf.Example`` it stands for: a tf.Example as it is
    (no ``feature_lists``), else a SequenceExample through :func:`example_of`. Raises
    ValueError when it is neither, or (:func:`example_of`) names what is misplaced."""
    kind = tf.train.SequenceExample if feature_lists else tf.train.Example
    try:
        parsed = kind.FromString(record)
    except Exception as err:  # protobuf's DecodeError
        raise ValueError(f"not a tf.{kind.__name__}: {err}") from None
    return example_of(parsed, feature_spec, feature_lists) if feature_lists else parsed


def encode_sequence_example(
    row: Mapping[str, Any],
    feature_spec: FeatureSpec,
    feature_lists: Collection[str],
    *,
    index: int | None = None,
) -> tf.train.SequenceExample:
    """One raw row as a SequenceExample: ``feature_lists`` one value per step, the other
    features in the context (checked and typed as :func:`encode_example` does)."""
    lists, _ = _declared(feature_spec, feature_lists)
    example = encode_example(row, feature_spec, index=index)
    record = tf.train.SequenceExample()
    for name, feature in example.features.feature.items():
        if name not in lists:
            record.context.feature[name].CopyFrom(feature)
            continue
        kind = feature.WhichOneof("kind")
        steps = record.feature_lists.feature_list[name].feature
        for value in getattr(feature, kind).value:
            getattr(steps.add(), kind).value.append(value)
    return record


def serialize_row(
    row: Mapping[str, Any],
    feature_spec: FeatureSpec,
    feature_lists: Collection[str] = (),
    *,
    index: int | None = None,
) -> bytes:
    """One raw row serialized as the export's ``examples`` input takes it: a tf.Example,
    or with ``feature_lists`` (a ``sequence_example`` export's) a SequenceExample.
    ``index`` only serves the error messages ("in example 3")."""
    if feature_lists:
        return encode_sequence_example(
            row, feature_spec, feature_lists, index=index
        ).SerializeToString()
    return encode_example(row, feature_spec, index=index).SerializeToString()


def serialize_examples(
    rows: Iterable[Mapping[str, Any]],
    feature_spec: FeatureSpec,
    feature_lists: Collection[str] = (),
) -> list[bytes]:
    """Serializes rows (:func:`serialize_row`); errors name the row's position."""
    return [serialize_row(row, feature_spec, feature_lists, index=i) for i, row in enumerate(rows)]


def _check_empty(name: str, present: tf.Tensor, where: str) -> tf.Operation:
    """An assertion that no example of the batch has ``name`` in the wrong part
    (``present``: [batch] bool); the failure names the feature and the first example."""
    first = tf.concat([tf.where(present)[:, 0], [0]], axis=0)[0]
    message = tf.strings.format(f'Feature "{name}" in example {{}} {where}', (first,))
    return tf.debugging.Assert(tf.logical_not(tf.reduce_any(present)), [message])


def parse_sequence_examples(
    serialized: tf.Tensor, feature_spec: FeatureSpec, feature_lists: Collection[str]
) -> dict:
    """A batch of serialized SequenceExamples -> the raw features ``tf.io.parse_example``
    gives for the tf.Examples they stand for (a feature_list as the [batch, n]
    SparseTensor of a multi-valued feature). A step with other than one value, a value
    of another type, or a feature in the wrong part fails the batch (INVALID_ARGUMENT)
    naming the feature."""
    lists, context = _declared(feature_spec, feature_lists)
    context_spec = {name: feature_spec[name] for name in context}
    sequence_spec = {
        name: tf.io.FixedLenSequenceFeature([], feature_spec[name].dtype, allow_missing=True)
        for name in lists
    }
    # Each feature is also looked for in the other part, where it must be absent.
    misplaced_context = {name: tf.io.VarLenFeature(feature_spec[name].dtype) for name in lists}
    misplaced_lists = {
        name: tf.io.FixedLenSequenceFeature([], feature_spec[name].dtype, allow_missing=True)
        for name in context
    }
    parsed, sequences, lengths = tf.io.parse_sequence_example(
        serialized, {**context_spec, **misplaced_context}, {**sequence_spec, **misplaced_lists}
    )
    checks = []
    for name in sorted(lists):
        rows = tf.RaggedTensor.from_sparse(parsed[name]).row_lengths()
        checks.append(_check_empty(
            name, rows > 0,
            "is in the context; it is a feature_list (one value per step)",
        ))
    for name in sorted(context):
        checks.append(_check_empty(
            name, lengths[name] > 0,
            "is in feature_lists; it is a context feature",
        ))
    features = {}
    with tf.control_dependencies(checks):
        for name in context:
            features[name] = tf.identity(parsed[name])
        for name in lists:
            features[name] = tf.RaggedTensor.from_tensor(
                sequences[name], lengths=lengths[name]
            ).to_sparse()
    return features
