"""The pipeline config: one YAML file, validated into a typed model before any work starts.

The raw feature spec is derived here, once, from the ``features`` section (and the
label); every stage receives it instead of reading the YAML again.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Literal

import tensorflow as tf
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tfbake.model_config import (
    Export,
    Label,
    Model,
    Training,
    check_label_and_model,
    label_feature_spec,
)
from transform.csv_source import CsvFormat
from transform.preprocessing import FeaturePreprocessing, check_compatible

_DTYPES = {"float": tf.float32, "int": tf.int64, "string": tf.string}


class ConfigError(ValueError):
    """A config that cannot run; the message names the key (or file) and what was expected."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """A raw feature: what a training row and a serving ``tf.Example`` carry.

    ``list: true``: any number of values, none included (a multi-valued tf.Example
    feature); ``media: image``: a string holding an encoded PNG/JPEG/GIF/BMP image.
    How a feature is used (a number, a category, a text) is said by its
    ``preprocessing`` entry.
    """

    type: Literal["float", "int", "string"]
    nullable: bool = False
    list: bool = False
    media: Literal["image"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Feature:
        if self.list and self.nullable:
            raise ValueError("a list may be empty already: nullable does not apply to it")
        if self.list and self.type == "float":
            raise ValueError("a list holds categories: type string or int")
        if self.media == "image" and (self.type != "string" or self.list or self.nullable):
            raise ValueError("an image is one string value (type: string, not list or nullable)")
        return self


class Data(_Strict):
    """Where the training and eval data are, and how much bad data a job tolerates."""

    format: Literal["csv", "tfrecord"] = "csv"
    # One span (a file or a glob) or a list of spans (e.g. one a day): the analysis
    # cache keeps each span's statistics, so a new span is the only one analyzed.
    train: str | list[str] = Field(min_length=1)
    eval: str
    csv: CsvFormat = Field(default_factory=CsvFormat)
    max_reject_fraction: float = Field(default=0.05, ge=0, le=1)


class Config(_Strict):
    """One pipeline, as declared in ``configs/<name>.yaml``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    artifacts: str | None = None
    data: Data
    features: dict[str, Feature] = Field(min_length=1)
    # One label (`label`), or several, each with its own head (`labels`: multi-head).
    label: Label | None = None
    labels: list[Label] | None = Field(default=None, min_length=1)
    preprocessing: dict[str, FeaturePreprocessing] = Field(default_factory=dict)
    preprocessing_fn: str | None = None
    model: Model = Field(default_factory=Model)
    training: Training = Field(default_factory=Training)
    export: Export = Field(default_factory=Export)
    beam: dict[str, Any] = Field(default_factory=dict)

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
        for name, ops in self.preprocessing.items():
            if ops.cross is not None:
                self._check_cross(name, ops.cross)
            elif name not in self.features:
                raise ValueError(
                    f'preprocessing.{name}: "{name}" is not a declared feature '
                    f"(features: {', '.join(self.features)})"
                )
            else:
                self._check_ops(name, ops)
        if not self.preprocessing_fn:  # features without an entry get the default ops
            for name in self.features.keys() - self.preprocessing.keys():
                self._check_ops(name, FeaturePreprocessing())
        images = [name for name, f in self.features.items() if f.media == "image"]
        if images and self.data.format != "tfrecord":
            raise ValueError(
                f"features.{images[0]}: images are read from tf.Examples (data.format: tfrecord)"
            )
        return self

    def _check_ops(self, name: str, ops: FeaturePreprocessing) -> None:
        feature = self.features[name]
        try:
            check_compatible(
                name,
                _DTYPES[feature.type],
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
            if feature is None or feature.type == "float" or feature.list or feature.media:
                raise ValueError(
                    f'preprocessing.{name}.cross: "{part}" is not a declared string or int '
                    "feature with one value"
                )

    # Derived paths: everything a run writes goes under `artifacts`.
    @property
    def artifacts_dir(self) -> str:
        return self.artifacts or os.path.join("artifacts", self.name)

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
        """The raw feature spec of training data: every feature and the label.

        Required values are ``FixedLenFeature([])``; nullable ones and lists
        ``VarLenFeature``, so a missing value is absent rather than coerced to 0 or ""
        (which of the two a ``VarLenFeature`` is: :meth:`list_features`).
        """
        spec = {
            name: tf.io.VarLenFeature(_DTYPES[f.type])
            if f.nullable or f.list
            else tf.io.FixedLenFeature([], _DTYPES[f.type])
            for name, f in self.features.items()
        }
        for label in self.all_labels:
            spec.update(label_feature_spec(label))
        return spec

    def list_features(self) -> list[str]:
        """The multi-valued features (``list: true``): ``VarLenFeature``s that are lists,
        not nullable values."""
        return [name for name, f in self.features.items() if f.list]

    def list_columns(self) -> list[str]:
        """The multi-valued columns of the training data: the list features and the
        multi-label labels (in a CSV cell, their values joined by ``list_delimiter``)."""
        labels = [label.name for label in self.all_labels if label.kind == "multi_label"]
        return [*self.list_features(), *labels]

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
        multi-valued feature, ``{"media": "image"}`` for an encoded image."""
        annotations: dict[str, dict] = {}
        for name, f in self.features.items():
            if f.list:
                annotations[name] = {"list": True}
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


def _check_files(config: Config, source: str) -> None:
    patterns = [("data.train", p) for p in config.train_spans] + [("data.eval", config.data.eval)]
    for key, pattern in patterns:
        if not glob.glob(pattern):
            raise ConfigError(f"{source}: {key}: no file matches {pattern!r}")


def load_config(path: str | os.PathLike, *, check_files: bool = True) -> Config:
    """Reads and validates a YAML config; raises :class:`ConfigError` naming the bad key."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"{source}: cannot read config: {err.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    return config_from_dict(raw, source=source, check_files=check_files)


def config_from_dict(raw: Any, *, source: str = "config", check_files: bool = True) -> Config:
    """Validates an already-parsed config (e.g. built in Python)."""
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
    return config
