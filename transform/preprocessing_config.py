"""The ``preprocessing`` section of the config: what each op declares, and which ops fit
which raw feature. No TensorFlow: the config is validated before anything heavy loads.

The ops themselves (the TensorFlow / tf.Transform code each declaration compiles to)
live in :mod:`tfbake.transform.ops`; :mod:`tfbake.transform.preprocessing` puts them together into
one ``preprocessing_fn``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tfbake.paths import ConfigPath, is_remote
from tfbake.serving_input.strict_model import StrictModel

PreprocessingFn = Callable[[dict], dict]

Case = Literal["lower", "upper"]


class Cleaning(StrictModel):
    """How string values are cleaned (``strip``, ``case``, ``map``); ``None`` leaves a
    key to the config's ``cleaning`` section (every string feature and string label)."""

    strip: bool | None = None
    case: Case | None = None
    map: dict[str, str] | None = None

    @model_validator(mode="after")
    def _map_keys_can_match(self) -> Cleaning:
        for key in self.map or {}:
            if self.strip and key != key.strip():
                raise ValueError(f"map key {key!r} never matches: values are stripped first")
            folded = {"lower": key.lower(), "upper": key.upper()}.get(self.case or "", key)
            if folded != key:
                raise ValueError(
                    f"map key {key!r} never matches: values are {self.case}-cased first"
                )
        return self

    def over(self, defaults: Cleaning | None) -> Cleaning:
        """These keys, the ``defaults`` where unset (validated again: a map key must
        still be able to match)."""
        if defaults is None:
            return self
        return Cleaning(
            strip=defaults.strip if self.strip is None else self.strip,
            case=defaults.case if self.case is None else self.case,
            map=self.map,
        )

    @classmethod
    def of(cls, entry) -> Cleaning:
        """The ``strip``/``case``/``map`` keys of a config entry (a feature's
        preprocessing or a label), as declared: checked once merged (:meth:`over`)."""
        return cls.model_construct(strip=entry.strip, case=entry.case, map=entry.map)

    @property
    def active(self) -> bool:
        """Whether this changes any value."""
        return bool(self.strip or self.case or self.map)

class Vocabulary(StrictModel):
    """Values looked up in a vocabulary computed over the training data, or, with
    ``file``, in a fixed token list (one token per line; a token's id is its line
    number from 0), which the export carries as an asset.

    Unseen values fall into ``num_oov_buckets`` hashed buckets after the vocabulary's
    ids (with 0 buckets, an unseen value has no id: -1 for a scalar, left out of a list).
    """

    top_k: int | None = Field(default=None, gt=0)
    frequency_threshold: int | None = Field(default=None, gt=0)
    num_oov_buckets: int = Field(default=1, ge=0)
    file: ConfigPath | None = None

    @model_validator(mode="after")
    def _file_is_the_whole_list(self) -> Vocabulary:
        # top_k / frequency_threshold pick tokens from the training data; a file is fixed.
        picks = [k for k in ("top_k", "frequency_threshold") if getattr(self, k) is not None]
        if self.file is not None and picks:
            raise ValueError(
                f"vocabulary.file is a fixed token list: {', '.join(picks)} (which choose "
                "tokens from the training data) cannot be combined with it"
            )
        return self

    @property
    def has_size(self) -> bool:
        """Whether the number of ids is known before the data is read (``top_k`` or ``file``)."""
        return self.top_k is not None or self.file is not None

    @property
    def max_size(self) -> int | None:
        """The most ids there can be (``top_k`` or the file's tokens, + OOV buckets);
        None for a computed vocabulary without ``top_k``."""
        if self.file is not None:
            return len(file_tokens(self.file)) + self.num_oov_buckets
        return None if self.top_k is None else self.top_k + self.num_oov_buckets


def _read_bytes(path: str) -> bytes:
    if is_remote(path):
        import tensorflow as tf  # gfile reads gs://, hdfs://, s3://

        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                return f.read()
        except tf.errors.OpError as err:
            raise OSError(str(err)) from None
    with open(path, "rb") as f:
        return f.read()


