"""The pipeline config: one YAML file, validated into a typed model before any work starts.

The raw feature spec is derived here, once, from the ``features`` section (and the
label); every stage receives it instead of reading the YAML again.
"""

from __future__ import annotations

import glob
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from tfbake.model_config import (
    Export,
    Label,
    Model,
    Monitoring,
    Training,
    check_label_and_model,
    label_feature_spec,
)
from tfbake.paths import ConfigPath, is_remote
from tfbake.serving_input.csv_format import CsvFormat
from tfbake.serving_input.export_layout import FEATURE_DTYPES, FEATURE_LIST
from tfbake.serving_input.strict_model import StrictModel
from tfbake.transform.preprocessing_config import (
    Cleaning,
    FeaturePreprocessing,
    check_compatible,
    file_tokens,
    load_preprocessing_fn,
)


class ConfigError(ValueError):
    """A config that cannot run; the message names the key (or file) and what was expected."""


class Feature(StrictModel):
    """A raw feature: what a training row and a serving ``tf.Example`` carry.

    ``list: true``: any number of values, none included (a multi-valued tf.Example
    feature); ``media: image``: a string holding an encoded PNG/JPEG/GIF/BMP image.
    ``serving: false``: a column of the training data only (e.g. what a derived label
    is computed from): never transformed into a model input, never part of a serving
    request. How a feature is used (a number, a category, a text) is said by its
    ``preprocessing`` entry.
    """

    type: Literal["float", "int", "string"]
    nullable: bool = False
    list: bool = False
    media: Literal["image"] | None = None
    serving: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Feature:
        if self.list and self.nullable:
            raise ValueError("a list may be empty already: nullable does not apply to it")
        if self.list and self.type == "float":
            raise ValueError("a list holds categories: type string or int")
        if self.media == "image" and (self.type != "string" or self.list or self.nullable):
            raise ValueError("an image is one string value (type: string, not list or nullable)")
        return self


class HeldOut(StrictModel):
    """A deterministic fraction of the training records (by a hash of each record)."""

    fraction: float = Field(gt=0, lt=1)


class Data(StrictModel):
    """Where the training, validation and eval data are, and how much bad data a job
    tolerates.

    ``validation``: a file (or glob), or ``{fraction: 0.1}`` of the training records,
    that picks the early-stopping epoch (and the best checkpoint); ``eval`` is then
    measured once, after training. Without it, ``eval`` does both.

    ``format``: ``csv``, ``tfrecord`` (TFRecord files of ``tf.Example``) or
    ``sequence_example`` (TFRecord files of ``tf.SequenceExample``: the multi-valued
    columns are feature_lists, one value per step, the others context features;
    :meth:`Config.feature_lists`).
    """

    format: Literal["csv", "tfrecord", "sequence_example"] = "csv"
    # One span (a file or a glob) or a list of spans (e.g. one a day): the analysis
    # cache keeps each span's statistics, so a new span is the only one analyzed.
    train: ConfigPath | list[ConfigPath] = Field(min_length=1)
    eval: ConfigPath
    validation: ConfigPath | HeldOut | None = None
    csv: CsvFormat = Field(default_factory=CsvFormat)
    max_reject_fraction: float = Field(default=0.05, ge=0, le=1)


