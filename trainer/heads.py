"""Heads: the loss, the metrics and the exported outputs of a model's logits.

Output keys and dtypes are those of the canned estimators (see shared/STACK.md and
:mod:`serving_input.signatures`), so clients written for Estimator exports work as is.
Each head also says which tf.Example-taking signatures the export carries, with their
method names (:meth:`Head.signatures`): the export writes what the head declares and
adds only the head-independent ``predict_raw`` and ``transform_features``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence

import tensorflow as tf
import tf_keras

from serving_input import signatures as sig

Outputs = dict[str, tf.Tensor]


@dataclasses.dataclass(frozen=True)
class SignatureSpec:
    """One signature over serialized tf.Examples that a head exports.

    Attributes:
      key: the signature key (``classification``, ``regression``, ``predict``).
      method_name: its method name (TF Serving's Classify/Regress and tfx_bsl pick by it).
      input_key: the name of its one input, a [N] string tensor of serialized examples
        (``inputs`` for classify/regress, as TF Serving requires; ``examples`` for predict).
      outputs: the head's ``predictions`` dict -> the signature's outputs.
    """

    key: str
    method_name: str
    input_key: str
    outputs: Callable[[Outputs], Outputs]


def _all_predictions(predictions: Outputs) -> Outputs:
    return predictions


class Head(abc.ABC):
    """What a model's logits mean: loss, metrics, predictions and exported signatures."""

    @property
    @abc.abstractmethod
    def logits_dimension(self) -> int:
        """How many logits the model's last layer has."""

    @abc.abstractmethod
    def loss(self) -> tf_keras.losses.Loss:
        """The training loss, over ``(label_for_loss(label), logits)``."""

    @abc.abstractmethod
    def metrics(self) -> list:
        """Keras metrics, over the same pair as the loss."""

    @abc.abstractmethod
    def predictions(self, logits: tf.Tensor) -> Outputs:
        """The ``predict`` signature's outputs (Estimator's PredictionKeys)."""

    @abc.abstractmethod
    def signatures(self) -> list[SignatureSpec]:
        """The tf.Example-taking signatures of the export; the first is ``serving_default``."""

    def label_for_loss(self, label: tf.Tensor) -> tf.Tensor:
        """The transformed [N] label as the loss and metrics expect it."""
        return label

    @property
    def default_signature(self) -> str:
        """The key that ``serving_default`` aliases."""
        return self.signatures()[0].key


def _predict_signature() -> SignatureSpec:
    # Estimator's parsing receiver fed the predict signature under "examples".
    return SignatureSpec(sig.PREDICT, sig.PREDICT_METHOD, "examples", _all_predictions)


class ClassificationHead(Head):
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

    def predictions(self, logits: tf.Tensor) -> Outputs:
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

    def classification_outputs(self, predictions: Outputs) -> Outputs:
        """The ``classification`` signature: every class name with its score."""
        return {
            sig.CLASSES: predictions[sig.ALL_CLASSES],
            sig.SCORES: predictions[sig.PROBABILITIES],
        }

    def regression_outputs(self, predictions: Outputs) -> Outputs | None:
        """Binary heads also export ``regression`` (the logistic), as Estimator did."""
        return {sig.OUTPUTS: predictions[sig.LOGISTIC]} if self.binary else None

    def signatures(self) -> list[SignatureSpec]:
        """``classification`` (the default), ``regression`` when binary, ``predict``."""
        specs = [
            SignatureSpec(
                sig.CLASSIFICATION,
                sig.CLASSIFY_METHOD,
                sig.CLASSIFY_INPUTS,
                self.classification_outputs,
            )
        ]
        if self.binary:
            specs.append(
                SignatureSpec(
                    sig.REGRESSION, sig.REGRESS_METHOD, sig.REGRESS_INPUTS, self.regression_outputs
                )
            )
        return [*specs, _predict_signature()]

    def label_for_loss(self, label: tf.Tensor) -> tf.Tensor:
        return tf.cast(label[:, tf.newaxis], tf.float32) if self.binary else label


def _user_units_metric(base: type, name: str, mean: float, std: float) -> tf_keras.metrics.Metric:
    """A Keras metric that sees labels and predictions back in the user's units.

    The loss works on the normalized label, but an MAE of 0.1 "standard deviations" is
    not what a user reads: the metrics undo the normalization of both sides first.
    """

    class InUserUnits(base):
        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(
                tf.cast(y_true, tf.float32) * std + mean, y_pred * std + mean, sample_weight
            )

    InUserUnits.__name__ = base.__name__
    return InUserUnits(name=name)


class RegressionHead(Head):
    """Regression of one float label with mean squared error, as Estimator's
    ``RegressionHead`` (``label_dimension=1``).

    ``label_mean`` / ``label_std`` say how the label the model learns (the transformed
    one) relates to the user's units: ``user label = label * std + mean``. A
    ``preprocessing_fn`` that normalizes the label (``tft.scale_to_z_score``, analyzers
    over the training data) makes training better conditioned; this head maps the
    predictions (hence every exported output) and the metrics back inside the graph,
    so the export and ``metrics.json`` speak the user's units. The loss stays in the
    normalized units (see :func:`trainer.label_statistics` for reading them off the
    transform graph).
    """

    def __init__(self, label_mean: float = 0.0, label_std: float = 1.0):
        if not label_std > 0:
            raise ValueError(f"label_std must be > 0, got {label_std}")
        self.label_mean = float(label_mean)
        self.label_std = float(label_std)

    def __repr__(self) -> str:
        if self.normalized:
            return f"RegressionHead(label_mean={self.label_mean:g}, label_std={self.label_std:g})"
        return "RegressionHead()"

    @property
    def normalized(self) -> bool:
        return (self.label_mean, self.label_std) != (0.0, 1.0)

    @property
    def logits_dimension(self) -> int:
        return 1

    def loss(self) -> tf_keras.losses.Loss:
        return tf_keras.losses.MeanSquaredError()

    def metrics(self) -> list:
        mean, std = self.label_mean, self.label_std
        return [
            _user_units_metric(tf_keras.metrics.MeanAbsoluteError, "mae", mean, std),
            _user_units_metric(tf_keras.metrics.RootMeanSquaredError, "rmse", mean, std),
        ]

    def predictions(self, logits: tf.Tensor) -> Outputs:
        """``predictions`` [N, 1] float, in the user's units."""
        return {sig.PREDICTIONS: logits * self.label_std + self.label_mean}

    def regression_outputs(self, predictions: Outputs) -> Outputs:
        """The ``regression`` signature: ``outputs`` [N, 1], as TF Serving's Regress reads."""
        return {sig.OUTPUTS: predictions[sig.PREDICTIONS]}

    def signatures(self) -> list[SignatureSpec]:
        """``regression`` (the default) and ``predict``."""
        return [
            SignatureSpec(
                sig.REGRESSION, sig.REGRESS_METHOD, sig.REGRESS_INPUTS, self.regression_outputs
            ),
            _predict_signature(),
        ]

    def label_for_loss(self, label: tf.Tensor) -> tf.Tensor:
        return tf.cast(label[:, tf.newaxis], tf.float32)
