"""Heads: the loss, the metrics and the exported outputs of a model's logits.

Output keys and dtypes are those of the canned estimators (tf.estimator's
``canned/prediction_keys.py`` and ``head/*.py``; :mod:`tfbake.serving_input.signatures`), so
clients written for Estimator exports work as is.
Each head also says which tf.Example-taking signatures the export carries, with their
method names (:meth:`Head.signatures`): the export writes what the head declares and
adds only the head-independent ``predict_raw`` and ``transform_features``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from tfbake.serving_input import signatures as sig
from tfbake.serving_input.export_layout import EXAMPLES_KEY

Outputs = dict[str, tf.Tensor]

# The multi-label head's thresholded answer (not an Estimator PredictionKey).
PREDICTED = "predicted"


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

    def predictions_for(
        self,
        logits: tf.Tensor,
        features: Mapping[str, tf.Tensor],
        raw_features: Mapping | None = None,
    ) -> Outputs:
        """The predictions of examples given their transformed ``features`` (and, when
        served, their ``raw_features``): a head whose answer depends on the example
        itself (a tagging head: how many tokens it has) reads them; most heads need
        only the logits (:meth:`predictions`)."""
        return self.predictions(logits)

    def loss_weights(self):
        """Keras ``compile``'s ``loss_weights`` (None: one loss)."""
        return None

    @property
    def default_signature(self) -> str:
        """The key that ``serving_default`` aliases."""
        return self.signatures()[0].key


def _class_names(label_vocabulary: Sequence[str | bytes]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in label_vocabulary]


def _all_classes(names: list[str], batch: tf.Tensor) -> Outputs:
    """Every class id and name, once per example: [N, K] int32 and string."""
    all_class_ids = tf.tile(tf.range(len(names), dtype=tf.int32)[tf.newaxis], [batch, 1])
    return {
        sig.ALL_CLASS_IDS: all_class_ids,
        sig.ALL_CLASSES: tf.gather(tf.constant(names), all_class_ids),
    }


def _classification_signature(outputs: Callable[[Outputs], Outputs]) -> SignatureSpec:
    return SignatureSpec(sig.CLASSIFICATION, sig.CLASSIFY_METHOD, sig.CLASSIFY_INPUTS, outputs)


def _predict_signature() -> SignatureSpec:
    # Estimator's parsing receiver fed the predict signature under "examples".
    return SignatureSpec(sig.PREDICT, sig.PREDICT_METHOD, EXAMPLES_KEY, _all_predictions)


class ClassificationHead(Head):
    """Single-label classification over a label vocabulary (binary when it has 2 classes).

    A binary head has one logit (sigmoid), as Estimator's binary head; a multi-class
    head has one logit per class (softmax).
    """

    def __init__(self, label_vocabulary: Sequence[str | bytes]):
        self.label_vocabulary = _class_names(label_vocabulary)
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
        class_ids = tf.argmax(probabilities, axis=1, output_type=tf.int64)[:, tf.newaxis]
        outputs = {
            sig.LOGITS: logits,
            sig.PROBABILITIES: probabilities,
            sig.CLASS_IDS: class_ids,
            sig.CLASSES: tf.gather(tf.constant(self.label_vocabulary), class_ids),
            **_all_classes(self.label_vocabulary, tf.shape(logits)[0]),
        }
        if self.binary:
            outputs[sig.LOGISTIC] = tf.sigmoid(logits)
        return outputs

    def regression_outputs(self, predictions: Outputs) -> Outputs | None:
        """Binary heads also export ``regression`` (the logistic), as Estimator did."""
        return {sig.OUTPUTS: predictions[sig.LOGISTIC]} if self.binary else None

    def signatures(self) -> list[SignatureSpec]:
        """``classification`` (the default), ``regression`` when binary, ``predict``."""
        specs = [_classification_signature(classification_outputs)]
        if self.binary:
            specs.append(
                SignatureSpec(
                    sig.REGRESSION, sig.REGRESS_METHOD, sig.REGRESS_INPUTS, self.regression_outputs
                )
            )
        return [*specs, _predict_signature()]

    def label_for_loss(self, label: tf.Tensor) -> tf.Tensor:
        # The label vocabulary is the training data's: an eval row with another class has
        # id -1, which would fail deep inside the loss. Say what it is instead.
        check = tf.debugging.Assert(
            tf.reduce_all((label >= 0) & (label < self.n_classes)),
            [
                f"a label value is not one of the classes of the training data "
                f"({', '.join(self.label_vocabulary)}); the label vocabulary is computed over the "
                "training split, so a class seen only in eval data has no id. Label ids:",
                label,
            ],
            summarize=20,
        )
        with tf.control_dependencies([check]):
            return tf.cast(label[:, tf.newaxis], tf.float32) if self.binary else tf.identity(label)