class Config(StrictModel):
    """One pipeline, as declared in ``configs/<name>.yaml``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    artifacts: ConfigPath | None = None  # None: artifacts/<name>, set when it loads
    data: Data
    features: dict[str, Feature] = Field(min_length=1)
    # One label (`label`), or several, each with its own head (`labels`: multi-head).
    label: Label | None = None
    labels: list[Label] | None = Field(default=None, min_length=1)
    preprocessing: dict[str, FeaturePreprocessing] = Field(default_factory=dict)
    preprocessing_fn: str | None = None
    # strip / case for every string feature and string label (their own keys win).
    cleaning: Cleaning | None = None
    model: Model = Field(default_factory=Model)
    training: Training = Field(default_factory=Training)
    export: Export = Field(default_factory=Export)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    beam: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_artifacts(cls, raw: Any) -> Any:
        # Resolved when the config loads, like every path (tfbake.paths).
        if isinstance(raw, dict) and raw.get("artifacts") is None and isinstance(
            raw.get("name"), str
        ):
            raw = {**raw, "artifacts": os.path.join("artifacts", raw["name"])}
        return raw

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.label is None and self.labels is None:
            raise ValueError(
                "label: required key is missing (or labels: [...], one head per label)"
            )
        if self.label is not None and self.labels is not None:
            raise ValueError("label, labels: declare one label or a list of labels, not both")
        names = self.label_keys
        for name in names:
            if name in self.features:
                raise ValueError(
                    f'label "{name}" is also listed under features; declare it only as label'
                )
            if names.count(name) > 1:
                raise ValueError(f'labels: label "{name}" is declared twice')
        check_label_and_model(self.all_labels, self.model)
        self._check_labels_and_cleaning()
        for label in self.all_labels:
            if label.tokens is not None:
                self._check_tagged_tokens(label)
        for name, ops in self.preprocessing.items():
            if ops.cross is not None:
                self._check_cross(name, ops.cross)
            elif name not in self.features:
                raise ValueError(
                    f'preprocessing.{name}: "{name}" is not a declared feature '
                    f"(features: {', '.join(self.features)})"
                )
            elif not self.features[name].serving:
                raise ValueError(
                    f'preprocessing.{name}: "{name}" is serving: false (training data only), '
                    "so no model input can be made of it"
                )
            else:
                self._check_ops(name, ops)
        if not self.preprocessing_fn:  # features without an entry get the default ops
            for name in self.serving_features() - self.preprocessing.keys():
                self._check_ops(name, FeaturePreprocessing())
        images = [name for name, f in self.features.items() if f.media == "image"]
        if images and self.data.format == "csv":
            raise ValueError(
                f"features.{images[0]}: images are read from tf.Examples (data.format: "
                "tfrecord, or a context feature of data.format: sequence_example)"
            )
        return self

    def _check_labels_and_cleaning(self) -> None:
        if self.cleaning is not None and self.cleaning.map is not None:
            raise ValueError("cleaning.map: a map belongs to one feature or label")
        for label in self.all_labels:
            if label.derived and not self.preprocessing_fn:
                raise ValueError(
                    f'label "{label.name}" is derived: a preprocessing_fn must compute it '
                    "(preprocessing_fn: my_module:preprocessing_fn)"
                )
            if label.type == "string":
                self._merged_cleaning(f'label "{label.name}"', label.cleaning)
        for name, feature in self.features.items():
            ops = self.preprocessing.get(name)
            if feature.type == "string" and ops is not None:
                self._merged_cleaning(f"preprocessing.{name}", ops.cleaning)

    def _check_tagged_tokens(self, label: Label) -> None:
        """The tags of a sequence_tagging label need one id per token of their feature:
        a text or list with ``output: ids``, every token kept (OOV buckets, no n-grams)."""
        key = f'label "{label.name}": tokens'
        feature = self.features.get(label.tokens)
        if feature is None or feature.type != "string" or not feature.serving:
            raise ValueError(f'{key}: "{label.tokens}" is not a served string feature')
        ops = self.preprocessing.get(label.tokens)
        text = ops.text if ops is not None else None
        if text is not None:
            vocabulary, output, ngrams = text.vocabulary, text.output, text.ngrams
        elif ops is not None and feature.list:
            vocabulary, output, ngrams = ops.vocabulary, ops.output, None
        else:
            raise ValueError(
                f'{key}: preprocessing.{label.tokens} must make one id per token: a text '
                "(text: {output: ids, max_tokens: L}) or a list (output: ids, max_items: L)"
            )
        if output != "ids":
            raise ValueError(f"{key}: preprocessing.{label.tokens} needs output: ids")
        if ngrams is not None or (vocabulary is not None and not vocabulary.num_oov_buckets):
            raise ValueError(
                f"{key}: every token needs an id for its tag: preprocessing.{label.tokens} "
                "may not use ngrams, and its vocabulary needs num_oov_buckets >= 1"
            )

    def tagged_tokens(self, label: Label) -> tuple[str, FeaturePreprocessing]:
        """A sequence_tagging label's token feature and its preprocessing entry."""
        return label.tokens, self.preprocessing[label.tokens]

    def _merged_cleaning(self, key: str, own: Cleaning) -> Cleaning:
        try:
            return Cleaning.model_validate(
                {k: v for k, v in own.over(self.cleaning).model_dump().items() if v is not None}
            )
        except ValidationError as err:
            message = err.errors()[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"{key}: {message}") from None

    def _check_ops(self, name: str, ops: FeaturePreprocessing) -> None:
        feature = self.features[name]
        try:
            check_compatible(
                name,
                feature.type,
                feature.nullable,
                ops,
                is_list=feature.list,
                is_image=feature.media == "image",
            )
        except ValueError as err:
            raise ValueError(f"preprocessing.{name}: {err}") from None

    def _check_cross(self, name: str, crossed: list[str]) -> None:
        if name in self.features:
            raise ValueError(
                f'preprocessing.{name}: a cross needs a new name; "{name}" is a feature'
            )
        for part in crossed:
            feature = self.features.get(part)
            if (feature is None or feature.type == "float" or feature.list or feature.media
                    or not feature.serving):
                raise ValueError(
                    f'preprocessing.{name}.cross: "{part}" is not a declared string or int '
                    "feature with one value"
                )

    def vocabulary_files(self) -> dict[str, str]:
        """Feature name -> the ``vocabulary.file`` its entry looks values up in (a
        category's, a list's or a text's)."""
        files = {}
        for name, ops in self.preprocessing.items():
            vocabulary = ops.text.vocabulary if ops.text is not None else ops.vocabulary
            if vocabulary is not None and vocabulary.file is not None:
                files[name] = vocabulary.file
        return files

    # Derived paths: everything a run writes goes under `artifacts`.
    @property
    def artifacts_dir(self) -> str:
        return self.artifacts  # set once validated (_default_artifacts)

    @property
    def transform_dir(self) -> str:
        return os.path.join(self.artifacts_dir, "transform")

    @property
    def analysis_cache_dir(self) -> str:
        """tf.Transform's analyzer cache, per training span; outside ``transform_dir``,
        which every run empties."""
        return os.path.join(self.artifacts_dir, "analysis_cache")

    @property
    def train_spans(self) -> list[str]:
        """``data.train`` as a list of spans."""
        train = self.data.train
        return [train] if isinstance(train, str) else list(train)

    @property
    def trainer_dir(self) -> str:
        return os.path.join(self.artifacts_dir, "trainer")

    @property
    def export_dir_base(self) -> str:
        return self.export.dir or os.path.join(self.artifacts_dir, "export")

    @property
    def is_classifier(self) -> bool:
        return self.all_labels[0].is_classifier

    @property
    def all_labels(self) -> list[Label]:
        """The label(s), in order: one head each, the first one the default."""
        return list(self.labels) if self.labels is not None else [self.label]

    @property
    def label_keys(self) -> list[str]:
        return [label.name for label in self.all_labels]

    def raw_feature_spec(self) -> dict:
        """The raw feature spec of training data: every feature (``serving: false`` ones
        included) and each label that is a column (not a derived one).

        Required values are ``FixedLenFeature([])``; nullable ones and lists
        ``VarLenFeature``, so a missing value is absent rather than coerced to 0 or ""
        (which of the two a ``VarLenFeature`` is: :meth:`list_features`).
        """
        import tensorflow as tf  # the config itself loads no TensorFlow

        spec = {}
        for name, f in self.features.items():
            dtype = tf.as_dtype(FEATURE_DTYPES[f.type])
            spec[name] = (
                tf.io.VarLenFeature(dtype) if f.nullable or f.list
                else tf.io.FixedLenFeature([], dtype)
            )
        for label in self.all_labels:
            spec.update(label_feature_spec(label))
        return spec

    def serving_features(self) -> set[str]:
        """The features a serving request carries (all but ``serving: false`` ones)."""
        return {name for name, f in self.features.items() if f.serving}

    def label_cleaning(self, label: Label) -> Cleaning:
        """How a string label's values are cleaned: its keys over ``cleaning``."""
        return label.cleaning.over(self.cleaning)

    def list_features(self) -> list[str]:
        """The multi-valued features (``list: true``): ``VarLenFeature``s that are lists,
        not nullable values."""
        return [name for name, f in self.features.items() if f.list]

    def list_columns(self) -> list[str]:
        """The multi-valued columns of the training data: the list features and the
        multi-label labels (in a CSV cell, their values joined by ``list_delimiter``)."""
        labels = [label.name for label in self.all_labels
                  if label.head_type in ("multi_label", "sequence_tagging")]
        return [*self.list_features(), *labels]

    def feature_lists(self) -> list[str]:
        """The columns a ``sequence_example`` record carries as feature_lists (one value
        per step): the multi-valued ones (:meth:`list_columns`); none for other formats."""
        return self.list_columns() if self.data.format == "sequence_example" else []

    def serving_feature_lists(self) -> list[str]:
        """The feature_lists of a serving record (:meth:`feature_lists` less the labels
        and ``serving: false`` features); none: the export takes tf.Examples."""
        served = self.serving_features()
        return [name for name in self.feature_lists() if name in served]

    def image_features(self) -> dict[str, int]:
        """Image feature -> the channels it is decoded to (the Beam job rejects a row
        whose image does not decode, with the decoder the ``preprocessing_fn`` uses)."""
        return {
            name: ops.image.channels if ops and ops.image else 3
            for name, f in self.features.items()
            if f.media == "image"
            for ops in [self.preprocessing.get(name)]
        }

    def feature_annotations(self) -> dict[str, dict]:
        """What a serving client needs to know about each feature beyond its spec,
        written into the export's ``raw_feature_spec.json``: ``{"list": True}`` for a
        multi-valued feature (``"feature_list": True`` too when a serving record carries
        it as a SequenceExample's feature_list), ``{"media": "image"}`` for an encoded
        image."""
        annotations: dict[str, dict] = {}
        feature_lists = self.serving_feature_lists()
        for name, f in self.features.items():
            if f.list:
                annotations[name] = {"list": True}
            if name in feature_lists:
                annotations[name][FEATURE_LIST] = True
            if f.media:
                annotations[name] = {"media": f.media}
        return annotations

    def beam_args(self) -> list[str]:
        """The ``beam`` section as pipeline flags (``--key=value``), passed through as is."""
        args = []
        for key, value in self.beam.items():
            for item in value if isinstance(value, list) else [value]:
                if item is True:
                    args.append(f"--{key}")
                elif item is not False and item is not None:
                    args.append(f"--{key}={item}")
        return args


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if not key:  # a cross-check, whose message names its own key
            lines.append(e["msg"].removeprefix("Value error, "))
        elif e["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        elif e["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
            lines.append(f"{key}: {msg}{shown}")
    return "\n  ".join(lines)


def load_object(reference: str, key: str):
    """Imports ``package.module:name`` for the config key ``key`` (e.g. ``model.build``);
    ValueError names the key."""
    module_name, _, attr = reference.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{key}: {reference!r} cannot be imported: {err}") from err


def _check_references(config: Config, source: str, folder: str | None = None) -> None:
    """Imports every ``package.module:name`` the config names, so one that does not
    import fails now, naming its key, rather than after the Beam job has started
    (``folder``: the config's, which is on the import path)."""
    references = {
        "model.build": config.model.build,
        "model.loss": config.model.loss,
        "model.postprocess": config.model.postprocess,
    }
    try:
        if config.preprocessing_fn:
            load_preprocessing_fn(config.preprocessing_fn)
        for key, reference in references.items():
            if reference:
                load_object(reference, key)
    except ValueError as err:
        searched = f" (searched the config's folder {folder} and sys.path)" if folder else ""
        raise ConfigError(f"{source}: {err}{searched}") from None


def import_path_of(path: str | os.PathLike) -> str:
    """Puts the folder of the config file ``path`` on the import path (``sys.path``,
    and ``PYTHONPATH`` for the processes this one starts: Beam workers on this machine),
    so a ``preprocessing_fn`` module beside the config imports; returns the folder."""
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if folder not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [folder, *paths] if p)
    return folder


