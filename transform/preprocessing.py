"""Declarative preprocessing: YAML entries compiled into one tf.Transform ``preprocessing_fn``.

Each entry of the config's ``preprocessing`` section is a :class:`FeaturePreprocessing`
for one raw feature. :func:`build_preprocessing_fn` turns the entries, the raw feature
spec and the label into the ``preprocessing_fn`` that Beam analyzes and that the
export replays at serving time. A user's own ``preprocessing_fn(inputs) -> dict`` is
used as is (:func:`load_preprocessing_fn`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Literal

import tensorflow as tf
import tensorflow_transform as tft
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tensorflow_transform import schema_inference

from transform.labels import transform_label

PreprocessingFn = Callable[[dict], dict]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Vocabulary(_Strict):
    """A categorical feature looked up in a vocabulary computed over the training data."""

    top_k: int | None = Field(default=None, gt=0)
    frequency_threshold: int | None = Field(default=None, gt=0)
    num_oov_buckets: int = Field(default=1, ge=0)


class Bucketize(_Strict):
    """A number turned into a quantile bucket id (a categorical feature)."""

    num_buckets: int = Field(gt=1)


ImputeStrategy = Literal["mean", "median", "most_frequent", "constant"]
NUMBER_ONLY_IMPUTE = ("mean", "median")


class FeaturePreprocessing(_Strict):
    """The preprocessing of one raw feature, as declared in YAML.

    ``impute`` fills a missing value (``impute_value`` for ``constant``), then
    ``scale`` applies to numbers, ``vocabulary`` to categories, ``bucketize`` to
    numbers (its output is named ``<feature>_bucketized`` when ``scale`` is also set).
    """

    impute: ImputeStrategy | None = None
    impute_value: float | int | str | None = None
    scale: Literal["z_score", "min_max", "none"] | None = None
    vocabulary: Vocabulary | None = None
    bucketize: Bucketize | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FeaturePreprocessing:
        if (self.impute == "constant") != (self.impute_value is not None):
            raise ValueError("impute_value is required with impute: constant, and only then")
        if self.vocabulary and (self.scale not in (None, "none") or self.bucketize):
            raise ValueError("vocabulary cannot be combined with scale or bucketize")
        return self


def check_compatible(name: str, dtype: tf.dtypes.DType, nullable: bool, ops: FeaturePreprocessing):
    """Raises ``ValueError`` naming the feature and op when ops do not fit the feature's type."""
    is_string = dtype == tf.string
    if is_string and (ops.scale not in (None, "none") or ops.bucketize):
        op = "scale" if ops.scale not in (None, "none") else "bucketize"
        raise ValueError(f'{op} needs a number, but feature "{name}" is a string')
    if is_string and ops.impute in NUMBER_ONLY_IMPUTE:
        raise ValueError(f'impute: {ops.impute} needs a number, but feature "{name}" is a string')
    if dtype == tf.float32 and ops.vocabulary:
        raise ValueError(
            f'vocabulary needs a string or int feature, but feature "{name}" is a float'
        )
    if ops.impute == "constant":
        value = ops.impute_value
        ok = isinstance(value, str) if is_string else isinstance(value, (int, float))
        if not ok or isinstance(value, bool):
            raise ValueError(f'impute_value {value!r} does not fit feature "{name}"')
    if nullable and ops.impute is None and not (ops.vocabulary or is_string):
        raise ValueError(
            f'feature "{name}" is nullable: declare how to impute it '
            "(impute: mean | median | most_frequent | constant)"
        )


def _default_ops(dtype: tf.dtypes.DType) -> FeaturePreprocessing:
    """A feature without an entry: categories get a vocabulary, numbers pass as they are."""
    return (
        FeaturePreprocessing(vocabulary=Vocabulary())
        if dtype == tf.string
        else FeaturePreprocessing()
    )


def _impute(x, ops: FeaturePreprocessing, name: str) -> tf.Tensor:
    """A dense [batch] tensor: ``x`` itself, or a nullable ``x`` with its gaps filled."""
    if not isinstance(x, tf.SparseTensor):
        return x
    if ops.impute in ("mean", "median"):
        values = tf.cast(x.values, tf.float32)
        if ops.impute == "mean":
            fill = tft.mean(values, name=f"{name}_impute_mean")
        else:
            fill = tft.quantiles(values, num_buckets=2, epsilon=0.01, name=f"{name}_median")[0, 0]
        fill = tf.cast(fill, x.dtype)
    elif ops.impute == "most_frequent":
        fill = _most_frequent(x, name)
    else:
        fill = tf.constant(ops.impute_value, dtype=x.dtype)
    dense = tf.sparse.to_dense(
        tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
        default_value=tf.zeros([], x.dtype),
    )[:, 0]
    present = tf.sparse.to_dense(
        tf.SparseTensor(x.indices, tf.ones_like(x.values, tf.bool), [x.dense_shape[0], 1]),
        default_value=False,
    )[:, 0]
    return tf.where(present, dense, fill)