def classification_outputs(predictions: Outputs) -> Outputs:
    """The ``classification`` signature of a classifier: every class name with its score."""
    return {sig.CLASSES: predictions[sig.ALL_CLASSES], sig.SCORES: predictions[sig.PROBABILITIES]}


class MultiLabelHead(Head):
    """Multi-label classification, as Estimator's ``MultiLabelHead``: each example has
    zero or more labels from ``label_vocabulary``, one independent sigmoid per label.

    The label is a float [N, K] multi-hot vector in the vocabulary's order. The
    ``classification`` signature answers every label name with its own probability
    (``classes`` / ``scores`` [N, K]); ``predict`` has ``logits``, ``probabilities``,
    ``all_class_ids`` and ``all_classes`` as Estimator's, plus ``predicted``: [N, K] 0/1,
    each probability against ``threshold`` (the threshold of the accuracy metric too).
    """

    def __init__(self, label_vocabulary: Sequence[str | bytes], threshold: float = 0.5):
        self.label_vocabulary = _class_names(label_vocabulary)
        if not self.label_vocabulary:
            raise ValueError("a multi-label head needs at least 1 class")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold)

    def __repr__(self) -> str:
        return f"MultiLabelHead(classes={self.label_vocabulary}, threshold={self.threshold:g})"

    @property
    def n_classes(self) -> int:
        return len(self.label_vocabulary)

    @property
    def logits_dimension(self) -> int:
        return self.n_classes

    def loss(self) -> tf_keras.losses.Loss:
        # Mean over the labels of each example, as Estimator's sigmoid cross entropy.
        return tf_keras.losses.BinaryCrossentropy(from_logits=True)

    def metrics(self) -> list:
        logit_threshold = float(np.log(self.threshold / (1 - self.threshold)))
        return [
            tf_keras.metrics.BinaryAccuracy(name="accuracy", threshold=logit_threshold),
            tf_keras.metrics.AUC(
                name="auc", from_logits=True, multi_label=True, num_labels=self.n_classes
            ),
        ]

    def predictions(self, logits: tf.Tensor) -> Outputs:
        probabilities = tf.sigmoid(logits)
        return {
            sig.LOGITS: logits,
            sig.PROBABILITIES: probabilities,
            PREDICTED: tf.cast(probabilities >= self.threshold, tf.int64),
            **_all_classes(self.label_vocabulary, tf.shape(logits)[0]),
        }

    def signatures(self) -> list[SignatureSpec]:
        """``classification`` (the default) and ``predict``, as Estimator's."""
        return [_classification_signature(classification_outputs), _predict_signature()]

    def label_for_loss(self, label: tf.Tensor) -> tf.Tensor:
        return tf.cast(label, tf.float32)


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
    normalized units (see :func:`tfbake.trainer.label_statistics` for reading them off the
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


def head_outputs(name: str, predictions: Outputs) -> Outputs:
    """One head's part of a multi-head model's merged predictions."""
    prefix = f"{name}/"
    return {k[len(prefix) :]: v for k, v in predictions.items() if k.startswith(prefix)}


class MultiHead(Head):
    """Several heads over one body, as Estimator's ``MultiHead``: one logits output per
    head (a dict keyed by head name), the loss the weighted sum of the heads' losses.

    Signatures, as Estimator's: ``serving_default`` = the first head's default; per head
    ``<head>`` (its default) and ``<head>/<signature>`` for each of its signatures; a
    merged ``predict`` whose outputs are ``<head>/<key>``.

    Args:
      heads: head name -> head, in order (the first one is the default).
      label_keys: head name -> the transformed label it learns (default: the name).
      loss_weights: head name -> weight of its loss (default: 1 each).
    """

    def __init__(
        self,
        heads: Mapping[str, Head],
        *,
        label_keys: Mapping[str, str] | None = None,
        loss_weights: Mapping[str, float] | None = None,
    ):
        if not heads:
            raise ValueError("a multi-head model needs at least one head")
        for name in heads:
            if not name or "/" in name or isinstance(heads[name], MultiHead):
                raise ValueError(f"head {name!r}: a head name is a non-empty name without '/'")
        self.heads = dict(heads)
        self.label_keys = {name: (label_keys or {}).get(name, name) for name in self.heads}
        self._loss_weights = {name: float((loss_weights or {}).get(name, 1.0)) for name in heads}
        unknown = sorted(set(label_keys or {}) - set(heads)) + sorted(
            set(loss_weights or {}) - set(heads)
        )
        if unknown:
            raise ValueError(f"{unknown} are not head names (heads: {list(heads)})")

    def __repr__(self) -> str:
        return f"MultiHead({self.heads!r})"

    @property
    def logits_dimension(self) -> dict[str, int]:  # type: ignore[override]
        """Head name -> its logits' width."""
        return {name: head.logits_dimension for name, head in self.heads.items()}

    def loss(self) -> dict:  # type: ignore[override]
        return {name: head.loss() for name, head in self.heads.items()}

    def metrics(self) -> dict:  # type: ignore[override]
        return {name: head.metrics() for name, head in self.heads.items()}

    def loss_weights(self) -> dict[str, float]:
        return dict(self._loss_weights)

    def predictions(self, logits: Mapping[str, tf.Tensor]) -> Outputs:  # type: ignore[override]
        """Every head's predictions, keyed ``<head>/<key>``."""
        return {
            f"{name}/{key}": value
            for name, head in self.heads.items()
            for key, value in head.predictions(logits[name]).items()
        }

    def predictions_for(self, logits, features, raw_features=None) -> Outputs:
        """Every head's :meth:`Head.predictions_for`, keyed ``<head>/<key>``."""
        return {
            f"{name}/{key}": value
            for name, head in self.heads.items()
            for key, value in head.predictions_for(logits[name], features, raw_features).items()
        }

    def signatures(self) -> list[SignatureSpec]:
        specs = []
        for name, head in self.heads.items():
            own = head.signatures()

            def of_head(spec: SignatureSpec, name: str = name) -> Callable[[Outputs], Outputs]:
                return lambda predictions: spec.outputs(head_outputs(name, predictions))

            first = own[0]
            specs.append(SignatureSpec(name, first.method_name, first.input_key, of_head(first)))
            specs += [
                SignatureSpec(f"{name}/{s.key}", s.method_name, s.input_key, of_head(s))
                for s in own
            ]
        # The first spec (the first head's default) is what serving_default aliases.
        return [*specs, _predict_signature()]

    def label_for_loss(self, label: Mapping[str, tf.Tensor]) -> dict:  # type: ignore[override]
        """Labels keyed by label key -> Keras targets keyed by head name."""
        return {
            name: head.label_for_loss(label[self.label_keys[name]])
            for name, head in self.heads.items()
        }
