"""The label, model, training and export sections of the config.

Kept apart from :mod:`tfbake.config` (features and preprocessing) so that what a
model is trained on and how it is built can grow without touching the feature side.
"""

from __future__ import annotations

from typing import Literal

import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tfbake.paths import ConfigPath
from trainer.model import monitor_mode
from transform.ops.cleaning import Case, Cleaning

_DTYPES = {"float": tf.float32, "int": tf.int64, "string": tf.string}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


HeadType = Literal["classification", "multi_label", "regression", "sequence_tagging"]


class Label(_Strict):
    """A label column and the head that learns it.

    String and int labels are classes (``head: classification``), float labels
    targets (``regression``). ``head: multi_label``: each example carries a list of
    labels from ``classes`` (the exported order), one sigmoid each, ``threshold`` for
    the thresholded answer. ``weight``: this head's share of a multi-head loss.
    ``normalize``: a regression label is learned z-scored and answered in its units.
    ``derived``: the label is no raw column; the ``preprocessing_fn`` computes its value
    (string or int classes, a float target) and returns it under ``name``, and it is
    then turned into class ids or a target as a label column is. ``strip``, ``case``
    and ``map`` clean a string label's values first (``map: {"high.": "high"}``).
    ``head: sequence_tagging``: the label is a list of tags (string), one per token of
    the feature named by ``tokens`` (a text with ``output: ids``, or a list with
    ``output: ids``), learned by a token model.
    """

    name: str
    type: Literal["float", "int", "string"] = "string"
    derived: bool = False
    strip: bool | None = None
    case: Case | None = None
    map: dict[str, str] | None = None
    head: HeadType | None = None
    classes: list[str] | None = Field(default=None, min_length=1)
    threshold: float = Field(default=0.5, gt=0, lt=1)
    weight: float = Field(default=1.0, gt=0)
    # sequence_tagging: the feature whose tokens the tags are aligned with.
    tokens: str | None = None
    # Regression: learn the z-scored label (mean/std of the training data, from the
    # Beam job); the export answers in the label's own units.
    normalize: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Label:
        kind = self.kind
        if self.normalize and kind != "regression":
            raise ValueError(f'label "{self.name}": normalize is for a regression label')
        if (kind == "regression") != (self.type == "float"):
            raise ValueError(
                f'label "{self.name}": head {kind} needs '
                + ("a float label" if kind == "regression" else "a string or int label")
                + f", got type {self.type}"
            )
        if (kind == "multi_label") != (self.classes is not None):
            raise ValueError(
                f'label "{self.name}": classes (the label vocabulary, in order) are '
                + ("required by" if kind == "multi_label" else "only for")
                + " head: multi_label"
            )
        if (kind == "sequence_tagging") != (self.tokens is not None):
            raise ValueError(
                f'label "{self.name}": tokens (the feature whose tokens the tags are aligned '
                "with) is "
                + ("required by" if kind == "sequence_tagging" else "only for")
                + " head: sequence_tagging"
            )
        if kind == "sequence_tagging" and (self.type != "string" or self.derived):
            raise ValueError(
                f'label "{self.name}": head sequence_tagging needs a string label column '
                "(its tags)"
            )
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError(f'label "{self.name}": classes {self.classes} repeat a class')
        if self.type != "string" and (self.strip, self.case, self.map) != (None, None, None):
            raise ValueError(
                f'label "{self.name}": strip, case and map clean strings, but the label is '
                f"type {self.type}"
            )
        return self

    @property
    def cleaning(self) -> Cleaning:
        """The label's own cleaning keys (unset ones left to the config's ``cleaning``)."""
        return Cleaning.of(self)

    @property
    def kind(self) -> str:
        """The head type: the declared one, else from the label's type."""
        return self.head or ("regression" if self.type == "float" else "classification")

    @property
    def is_classifier(self) -> bool:
        return self.kind != "regression"


