"""Declarative preprocessing: YAML entries compiled into one tf.Transform ``preprocessing_fn``.

Each entry of the config's ``preprocessing`` section is a :class:`FeaturePreprocessing`
for one raw feature (or, with ``cross``, a new feature crossed from several).
:func:`build_preprocessing_fn` turns the entries, the raw feature spec and the label
into the ``preprocessing_fn`` that Beam analyzes and that the export replays at
serving time. The ops themselves live in :mod:`transform.ops`, one module per kind of
feature. A user's own ``preprocessing_fn(inputs) -> dict`` is used as is
(:func:`load_preprocessing_fn`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Literal

import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field, model_validator

from transform.labels import transform_label
from transform.ops.categories import (
    Vocabulary,
    hashed_ids,
    vocabulary_id_lists,
    vocabulary_ids,
    vocabulary_size,
    with_missing_id,
)
from transform.ops.cleaning import Case, Cleaning, clean_strings
from transform.ops.crosses import cross_output
from transform.ops.images import Image, image_output
from transform.ops.lists import id_list_output
from transform.ops.missing import is_missing_indicator
from transform.ops.numbers import (
    NUMBER_ONLY_IMPUTE,
    Bucketize,
    Clip,
    ImputeStrategy,
    impute,
    imputed_number,
    number_outputs,
)
from transform.ops.text import Text, text_output

PreprocessingFn = Callable[[dict], dict]

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

# Ops that make a number of a number (a category or a string has no use for them).
_NUMBER_OPS = ("clip", "log1p", "scale", "bucketize", "passthrough")
# Ops that stand alone in an entry (each is the whole treatment of its feature).
_ALONE = {
    "drop": (),
    "text": (),
    "image": (),
    "cross": ("hash_buckets",),
}
# Keys that clean a string's raw values before its treatment (transform.ops.cleaning).
_CLEANING = ("strip", "case", "map")


class FeaturePreprocessing(BaseModel):
    """The preprocessing of one raw feature, as declared in YAML (see docs/preprocessing.md).

    Numbers: ``impute`` fills a missing value (``impute_value`` for ``constant``), then
    ``clip``, ``log1p``, and ``bucketize`` (ids, named ``<feature>_bucketized`` when
    ``scale`` is also set) or ``scale``. Categories: ``vocabulary`` or ``hash_buckets``.
    Lists: ``vocabulary`` or ``hash_buckets`` with ``output`` (``multi_hot``, or ``ids``
    with ``max_items``). ``text``, ``image``, ``passthrough``, ``drop`` and ``cross``
    (with ``hash_buckets``) are whole treatments of their own. ``is_missing`` adds a
    ``<feature>_is_missing`` indicator for a nullable feature. A string's raw values
    are first cleaned by ``strip``, ``case`` and ``map``
    (:class:`~transform.ops.cleaning.Cleaning`); an entry of only these keys keeps
    the default treatment.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    strip: bool | None = None
    case: Case | None = None
    map: dict[str, str] | None = None
    impute: ImputeStrategy | None = None
    impute_value: float | int | str | None = None
    is_missing: bool = False
    clip: Clip | None = None
    log1p: bool = False
    scale: Literal["z_score", "min_max", "none"] | None = None
    bucketize: Bucketize | None = None
    vocabulary: Vocabulary | None = None
    hash_buckets: int | None = Field(default=None, gt=1)
    output: Literal["multi_hot", "ids"] | None = None
    max_items: int | None = Field(default=None, gt=0)
    text: Text | None = None
    image: Image | None = None
    passthrough: bool = False
    drop: bool = False
    cross: list[str] | None = Field(default=None, min_length=2)

    @property
    def is_categorical(self) -> bool:
        return self.vocabulary is not None or self.hash_buckets is not None

    def _declared(self) -> list[str]:
        """The declared treatment keys (cleaning keys aside)."""
        return [
            k
            for k in self.model_fields_set
            if k not in _CLEANING and getattr(self, k) not in (None, False)
        ]

    @property
    def cleaning(self) -> Cleaning:
        """The entry's own cleaning keys (unset ones left to the config's defaults)."""
        return Cleaning.of(self)

    def with_default_treatment(self, dtype: tf.dtypes.DType) -> FeaturePreprocessing:
        """This entry, or, when it declares only cleaning keys, the default treatment
        of ``dtype`` (a vocabulary for strings, numbers as they are) with them."""
        if self._declared():
            return self
        return _default_ops(dtype).model_copy(
            update={key: getattr(self, key) for key in _CLEANING}
        )

    def number_ops(self) -> list[str]:
        """The declared ops that only a number can take (``scale: none`` is no op)."""
        declared = self._declared()
        return [
            op
            for op in _NUMBER_OPS
            if op in declared and not (op == "scale" and self.scale == "none")
        ]

    @model_validator(mode="after")
    def _consistent(self) -> FeaturePreprocessing:
        declared = self._declared()
        for op, companions in _ALONE.items():
            if op in declared:
                others = sorted(set(declared) - {op, *companions})
                if others:
                    raise ValueError(f"{op} cannot be combined with {', '.join(others)}")
        if self.cross is not None and self.hash_buckets is None:
            raise ValueError("cross needs hash_buckets (how many ids the cross hashes into)")
        if (self.impute == "constant") != (self.impute_value is not None):
            raise ValueError("impute_value is required with impute: constant, and only then")
        if self.vocabulary and self.hash_buckets:
            raise ValueError("vocabulary and hash_buckets are two ways to ids: choose one")
        number_ops = self.number_ops()
        if self.is_categorical and number_ops:
            raise ValueError(
                f"{'vocabulary' if self.vocabulary else 'hash_buckets'} cannot be combined "
                f"with {', '.join(number_ops)}"
            )
        if self.output is not None and not self.is_categorical:
            raise ValueError("output needs vocabulary or hash_buckets (the ids it is made of)")
        if (self.output == "ids") != (self.max_items is not None):
            raise ValueError("max_items is required with output: ids, and only then")
        if self.output == "multi_hot" and self.vocabulary and not self.vocabulary.has_size:
            raise ValueError(
                "output: multi_hot needs vocabulary.top_k or vocabulary.file "
                "(the length of the vector)"
            )
        return self


