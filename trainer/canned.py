"""Canned models: the user names a type and hyperparameters, the inputs are derived.

Every canned model is one body (:func:`build_logits_model`: a linear part, a DNN part,
or both, summed) under one head (:class:`~tfbake.trainer.heads.ClassificationHead` or
:class:`~tfbake.trainer.heads.RegressionHead`), as the Estimator family was; the classes
below only choose which parts and which head.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow_transform as tft
import tf_keras

from tfbake.trainer.feature_inputs import (
    encode_dense,
    encode_sparse,
    make_inputs,
    select_features,
    transformed_features,
)
from tfbake.trainer.heads import ClassificationHead, Head, MultiHead, RegressionHead
from tfbake.trainer.label_normalization import label_statistics
from tfbake.trainer.model import Model, as_tft_output


def _dnn_hidden(
    x,
    hidden_units: Sequence[int],
    *,
    activation: str,
    dropout: float,
    batch_norm: bool,
    prefix: str = "",
):
    for i, units in enumerate(hidden_units):
        x = tf_keras.layers.Dense(units, name=f"{prefix}hidden_{i}")(x)
        if batch_norm:
            # Before the activation, as in the batch norm paper and Estimator's DNN.
            x = tf_keras.layers.BatchNormalization(name=f"{prefix}batch_norm_{i}")(x)
        x = tf_keras.layers.Activation(activation, name=f"{prefix}{activation}_{i}")(x)
        if dropout:
            x = tf_keras.layers.Dropout(dropout, name=f"{prefix}dropout_{i}")(x)
    return x


def _logits(x, head: Head, name: str, *, final: bool = True):
    """The last layer: one Dense of ``head.logits_dimension`` units, or, for a
    :class:`~tfbake.trainer.heads.MultiHead`, one per head in a dict. A multi-head model's
    final layers are named after the heads, so Keras' metrics read ``<head>_auc``;
    ``final=False`` (a part to be summed): ``<head>_<name>``."""
    if isinstance(head, MultiHead):
        return {
            key: tf_keras.layers.Dense(units, name=key if final else f"{key}_{name}")(x)
            for key, units in head.logits_dimension.items()
        }
    return tf_keras.layers.Dense(head.logits_dimension, name=name)(x)


def _sum_logits(parts: list):
    """Wide & deep: the parts' logits summed (per head for a multi-head model)."""
    if isinstance(parts[0], dict):
        return {key: tf_keras.layers.Add(name=key)([p[key] for p in parts]) for key in parts[0]}
    return tf_keras.layers.Add(name="logits")(parts)


def label_keys_of(label_key: str | Sequence[str]) -> list[str]:
    """One label key or several (a multi-head model's) as a list."""
    return [label_key] if isinstance(label_key, str) else list(label_key)


def build_logits_model(
    tft_output: tft.TFTransformOutput,
    label_key: str | Sequence[str],
    head: Head,
    *,
    linear: bool,
    dnn: bool,
    linear_features: Sequence[str] | None = None,
    dnn_features: Sequence[str] | None = None,
    hidden_units: Sequence[int] = (),
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    exclude: Sequence[str] = (),
    name: str = "canned",
) -> tf_keras.Model:
    """A tf_keras model from transformed features to ``head.logits_dimension`` logits.

    With ``linear``, ``linear_features`` go through the linear encoding (one-hot ids,
    numbers) into one dense layer; with ``dnn``, ``dnn_features`` go through the DNN
    encoding (one-hot or embedded ids, numbers) into ``hidden_units``; with both, the
    logits are their sum (wide & deep). A feature list left None is every transformed
    feature but the label(s) and ``exclude`` (e.g. other labels, example weights).
    For a :class:`~tfbake.trainer.heads.MultiHead` (``label_key``: its label keys) the body is
    shared and the model outputs a dict, head name -> logits.
    """
    if not (linear or dnn):
        raise ValueError("a canned model needs a linear part, a DNN part, or both")
    available = transformed_features(tft_output, exclude=[*label_keys_of(label_key), *exclude])

    def pick(wanted: bool, names: Sequence[str] | None, what: str):
        if not wanted:
            return []
        picked = select_features(available, names, what)
        if not picked:
            raise ValueError(f"{what}: no transformed feature to use")
        return picked

    linear_part = pick(linear, linear_features, "linear_features")
    dnn_part = pick(dnn, dnn_features, "dnn_features")
    used = {f.name for f in linear_part + dnn_part}
    inputs = make_inputs([f for f in available if f.name in used])
    parts = []
    if dnn_part:
        # Wide & deep: "dnn_logits" + "linear_logits" -> "logits".
        prefix = "dnn_" if linear_part else ""
        hidden = _dnn_hidden(
            encode_dense(inputs, dnn_part),
            hidden_units,
            activation=activation,
            dropout=dropout,
            batch_norm=batch_norm,
            prefix=prefix,
        )
        parts.append(_logits(hidden, head, f"{prefix}logits", final=not linear_part))
    if linear_part:
        x = encode_sparse(inputs, linear_part)
        parts.append(_logits(x, head, "linear_logits", final=not dnn_part))
    logits = parts[0] if len(parts) == 1 else _sum_logits(parts)
    return tf_keras.Model(inputs, logits, name=name)


def _regression_head(
    tft_output: tft.TFTransformOutput,
    label_key: str,
    label_normalization: tuple[float, float] | None,
) -> RegressionHead:
    if label_normalization is None:
        return RegressionHead(*label_statistics(tft_output, label_key))
    mean, std = label_normalization
    return RegressionHead(mean, std)


