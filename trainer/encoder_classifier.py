"""The shared body of the text and image classifiers: an encoder per feature of one
kind, the other transformed features joined after it, dense layers, a head.

The inputs are derived from the transformed metadata as for every canned model
(:mod:`tfbake.trainer.feature_inputs`); a subclass says which kind it encodes
(``_kind``) and how (:meth:`EncoderClassifier._encode`).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from tfbake.trainer.canned import _dnn_hidden, _logits, label_keys_of
from tfbake.trainer.feature_inputs import (
    TransformedFeature,
    encode_dense,
    make_inputs,
    select_features,
    transformed_features,
)
from tfbake.trainer.heads import ClassificationHead, Head
from tfbake.trainer.model import Model, as_tft_output


class EncoderClassifier(Model):
    """A classifier whose ``_kind`` features (id sequences, images) each go through an
    encoder; every other selected feature (numbers, categories...) takes the DNN
    encoding and joins the encoded ones; then ``dropout``, ``hidden_units`` dense
    layers (each followed by ``dropout``) and the head's logits.

    Arguments shared by the subclasses:
      features: the transformed features to use (default: all but the label and
        ``exclude``); at least one must be of the encoded kind.
      hidden_units, activation, dropout: the dense layers after the encoders.
      head: default a :class:`~tfbake.trainer.heads.ClassificationHead` over the label
        vocabulary (named after ``label_key``); any head may be given instead (a
        multi-label head, or a multi-head one with ``label_key`` its label keys).
      exclude: transformed features that are not inputs (other labels, weights).
      model_dir, optimizer, learning_rate, class_weights: as :class:`tfbake.trainer.Model`.
    """

    _kind: str
    _name: str

    def __init__(
        self,
        transform_output: str | tft.TFTransformOutput,
        label_key: str | Sequence[str],
        *,
        features: Sequence[str] | None = None,
        hidden_units: Sequence[int] = (),
        activation: str = "relu",
        dropout: float = 0.0,
        head: Head | None = None,
        exclude: Sequence[str] = (),
        model_dir: str | None = None,
        optimizer: str = "adam",
        learning_rate: float = 0.001,
        class_weights: Sequence[float] | None = None,
    ):
        tft_output = as_tft_output(transform_output)
        head = head or ClassificationHead(tft_output.vocabulary_by_name(label_key))
        available = transformed_features(
            tft_output, exclude=[*label_keys_of(label_key), *exclude]
        )
        picked = select_features(available, features, "features")
        encoded = [f for f in picked if f.kind == self._kind]
        if not encoded:
            kinds = ", ".join(f"{f.name} ({f.kind})" for f in picked) or "none"
            raise ValueError(
                f"{type(self).__name__} needs a transformed feature of kind {self._kind}; "
                f"the transformed features are: {kinds}"
            )
        others = [f for f in picked if f.kind != self._kind]
        inputs = make_inputs(picked)
        parts = [self._encode(inputs[f.name], f) for f in encoded]
        if others:
            parts.append(encode_dense(inputs, others, name="other_features"))
        x = parts[0] if len(parts) == 1 else tf_keras.layers.Concatenate(name="joined")(parts)
        if dropout:
            x = tf_keras.layers.Dropout(dropout, name="encoded_dropout")(x)
        x = _dnn_hidden(x, hidden_units, activation=activation, dropout=dropout, batch_norm=False)
        logits = _logits(x, head, "logits")
        super().__init__(
            tf_keras.Model(inputs, logits, name=self._name),
            head,
            tft_output,
            label_key,
            model_dir=model_dir,
            optimizer=optimizer,
            learning_rate=learning_rate,
            class_weights=class_weights,
        )

    def _encode(self, x: tf.Tensor, feature: TransformedFeature) -> tf.Tensor:
        """One feature of the encoded kind -> [N, D]."""
        raise NotImplementedError
