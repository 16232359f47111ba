"""The label, model, training and export sections of the config.

Kept apart from :mod:`tfbake.config` (features and preprocessing) so that what a
model is trained on and how it is built can grow without touching the feature side.
"""

from __future__ import annotations

from typing import Literal

import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field

_DTYPES = {"float": tf.float32, "int": tf.int64, "string": tf.string}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(_Strict):
    """The label column; string and int labels are classes, float labels are targets."""

    name: str
    type: Literal["float", "int", "string"] = "string"

    @property
    def is_classifier(self) -> bool:
        return self.type != "float"


ModelType = Literal[
    "dnn_classifier",
    "dnn_regressor",
    "linear_classifier",
    "linear_regressor",
    "wide_deep_classifier",
    "wide_deep_regressor",
    "text_classifier",
    "image_classifier",
]


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
    # text_classifier: token embedding -> encoder (units; kernel_size for cnn).
    embedding_dim: int = Field(default=32, gt=0)
    encoder: Literal["pooling", "cnn", "lstm", "gru"] = "cnn"
    units: int = Field(default=32, gt=0)
    kernel_size: int = Field(default=3, gt=0)
    # image_classifier: one convolution block per entry of filters (kernel_size too).
    filters: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    pooling: Literal["max", "average"] = "max"
    optimizer: str = "adam"
    learning_rate: float = Field(default=0.01, gt=0)


class EarlyStopping(_Strict):
    monitor: str = "val_loss"
    patience: int = Field(default=3, ge=0)


class Training(_Strict):
    epochs: int = Field(default=20, gt=0)
    batch_size: int = Field(default=32, gt=0)
    early_stopping: EarlyStopping | None = Field(default_factory=EarlyStopping)
    seed: int = 42


class Export(_Strict):
    dir: str | None = None
    # Real eval examples written as TF Serving warm-up requests (0: none).
    warmup_examples: int = Field(default=5, ge=0, le=1000)


def label_feature_spec(label: Label) -> dict:
    """The label's part of the raw feature spec (training data only; never served)."""
    return {label.name: tf.io.FixedLenFeature([], _DTYPES[label.type])}


def check_label_and_model(label: Label, model: Model) -> None:
    """Raises ``ValueError`` naming the key when the label does not fit the model type."""
    if model.type.endswith("_classifier") and label.type == "float":
        raise ValueError(
            f"label.type: a float label is a regression target, but model.type "
            f"{model.type} is a classifier (use a string or int label)"
        )
    if model.type.endswith("_regressor") and label.type != "float":
        raise ValueError(
            f"label.type: model.type {model.type} needs a float label, got {label.type}"
        )