class _CannedModel(Model):
    """The shared constructor of the canned models: body, head, compile.

    Keyword arguments (each model type refuses those it has no use for):
      hidden_units, activation, dropout, batch_norm: the DNN part.
      linear_features / dnn_features: the transformed features of each part of a
        wide & deep model (default: all).
      label_normalization: regressors; see :class:`LinearRegressor`.
      exclude: transformed features that are not inputs (other labels, weights).
      head: a head of your own (e.g. :class:`~tfbake.trainer.MultiLabelHead`, or a
        :class:`~tfbake.trainer.MultiHead` with ``label_key`` its label keys) instead of the
        one the model type derives from the label.
      model_dir, optimizer, learning_rate, class_weights: as :class:`tfbake.trainer.Model`.
    """

    _name: str
    _classifier: bool
    _linear: bool
    _dnn: bool

    @classmethod
    def _check_arguments(cls, **given) -> None:
        """Refuses an argument that this model type would silently ignore."""
        unused = []
        if not cls._dnn:
            unused += [k for k in ("hidden_units", "dnn_features") if given[k] is not None]
            unused += [k for k in ("dropout", "batch_norm") if given[k]]
        if not cls._linear and given["linear_features"] is not None:
            unused.append("linear_features")
        if cls._classifier and given["label_normalization"] is not None:
            unused.append("label_normalization")
        if unused:
            raise TypeError(f"{cls.__name__} does not take {', '.join(unused)}")

    def __init__(
        self,
        transform_output: str | tft.TFTransformOutput,
        label_key: str | Sequence[str],
        *,
        hidden_units: Sequence[int] | None = None,
        linear_features: Sequence[str] | None = None,
        dnn_features: Sequence[str] | None = None,
        label_normalization: tuple[float, float] | None = None,
        model_dir: str | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        exclude: Sequence[str] = (),
        optimizer: str = "adam",
        learning_rate: float = 0.01,
        head: Head | None = None,
        class_weights: Sequence[float] | None = None,
    ):
        self._check_arguments(
            hidden_units=hidden_units,
            dnn_features=dnn_features,
            linear_features=linear_features,
            label_normalization=label_normalization,
            dropout=dropout,
            batch_norm=batch_norm,
        )
        tft_output = as_tft_output(transform_output)
        if head is None and self._classifier:
            head = ClassificationHead(tft_output.vocabulary_by_name(label_key))
        elif head is None:
            head = _regression_head(tft_output, label_key, label_normalization)
        keras_model = build_logits_model(
            tft_output,
            label_key,
            head,
            linear=self._linear,
            dnn=self._dnn,
            linear_features=linear_features,
            dnn_features=dnn_features,
            hidden_units=hidden_units or (),
            activation=activation,
            dropout=dropout,
            batch_norm=batch_norm,
            exclude=exclude,
            name=self._name,
        )
        super().__init__(
            keras_model,
            head,
            tft_output,
            label_key,
            model_dir=model_dir,
            optimizer=optimizer,
            learning_rate=learning_rate,
            class_weights=class_weights,
        )


class _DeepModel(_CannedModel):
    """A canned model with hidden layers: ``hidden_units`` may be given positionally,
    as in ``tf.estimator.DNNClassifier(hidden_units, ...)``."""

    def __init__(
        self,
        transform_output: str | tft.TFTransformOutput,
        label_key: str | Sequence[str],
        hidden_units: Sequence[int] = (32, 16),
        **kwargs,
    ):
        super().__init__(transform_output, label_key, hidden_units=hidden_units, **kwargs)


class DNNClassifier(_DeepModel):
    """A feed-forward classifier, as ``tf.estimator.DNNClassifier``.

    Instead of ``feature_columns`` it takes the tf.Transform output: every transformed
    feature becomes an input (categorical ids one-hot or embedded, numbers as they are),
    and the classes are the label vocabulary, in its order.
    """

    _name, _classifier, _linear, _dnn = "dnn_classifier", True, False, True


class DNNRegressor(_DeepModel):
    """A feed-forward regressor, as ``tf.estimator.DNNRegressor``: the inputs of
    :class:`DNNClassifier`, one float output (``label_normalization`` as in
    :class:`LinearRegressor`)."""

    _name, _classifier, _linear, _dnn = "dnn_regressor", False, False, True


class LinearClassifier(_CannedModel):
    """A linear (logistic / softmax regression) classifier, as
    ``tf.estimator.LinearClassifier``: one weight per categorical id and per number."""

    _name, _classifier, _linear, _dnn = "linear_classifier", True, True, False


class LinearRegressor(_CannedModel):
    """A linear regressor, as ``tf.estimator.LinearRegressor``.

    Label normalization is the ``preprocessing_fn``'s (e.g. ``tft.scale_to_z_score``
    on the label); by default (``label_normalization=None``) the regressor reads the
    map back from the transform graph (:func:`tfbake.trainer.label_statistics`; identity when
    the label passes through), learns the normalized label, and the export answers in
    the label's own units. ``label_normalization=(mean, std)`` gives the map instead
    (``user label = transformed label * std + mean``).
    """

    _name, _classifier, _linear, _dnn = "linear_regressor", False, True, False


class DNNLinearCombinedClassifier(_DeepModel):
    """Wide & deep classifier, as ``tf.estimator.DNNLinearCombinedClassifier``: the sum
    of a linear part over ``linear_features`` and a DNN over ``dnn_features`` (each
    default: every transformed feature)."""

    _name, _classifier, _linear, _dnn = "dnn_linear_combined_classifier", True, True, True


class DNNLinearCombinedRegressor(_DeepModel):
    """Wide & deep regressor, as ``tf.estimator.DNNLinearCombinedRegressor``
    (see :class:`DNNLinearCombinedClassifier` and :class:`LinearRegressor`)."""

    _name, _classifier, _linear, _dnn = "dnn_linear_combined_regressor", False, True, True