def _most_frequent(x: tf.SparseTensor, name: str) -> tf.Tensor:
    """The most frequent present value, read back from a top-1 vocabulary."""
    as_text = x.values if x.dtype == tf.string else tf.strings.as_string(x.values)
    path = tft.vocabulary(as_text, top_k=1, vocab_filename=f"{name}_most_frequent")
    table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            path,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )
    value = table.lookup(tf.constant(0, tf.int64))
    return value if x.dtype == tf.string else tf.strings.to_number(value, x.dtype)


def _categorical_ids(x, vocabulary: Vocabulary, name: str) -> tf.Tensor:
    """Vocabulary ids; a missing value of a nullable feature gets the last id of its own."""
    ids = tft.compute_and_apply_vocabulary(
        x,
        top_k=vocabulary.top_k,
        frequency_threshold=vocabulary.frequency_threshold,
        num_oov_buckets=vocabulary.num_oov_buckets,
        vocab_filename=name,
    )
    if not isinstance(ids, tf.SparseTensor):
        return ids
    size = tft.experimental.get_vocabulary_size_by_name(name) + vocabulary.num_oov_buckets
    missing_id = tf.cast(size, tf.int64)
    dense = tf.sparse.to_dense(
        tf.SparseTensor(ids.indices, ids.values, [ids.dense_shape[0], 1]), default_value=-1
    )[:, 0]
    dense = tf.where(dense < 0, missing_id, dense)
    # The schema override tells the trainer how many ids there are (missing included).
    schema_inference.set_tensor_schema_override(dense, tf.constant(0, tf.int64), missing_id)
    return dense


def _number(x: tf.Tensor, ops: FeaturePreprocessing, name: str) -> dict[str, tf.Tensor]:
    outputs = {}
    x = tf.cast(x, tf.float32)
    if ops.bucketize:
        key = f"{name}_bucketized" if ops.scale not in (None, "none") else name
        outputs[key] = tft.bucketize(x, ops.bucketize.num_buckets, name=f"{name}_bucketize")
        if key == name:
            return outputs
    if ops.scale == "z_score":
        outputs[name] = tft.scale_to_z_score(x, name=f"{name}_z_score")
    elif ops.scale == "min_max":
        outputs[name] = tft.scale_to_0_1(x, name=f"{name}_min_max")
    else:
        outputs[name] = x
    return outputs


def build_preprocessing_fn(
    raw_feature_spec: Mapping,
    steps: Mapping[str, FeaturePreprocessing],
    label_key: str | None = None,
    classification: bool = True,
    user_fn: PreprocessingFn | None = None,
) -> PreprocessingFn:
    """Compiles declared steps (and an optional user function) into one ``preprocessing_fn``.

    Every raw feature but the label is transformed, by its declared step or by the
    default (strings: vocabulary; numbers: as they are). For a classifier the label
    becomes ids in the label vocabulary (named after the label; its order is the
    order of the exported ``classes``). With ``user_fn``, its outputs come first and
    only the declared steps are added, plus the label unless ``user_fn`` made it.
    """
    spec = dict(raw_feature_spec)
    for name, ops in steps.items():
        feature = spec[name]
        check_compatible(name, feature.dtype, isinstance(feature, tf.io.VarLenFeature), ops)

    def preprocessing_fn(inputs: dict) -> dict:
        outputs: dict = dict(user_fn(dict(inputs))) if user_fn is not None else {}
        for name, feature in spec.items():
            if name == label_key or (user_fn is not None and name not in steps):
                continue
            ops = steps.get(name) or _default_ops(feature.dtype)
            x = inputs[name]
            if ops.vocabulary:
                x = _impute(x, ops, name) if ops.impute else x
                step_outputs = {name: _categorical_ids(x, ops.vocabulary, name)}
            else:
                step_outputs = _number(_impute(x, ops, name), ops, name)
            clash = sorted(set(step_outputs) & set(outputs))
            if clash:
                raise ValueError(f"preprocessing_fn outputs {clash} clash with declared steps")
            outputs.update(step_outputs)
        # A user's function may transform the label itself; otherwise it is done here.
        if label_key is not None and label_key not in outputs:
            outputs[label_key] = transform_label(inputs[label_key], label_key, classification)
        return outputs

    return preprocessing_fn


def load_preprocessing_fn(reference: str) -> PreprocessingFn:
    """Imports ``package.module:function``; it must be importable on Beam workers too."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ValueError(f"preprocessing_fn {reference!r}: expected 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"preprocessing_fn {reference!r} cannot be imported: {err}") from err
    if not callable(fn):
        raise ValueError(f"preprocessing_fn {reference!r} is not callable")
    return fn