def _type_name(dtype: tf.dtypes.DType) -> str:
    return {tf.float32: "float", tf.int64: "int", tf.string: "string"}[dtype]


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def check_compatible(
    name: str,
    dtype: tf.dtypes.DType,
    nullable: bool,
    ops: FeaturePreprocessing,
    *,
    is_list: bool = False,
    is_image: bool = False,
) -> None:
    """Raises ``ValueError`` naming the feature and op when ops do not fit the feature."""
    kind = "an image" if is_image else "a list" if is_list else _a(_type_name(dtype))
    is_string = dtype == tf.string
    cleaning = [k for k in _CLEANING if getattr(ops, k) is not None]
    if cleaning and (not is_string or is_image):
        raise ValueError(f'{cleaning[0]} cleans strings, but feature "{name}" is {kind}')
    ops = ops.with_default_treatment(dtype)
    if ops.drop:
        return
    if ops.cross is not None:
        raise ValueError(f'cross makes a new feature; "{name}" is a raw feature already')
    if is_image != (ops.image is not None):
        if is_image:
            raise ValueError(
                f'feature "{name}" is an image: declare image: {{height, width}} (or drop: true)'
            )
        raise ValueError(f'image needs an image feature (media: image), but "{name}" is {kind}')
    if ops.text is not None and (not is_string or is_list):
        raise ValueError(f'text needs a string feature, but feature "{name}" is {kind}')
    if is_list != (ops.output is not None):
        if is_list:
            raise ValueError(
                f'feature "{name}" is a list: declare vocabulary or hash_buckets and '
                "output: multi_hot | ids"
            )
        raise ValueError(f'output needs a list feature (list: true), but "{name}" is {kind}')
    if is_list and (ops.number_ops() or ops.impute):
        op = (ops.number_ops() or ["impute"])[0]
        raise ValueError(f'{op} does not apply to feature "{name}", a list')
    if is_string and ops.number_ops():
        raise ValueError(f'{ops.number_ops()[0]} needs a number, but feature "{name}" is a string')
    if is_string and ops.impute in NUMBER_ONLY_IMPUTE:
        raise ValueError(f'impute: {ops.impute} needs a number, but feature "{name}" is a string')
    if dtype == tf.float32 and ops.is_categorical:
        op = "vocabulary" if ops.vocabulary else "hash_buckets"
        raise ValueError(f'{op} needs a string or int feature, but feature "{name}" is a float')
    if ops.is_missing and not nullable:
        raise ValueError(f'is_missing needs a nullable feature, but "{name}" is never missing')
    if ops.impute == "constant":
        value = ops.impute_value
        ok = isinstance(value, str) if is_string else isinstance(value, (int, float))
        if not ok or isinstance(value, bool):
            raise ValueError(f'impute_value {value!r} does not fit feature "{name}"')
    handles_missing = ops.impute or ops.is_categorical or is_string or is_list
    if nullable and not handles_missing:
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
    label_key: str | None = None,
    classification: bool = True,
    user_fn: PreprocessingFn | None = None,
    cleaning: Cleaning | None = None,
) -> PreprocessingFn:
    """Compiles declared steps (and an optional user function) into one ``preprocessing_fn``.

    Every raw feature but the label is transformed, by its declared step or by the
    default (strings: vocabulary; numbers: as they are); each ``cross`` entry adds a
    feature of its own. For a classifier the label becomes ids in the label vocabulary
    (named after the label; its order is the order of the exported ``classes``). With
    ``user_fn``, its outputs come first and only the declared steps are added, plus
    the label unless ``user_fn`` made it. String features are cleaned first (their
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
            feature.dtype,
            isinstance(feature, tf.io.VarLenFeature),
            ops,
            is_list=ops.output is not None,
            is_image=ops.image is not None,
        )

    cleanings = {
        name: (steps[name].cleaning if name in steps else Cleaning()).over(cleaning)
        for name, feature in spec.items()
        if feature.dtype == tf.string and name != label_key and name not in crosses
    }

    def preprocessing_fn(inputs: dict) -> dict:
        inputs = {
            name: clean_strings(x, cleanings.get(name)) if name in spec else x
            for name, x in inputs.items()
        }
        outputs: dict = dict(user_fn(dict(inputs))) if user_fn is not None else {}
        for name, feature in spec.items():
            if name == label_key or (user_fn is not None and name not in steps):
                continue
            ops = (steps.get(name) or FeaturePreprocessing()).with_default_treatment(feature.dtype)
            _add(outputs, feature_outputs(inputs[name], ops, name))
        for name, ops in crosses.items():
            _add(outputs, {name: cross_output([inputs[f] for f in ops.cross], ops.hash_buckets)})
        # A user's function may transform the label itself; otherwise it is done here.
        if label_key is not None and label_key not in outputs:
            outputs[label_key] = transform_label(inputs[label_key], label_key, classification)
        return outputs

    return preprocessing_fn


def _add(outputs: dict, step_outputs: dict) -> None:
    clash = sorted(set(step_outputs) & set(outputs))
    if clash:
        raise ValueError(f"preprocessing_fn outputs {clash} clash with declared steps")
    outputs.update(step_outputs)


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
