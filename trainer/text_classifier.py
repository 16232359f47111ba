"""A text classifier over token ids, as the classic LSTM sentiment models served on
TF Serving: embedding -> pooling, 1-D CNN, LSTM or GRU -> dense layers -> head.

The tokens come from the ``preprocessing_fn`` (an id sequence of the transformed-feature
contract: int64 [L], 0 = padding, its vocabulary size in the schema), so the export
takes raw text and tokenizes it in the graph.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from tfbake.trainer.encoder_classifier import EncoderClassifier
from tfbake.trainer.feature_inputs import (
    ID_SEQUENCE,
    MaskedPooling1D,
    TransformedFeature,
    embed_sequence,
)

ENCODERS = ("pooling", "cnn", "lstm", "gru")


class TextClassifier(EncoderClassifier):
    """Embedding, then an encoder per id-sequence feature, then the dense layers.

    Args:
      transform_output, label_key: as every canned model.
      embedding_dim: the size of each token's embedding (padding id 0 is masked).
      encoder: ``pooling`` (the mean of the embeddings), ``cnn`` (``units`` filters of
        width ``kernel_size``, max over the tokens), ``lstm`` or ``gru`` (``units``;
        the last state).
      units, kernel_size: the encoder's size (``kernel_size``: ``cnn`` only).
      Other keyword arguments: :class:`~tfbake.trainer.encoder_classifier.EncoderClassifier`
      (``features``, ``hidden_units``, ``dropout``, ``head``, ``exclude``...). Number
      and categorical features beside the text join after the encoder.
    """

    _kind, _name = ID_SEQUENCE, "text_classifier"

    def __init__(
        self,
        transform_output: str | tft.TFTransformOutput,
        label_key: str,
        *,
        embedding_dim: int = 32,
        encoder: str = "cnn",
        units: int = 32,
        kernel_size: int = 3,
        **kwargs,
    ):
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        self.embedding_dim, self.encoder = embedding_dim, encoder
        self.units, self.kernel_size = units, kernel_size
        super().__init__(transform_output, label_key, **kwargs)

    def _encode(self, x: tf.Tensor, feature: TransformedFeature) -> tf.Tensor:
        name = feature.name
        embedded = embed_sequence(x, feature, self.embedding_dim)
        if self.encoder == "pooling":
            return MaskedPooling1D("mean", name=f"{name}_mean")(embedded)
        if self.encoder == "lstm":
            return tf_keras.layers.LSTM(self.units, name=f"{name}_lstm")(embedded)
        if self.encoder == "gru":
            return tf_keras.layers.GRU(self.units, name=f"{name}_gru")(embedded)
        # Conv1D drops the mask: the max is taken over the real tokens explicitly.
        conv = tf_keras.layers.Conv1D(
            self.units, self.kernel_size, padding="same", activation="relu", name=f"{name}_conv"
        )(embedded)
        real_tokens = tf.not_equal(x, 0)
        return MaskedPooling1D("max", name=f"{name}_max")(conv, mask=real_tokens)