def file_tokens(path: str) -> list[str]:
    """The tokens of a vocabulary file, in line order (the ids a lookup table on it
    gives); raises ``ValueError`` when it is missing, empty, or has a blank line or a
    token twice (a table on the file could not give each token one id)."""
    try:
        text = _read_bytes(path).decode("utf-8")
    except OSError as err:
        raise ValueError(f"vocabulary.file {path} cannot be read: {err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"vocabulary.file {path} is not UTF-8 text: {err}") from None
    # Lines as the table's initializer reads them: split at "\n", a "\r" before it dropped.
    lines = [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]
    if lines == [""]:
        raise ValueError(f"vocabulary.file {path} is empty: expected one token per line")
    first_line: dict[str, int] = {}
    for number, token in enumerate(lines, start=1):
        if not token:
            raise ValueError(f"vocabulary.file {path}: line {number} is blank")
        if token in first_line:
            raise ValueError(
                f"vocabulary.file {path}: token {token!r} is on line {first_line[token]} "
                f"and again on line {number} (each token once)"
            )
        first_line[token] = number
    return lines


class Image(StrictModel):
    """The ``image`` op of an image feature, as declared in YAML."""

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    # Grayscale or RGB (an alpha channel is dropped).
    channels: Literal[1, 3] = 3

ImputeStrategy = Literal["mean", "median", "most_frequent", "constant"]
NUMBER_ONLY_IMPUTE = ("mean", "median")


class Bucketize(StrictModel):
    """A number turned into a quantile bucket id (a categorical feature)."""

    num_buckets: int = Field(gt=1)


class Clip(StrictModel):
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

IdListOutput = Literal["multi_hot", "ids", "bag_of_words", "tfidf"]
DENSE_OUTPUTS = ("multi_hot", "bag_of_words", "tfidf")

class Split(StrictModel):
    """Every match of ``regex`` separates tokens, as whitespace always does (e.g.
    ``"[^a-z0-9'\\s]+"``: punctuation and symbols separate words too)."""

    regex: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        try:
            re.compile(regex)
        except re.error as err:
            raise ValueError(f"split.regex {regex!r} is not a regular expression: {err}") from None
        return regex


class Text(StrictModel):
    """The ``text`` op of a string feature, as declared in YAML."""

    lowercase: bool = True
    split: Literal["whitespace"] | Split = "whitespace"
    ngrams: tuple[int, int] | None = None  # [min, max] n-gram widths, e.g. [1, 2]
    vocabulary: Vocabulary = Field(default_factory=Vocabulary)
    output: Literal["ids", "bag_of_words", "tfidf"] = "ids"
    max_tokens: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Text:
        if self.ngrams is not None and not 1 <= self.ngrams[0] <= self.ngrams[1]:
            raise ValueError(
                f"ngrams {list(self.ngrams)}: expected [min, max] with 1 <= min <= max"
            )
        if (self.output == "ids") != (self.max_tokens is not None):
            raise ValueError("max_tokens is required with output: ids, and only then")
        if self.output in DENSE_OUTPUTS and not self.vocabulary.has_size:
            raise ValueError(
                f"output: {self.output} needs vocabulary.top_k or vocabulary.file "
                "(the length of the vector)"
            )
        return self

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


class FeaturePreprocessing(StrictModel):
    """The preprocessing of one raw feature, as declared in YAML (see docs/preprocessing.md).

    Numbers: ``impute`` fills a missing value (``impute_value`` for ``constant``), then
    ``clip``, ``log1p``, and ``bucketize`` (ids, named ``<feature>_bucketized`` when
    ``scale`` is also set) or ``scale``. Categories: ``vocabulary`` or ``hash_buckets``.
    Lists: ``vocabulary`` or ``hash_buckets`` with ``output`` (``multi_hot``, or ``ids``
    with ``max_items``). ``text``, ``image``, ``passthrough``, ``drop`` and ``cross``
    (with ``hash_buckets``) are whole treatments of their own. ``is_missing`` adds a
    ``<feature>_is_missing`` indicator for a nullable feature. A string's raw values
    are first cleaned by ``strip``, ``case`` and ``map``
    (:class:`~tfbake.transform.ops.cleaning.Cleaning`); an entry of only these keys keeps
    the default treatment.
    """

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

    def with_default_treatment(self, type_name: str) -> FeaturePreprocessing:
        """This entry, or, when it declares only cleaning keys, the default treatment
        of a ``type_name`` feature (a vocabulary for strings, numbers as they are)
        with them."""
        if self._declared():
            return self
        return _default_ops(type_name).model_copy(
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


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def check_compatible(
    name: str,
    type_name: str,
    nullable: bool,
    ops: FeaturePreprocessing,
    *,
    is_list: bool = False,
    is_image: bool = False,
) -> None:
    """Raises ``ValueError`` naming the feature and op when ops do not fit the feature
    (``type_name``: ``float``, ``int`` or ``string``)."""
    kind = "an image" if is_image else "a list" if is_list else _a(type_name)
    is_string = type_name == "string"
    cleaning = [k for k in _CLEANING if getattr(ops, k) is not None]
    if cleaning and (not is_string or is_image):
        raise ValueError(f'{cleaning[0]} cleans strings, but feature "{name}" is {kind}')
    ops = ops.with_default_treatment(type_name)
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
    if type_name == "float" and ops.is_categorical:
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


def _default_ops(type_name: str) -> FeaturePreprocessing:
    """A feature without an entry: categories get a vocabulary, numbers pass as they are."""
    return (
        FeaturePreprocessing(vocabulary=Vocabulary())
        if type_name == "string"
        else FeaturePreprocessing()
    )


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
