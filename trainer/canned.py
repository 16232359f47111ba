"""Canned models: the user names a type and hyperparameters, the inputs are derived."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow_transform as tft
import tf_keras

from trainer.feature_inputs import build_inputs, transformed_features
from trainer.heads import ClassificationHead
from trainer.model import Model, as_tft_output


class DNNClassifier(Model):
    """A feed-forward classifier, as ``tf.estimator.DNNClassifier``.

    Instead of ``feature_columns`` it takes the tf.Transform output: every transformed
    feature becomes an input (categorical ids one-hot or embedded, numbers as they are),
    and the classes are the label vocabulary, in its order.
    """

    def __init__(
        self,
        transform_output: str | tft.TFTransformOutput,
        label_key: str,
        hidden_units: Sequence[int] = (32, 16),
        *,
        model_dir: str | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
        optimizer: str = "adam",
        learning_rate: float = 0.01,
    ):
        tft_output = as_tft_output(transform_output)
        head = ClassificationHead(tft_output.vocabulary_by_name(label_key))
        inputs, x = build_inputs(transformed_features(tft_output, exclude=[label_key]))
        for i, units in enumerate(hidden_units):
            x = tf_keras.layers.Dense(units, activation=activation, name=f"hidden_{i}")(x)
            if dropout:
                x = tf_keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
        logits = tf_keras.layers.Dense(head.logits_dimension, name="logits")(x)
        super().__init__(
            tf_keras.Model(inputs, logits, name="dnn_classifier"),
            head,
            tft_output,
            label_key,
            model_dir=model_dir,
            optimizer=optimizer,
            learning_rate=learning_rate,
        )