def _check_files(config: Config, source: str) -> None:
    patterns = [("data.train", p) for p in config.train_spans] + [
        (f"data.{key}", getattr(config.data, key)) for key in ("eval", "validation")
    ]
    for key, pattern in patterns:
        if not isinstance(pattern, str):  # no validation set, or a fraction of train
            continue
        if is_remote(pattern):
            import tensorflow as tf  # gfile reads gs://, hdfs://, s3://

            found = tf.io.gfile.glob(pattern)
        else:
            found = glob.glob(pattern)
        if not found:
            raise ConfigError(f"{source}: {key}: no file matches {pattern!r}")
    for name, path in config.vocabulary_files().items():
        try:
            tokens = file_tokens(path)
        except ValueError as err:
            raise ConfigError(f"{source}: preprocessing.{name}: {err}") from None
        if config.features[name].type == "int":
            _check_int_tokens(f"{source}: preprocessing.{name}", path, tokens)


def _check_int_tokens(key: str, path: str, tokens: list[str]) -> None:
    # An int feature's table reads each line as an int64 key.
    for number, token in enumerate(tokens, start=1):
        try:
            int(token)
        except ValueError:
            raise ConfigError(
                f"{key}: vocabulary.file {path}: line {number} ({token!r}) is not an int, "
                "and the feature is an int"
            ) from None


def load_config(
    path: str | os.PathLike, *, check_files: bool = True, check_imports: bool = True
) -> Config:
    """Reads and validates a YAML config; raises :class:`ConfigError` naming the bad key.

    The config's folder goes on the import path (:func:`import_path_of`). With
    ``check_files``, the data files must exist; with ``check_imports``, the
    ``preprocessing_fn`` and ``model.build``/``loss``/``postprocess`` must import.
    """
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"{source}: cannot read config: {err.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    folder = import_path_of(path)
    config = config_from_dict(raw, source=source, check_files=check_files, check_imports=False)
    if check_imports:
        _check_references(config, source, folder)
    return config


def config_from_dict(
    raw: Any, *, source: str = "config", check_files: bool = True, check_imports: bool = True
) -> Config:
    """Validates an already-parsed config (e.g. built in Python); see :func:`load_config`."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    try:
        config = Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid config:\n  {_format_errors(err)}") from None
    if check_files:
        _check_files(config, source)
    if check_imports:
        _check_references(config, source)
    return config
