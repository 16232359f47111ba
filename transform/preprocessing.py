"""Declarative preprocessing: YAML entries compiled into one tf.Transform ``preprocessing_fn``.

Each entry of the config's ``preprocessing`` section is a
:class:`~tfbake.transform.preprocessing_config.FeaturePreprocessing` for one raw feature (or,
with ``cross``, a new feature crossed from several), declared and checked in
:mod:`tfbake.transform.preprocessing_config`. :func:`build_preprocessing_fn` turns the
entries and the raw feature spec into the ``preprocessing_fn`` that Beam
analyzes and that the export replays at serving time. The ops themselves live in
:mod:`tfbake.transform.ops`, one module per kind of feature. A user's own
``preprocessing_fn(inputs) -> dict`` is used as is (:func:`load_preprocessing_fn`).
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf

from tfbake.serving_input.feature_spec import type_name
from tfbake.transform.ops.categories import (
    hashed_ids,
    vocabulary_id_lists,
    vocabulary_ids,
    vocabulary_size,
    with_missing_id,
)
from tfbake.transform.ops.cleaning import clean_strings
from tfbake.transform.ops.crosses import cross_output
from tfbake.transform.ops.images import image_output
from tfbake.transform.ops.lists import id_list_output
from tfbake.transform.ops.missing import is_missing_indicator
from tfbake.transform.ops.numbers import impute, imputed_number, number_outputs
from tfbake.transform.ops.text import text_output
from tfbake.transform.preprocessing_config import (
    Bucketize,
    Cleaning,
    Clip,
    FeaturePreprocessing,
    Image,
    PreprocessingFn,
    Text,
    Vocabulary,
    check_compatible,
    load_preprocessing_fn,
)

__all__ = [
    "Bucketize",
    "Cleaning",
    "Clip",
    "FeaturePreprocessing",
    "Image",
    "Text",
    "Vocabulary",
    "build_preprocessing_fn",
    "check_compatible",
    "load_preprocessing_fn",
]


def _list_output(x: tf.SparseTensor, ops: FeaturePreprocessing, name: str) -> tf.Tensor:
    if ops.vocabulary:
        ids = vocabulary_id_lists(x, ops.vocabulary, name)
        size = (
            vocabulary_size(ops.vocabulary, name)
            if ops.output == "ids"
            else ops.vocabulary.max_size
        )
    else:
        ids, size = hashed_ids(x, ops.hash_buckets, name), ops.hash_buckets
    return id_list_output(ids, ops.output, name, size=size, length=ops.max_items)


def _categorical_ids(x, ops: FeaturePreprocessing, name: str) -> tf.Tensor:
    """Scalar ids; a missing value of a nullable feature gets the last id, one of its own."""
    if ops.hash_buckets:
        return with_missing_id(
            hashed_ids(x, ops.hash_buckets, name), tf.constant(ops.hash_buckets, tf.int64)
        )
    ids = vocabulary_ids(x, ops.vocabulary, name)
    if not isinstance(ids, tf.SparseTensor):
        return ids  # compute_and_apply_vocabulary set the domain
    return with_missing_id(ids, vocabulary_size(ops.vocabulary, name))


def feature_outputs(x, ops: FeaturePreprocessing, name: str) -> dict[str, tf.Tensor]:
    """One raw feature (dense, or sparse when nullable or a list) -> its transformed outputs."""
    if ops.drop:
        return {}
    if ops.image:
        return {name: image_output(x, ops.image, name)}
    if ops.text:
        return {name: text_output(x, ops.text, name)}
    if ops.output:
        return {name: _list_output(x, ops, name)}
    outputs = {f"{name}_is_missing": is_missing_indicator(x)} if ops.is_missing else {}
    if ops.is_categorical:
        x = impute(x, ops.impute, ops.impute_value, name) if ops.impute else x
        outputs[name] = _categorical_ids(x, ops, name)
        return outputs
    number = imputed_number(x, ops.impute, ops.impute_value, name)
    scale = None if ops.passthrough else ops.scale
    outputs.update(
        number_outputs(
            number, name, clip=ops.clip, log1p=ops.log1p, bucketize=ops.bucketize, scale=scale
        )
    )
    return outputs


def build_preprocessing_fn(
    raw_feature_spec: Mapping,
    steps: Mapping[str, FeaturePreprocessing],
    user_fn: PreprocessingFn | None = None,
    cleaning: Cleaning | None = None,
) -> PreprocessingFn:
    """Compiles declared steps (and an optional user function) into one ``preprocessing_fn``.

    Every column of ``raw_feature_spec`` is transformed as a feature, by its declared
    step or by the default (strings: vocabulary; numbers: as they are);
    each ``cross`` entry adds a feature of its own. With ``user_fn``, its outputs come
    first and only the declared steps are added. The labels are the config's
    ``preprocessing_fn``'s (:func:`tfbake.stages.preprocessing_fn`, with
    :func:`tfbake.transform.labels.transform_label`). String features are cleaned first (their
    entry's ``strip``/``case``/``map``, unset keys from ``cleaning``), so the declared
    steps and ``user_fn`` all see the cleaned values.
    """
    spec = dict(raw_feature_spec)
    crosses = {name: ops for name, ops in steps.items() if ops.cross is not None}
    for name, ops in steps.items():
        if name in crosses:
            missing = [f for f in ops.cross if f not in spec]
            if name in spec or missing:
                raise ValueError(f"cross {name!r}: the name clashes or {missing} are not features")
            continue
        feature = spec[name]
        check_compatible(
            name,
            type_name(feature.dtype),
            isinstance(feature, tf.io.VarLenFeature),
            ops,
            is_list=ops.output is not None,
            is_image=ops.image is not None,
        )

    cleanings = {
        name: (steps[name].cleaning if name in steps else Cleaning()).over(cleaning)
        for name, feature in spec.items()
        if feature.dtype == tf.string and name not in crosses
    }

    def preprocessing_fn(inputs: dict) -> dict:
        inputs = {
            name: clean_strings(x, cleanings.get(name)) if name in spec else x
            for name, x in inputs.items()
        }
        outputs: dict = dict(user_fn(dict(inputs))) if user_fn is not None else {}
        for name, feature in spec.items():
            if user_fn is not None and name not in steps:
                continue
            ops = (steps.get(name) or FeaturePreprocessing()).with_default_treatment(
                type_name(feature.dtype)
            )
            _add(outputs, feature_outputs(inputs[name], ops, name))
        for name, ops in crosses.items():
            _add(outputs, {name: cross_output([inputs[f] for f in ops.cross], ops.hash_buckets)})
        return outputs

    return preprocessing_fn


def _add(outputs: dict, step_outputs: dict) -> None:
    clash = sorted(set(step_outputs) & set(outputs))
    if clash:
        raise ValueError(f"preprocessing_fn outputs {clash} clash with declared steps")
    outputs.update(step_outputs)