ModelType = Literal[
    "dnn_classifier",
    "dnn_regressor",
    "linear_classifier",
    "linear_regressor",
    "wide_deep_classifier",
    "wide_deep_regressor",
    "text_classifier",
    "image_classifier",
    # sequence_tagging labels: token embedding -> encoder -> a tag per token.
    "token_tagger",
    # The head(s) come from the label(s): any head type, several labels.
    "dnn",
    "linear",
    "wide_deep",
    "custom",
]


TEXT_ENCODERS = ("pooling", "cnn", "lstm", "gru")  # default: cnn
TAGGER_ENCODERS = ("bilstm", "transformer")  # default: bilstm
# Model types whose encoder body takes several labels (one head each) too.
MULTI_HEAD_ENCODERS = ("text_classifier", "image_classifier", "token_tagger")


class Model(_Strict):
    """The canned model and its hyperparameters (hidden layers only for dnn/wide_deep)."""

    type: ModelType = "dnn_classifier"
    hidden_units: list[int] = Field(default_factory=lambda: [32, 16], min_length=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    activation: str = "relu"
    batch_norm: bool = False
    # Wide & deep: which transformed features go to each part (default: all to both).
    linear_features: list[str] | None = None
    dnn_features: list[str] | None = None
    # text_classifier: token embedding -> encoder (units; kernel_size for cnn);
    # token_tagger: token embedding -> encoder (units) -> a tag per token.
    embedding_dim: int = Field(default=32, gt=0)
    encoder: Literal["pooling", "cnn", "lstm", "gru", "bilstm", "transformer"] | None = None
    # transformer: attention heads and encoder blocks.
    num_heads: int = Field(default=2, gt=0)
    num_layers: int = Field(default=1, gt=0)
    units: int = Field(default=32, gt=0)
    kernel_size: int = Field(default=3, gt=0)
    # image_classifier: one convolution block per entry of filters (kernel_size too).
    filters: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    pooling: Literal["max", "average"] = "max"
    optimizer: str = "adam"
    learning_rate: float = Field(default=0.01, gt=0)
    # type custom: "package.module:function" (transformed feature spec, TFTransformOutput
    # -> tf_keras model); optional loss ("package.module:object", training only) and
    # postprocess ("package.module:function", predictions -> predictions, in the export).
    build: str | None = Field(default=None, pattern=r"^[\w.]+:\w+$")
    loss: str | None = Field(default=None, pattern=r"^[\w.]+:\w+$")
    postprocess: str | None = Field(default=None, pattern=r"^[\w.]+:\w+$")

    @model_validator(mode="after")
    def _custom(self) -> Model:
        if (self.type == "custom") != (self.build is not None):
            raise ValueError(
                "model.build is required by model.type custom"
                if self.type == "custom"
                else f"model.build is only for model.type custom, not {self.type}"
            )
        if self.loss and self.type != "custom":
            raise ValueError(f"model.loss is only for model.type custom, not {self.type}")
        encoders = TEXT_ENCODERS if self.type == "text_classifier" else TAGGER_ENCODERS
        if self.encoder is not None and self.encoder not in encoders:
            raise ValueError(
                f"model.encoder: {self.type} takes {' | '.join(encoders)}, not {self.encoder}"
                if self.type in ("text_classifier", "token_tagger")
                else f"model.encoder is for text_classifier and token_tagger, not {self.type}"
            )
        return self

    @property
    def text_encoder(self) -> str:
        """The encoder of a text classifier or token tagger (its default when unset)."""
        if self.encoder is not None:
            return self.encoder
        return TEXT_ENCODERS[1] if self.type == "text_classifier" else TAGGER_ENCODERS[0]


class EarlyStopping(_Strict):
    # A Keras history key: val_loss, val_accuracy, val_<head>_auc ... (min or max is
    # read from the name).
    monitor: str = "val_loss"
    patience: int = Field(default=3, ge=0)

    @field_validator("monitor")
    @classmethod
    def _known_mode(cls, monitor: str) -> str:
        monitor_mode(monitor)
        return monitor


class Training(_Strict):
    epochs: int = Field(default=20, gt=0)
    batch_size: int = Field(default=32, gt=0)
    early_stopping: EarlyStopping | None = Field(default_factory=EarlyStopping)
    seed: int = 42
    # Same seed, same data -> same weights (TensorFlow's op determinism).
    deterministic: bool = True
    # A single-label classifier's: "balanced" or class name -> weight.
    class_weights: Literal["balanced"] | dict[str, float] | None = None
    # tf.distribute strategy: default (one device), mirrored (the local GPUs; the CPU
    # when none), multi_worker_mirrored (the cluster in TF_CONFIG).
    distribute: Literal["default", "mirrored", "multi_worker_mirrored"] = "default"
    # Initialize from a previous model: a run's artifacts folder, an export folder or
    # one export version; rows of categorical and text features remapped by token.
    warm_start: ConfigPath | None = None


class Export(_Strict):
    dir: ConfigPath | None = None
    # Real eval examples written as TF Serving warm-up requests (0: none).
    warmup_examples: int = Field(default=5, ge=0, le=1000)


class Monitoring(_Strict):
    """Statistics of the raw training data (computed by the Beam job, carried by the
    export, checked per request by the server) and the thresholds of ``tfbake drift``."""

    statistics: bool = True
    # String values kept per feature, most frequent first: the whole vocabulary when it
    # has no more, which the server's unseen-category check needs.
    top_k: int = Field(default=1000, ge=1, le=100_000)
    # Drift thresholds: L-infinity distance of category shares, Jensen-Shannon
    # divergence (base 2) of number distributions, and the rise of the share of
    # examples missing a feature or holding a value training never had.
    l_infinity: float = Field(default=0.2, gt=0, le=1)
    jensen_shannon: float = Field(default=0.1, gt=0, le=1)
    missing_rate: float = Field(default=0.1, gt=0, le=1)
    unseen_rate: float = Field(default=0.05, gt=0, le=1)


def label_feature_spec(label: Label) -> dict:
    """The label's part of the raw feature spec (training data only; never served):
    nothing for a derived label.

    A multi-label label is a list (``VarLenFeature``; no label at all is an empty list).
    """
    if label.derived:
        return {}
    dtype = _DTYPES[label.type]
    if label.kind in ("multi_label", "sequence_tagging"):
        return {label.name: tf.io.VarLenFeature(dtype)}
    return {label.name: tf.io.FixedLenFeature([], dtype)}


def check_label_and_model(label: Label | list[Label], model: Model) -> None:
    """Raises ``ValueError`` naming the key when the label(s) do not fit the model type.

    ``*_classifier`` and ``*_regressor`` types take one label of their kind; several
    labels (a multi-head model) need ``dnn``, ``linear``, ``wide_deep``, ``custom`` or
    an encoder body (``text_classifier``, ``image_classifier``, ``token_tagger``).
    ``sequence_tagging`` labels need ``token_tagger`` (or ``custom``), and it needs them.
    """
    labels = label if isinstance(label, list) else [label]
    tagging = [lab.name for lab in labels if lab.kind == "sequence_tagging"]
    if model.type == "token_tagger" and len(tagging) != len(labels):
        raise ValueError(
            "model.type: token_tagger answers a tag per token: every label needs "
            "head: sequence_tagging"
        )
    if tagging and model.type not in ("token_tagger", "custom"):
        raise ValueError(
            f'label "{tagging[0]}": head sequence_tagging needs model.type token_tagger '
            f"(or custom), not {model.type}"
        )
    if (len(labels) > 1 and model.type.endswith(("_classifier", "_regressor"))
            and model.type not in MULTI_HEAD_ENCODERS):
        raise ValueError(
            f"model.type: {model.type} has one head; several labels need dnn, linear, "
            "wide_deep, text_classifier, image_classifier, token_tagger or custom"
        )
    first = labels[0]
    if len(labels) > 1 and model.type in MULTI_HEAD_ENCODERS:
        return  # each label's head follows its own kind
    if model.type.endswith("_classifier") and not first.is_classifier:
        raise ValueError(
            f"label.type: a float label is a regression target, but model.type "
            f"{model.type} is a classifier (use a string or int label)"
        )
    if model.type.endswith("_regressor") and first.is_classifier:
        raise ValueError(
            f"label.type: model.type {model.type} needs a float label, got {first.type}"
        )
