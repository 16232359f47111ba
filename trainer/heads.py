"""Heads: the loss, the metrics and the exported outputs of a model's logits.

Output keys and dtypes are those of the canned estimators (see shared/STACK.md and
:mod:`serving_input.signatures`), so clients written for Estimator exports work as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras

from serving_input import signatures as sig


class ClassificationHead:
    """Single-label classification over a label vocabulary (binary when it has 2 classes).

    A binary head has one logit (sigmoid), as Estimator's binary head; a multi-class
    head has one logit per class (softmax).
    """

    def __init__(self, label_vocabulary: Sequence[str | bytes]):
        self.label_vocabulary = [
            v.decode() if isinstance(v, bytes) else str(v) for v in label_vocabulary
        ]
        if len(self.label_vocabulary) < 2:
            raise ValueError(
                f"a classifier needs at least 2 classes, the label vocabulary has "
                f"{self.label_vocabulary}"
            )

    def __repr__(self) -> str:
        return f"ClassificationHead(classes={self.label_vocabulary})"

    @property
    def n_classes(self) -> int:
        return len(self.label_vocabulary)

    @property
    def binary(self) -> bool:
        return self.n_classes == 2

    @property
    def logits_dimension(self) -> int:
        return 1 if self.binary else self.n_classes

    def loss(self) -> tf_keras.losses.Loss:
        if self.binary:
            return tf_keras.losses.BinaryCrossentropy(from_logits=True)
        return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def metrics(self) -> list:
        if self.binary:
            return [
                tf_keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0),
                tf_keras.metrics.AUC(name="auc", from_logits=True),
            ]
        return [tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def probabilities(self, logits: tf.Tensor) -> tf.Tensor:
        """[N, K] class probabilities."""
        if self.binary:
            logistic = tf.sigmoid(logits)
            return tf.concat([1.0 - logistic, logistic], axis=1)
        return tf.nn.softmax(logits)

    def predictions(self, logits: tf.Tensor) -> dict[str, tf.Tensor]:
        """The ``predict`` signature's outputs (Estimator's PredictionKeys)."""
        probabilities = self.probabilities(logits)
        batch = tf.shape(logits)[0]
        names = tf.constant(self.label_vocabulary)
        class_ids = tf.argmax(probabilities, axis=1, output_type=tf.int64)[:, tf.newaxis]
        all_class_ids = tf.tile(tf.range(self.n_classes, dtype=tf.int32)[tf.newaxis], [batch, 1])
        outputs = {
            sig.LOGITS: logits,
            sig.PROBABILITIES: probabilities,
            sig.CLASS_IDS: class_ids,
            sig.CLASSES: tf.gather(names, class_ids),
            sig.ALL_CLASS_IDS: all_class_ids,
            sig.ALL_CLASSES: tf.gather(names, all_class_ids),
        }
        if self.binary:
            outputs[sig.LOGISTIC] = tf.sigmoid(logits)
        return outputs

    def classification_outputs(self, predictions: dict) -> dict[str, tf.Tensor]:
        """The ``classification`` signature: every class name with its score."""
        return {
            sig.CLASSES: predictions[sig.ALL_CLASSES],
            sig.SCORES: predictions[sig.PROBABILITIES],
        }

    def regression_outputs(self, predictions: dict) -> dict[str, tf.Tensor] | None:
        """Binary heads also export ``regression`` (the logistic), as Estimator did."""
        return {sig.OUTPUTS: predictions[sig.LOGISTIC]} if self.binary else None

    def label_for_loss(self, label: tf.Tensor) -> tf.Tensor:
        return tf.cast(label[:, tf.newaxis], tf.float32) if self.binary else label
