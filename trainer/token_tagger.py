"""A token model for sequence tagging: token embedding -> a bi-LSTM or a small
transformer encoder -> a tag per token (one output layer per head).

The tokens come from the ``preprocessing_fn`` (an id sequence of the transformed-feature
contract: int64 [L], 0 = padding, its vocabulary size in the schema), so the export
takes the raw text (or token list) and tokenizes it in the graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from tfbake.trainer.canned import _logits, label_keys_of
from tfbake.trainer.feature_inputs import (
    ID_SEQUENCE,
    embed_sequence,
    make_inputs,
    transformed_features,
)
from tfbake.trainer.heads import Head, MultiHead
from tfbake.trainer.model import Model, as_tft_output
from tfbake.trainer.sequence_tagging import SequenceTaggingHead

ENCODERS = ("bilstm", "transformer")


def _token_feature(head: Head) -> str:
    heads = head.heads.values() if isinstance(head, MultiHead) else [head]
    if not all(isinstance(h, SequenceTaggingHead) for h in heads):
        raise ValueError(f"a token tagger needs sequence-tagging heads, got {head}")
    names = sorted({h.token_feature for h in heads})
    if len(names) != 1:
        raise ValueError(f"the heads of a token tagger tag one token feature, got {names}")
    return names[0]


def _transformer_block(x, real: tf.Tensor, units: int, num_heads: int, dropout: float, i: int):
    """Self-attention over the real tokens, then a feed-forward layer, each with a
    residual connection and layer normalization (the encoder block of the paper)."""
    width = x.shape[-1]
    attention = tf_keras.layers.MultiHeadAttention(
        num_heads, max(1, width // num_heads), dropout=dropout, name=f"attention_{i}"
    )(x, x, attention_mask=real[:, tf.newaxis, :])
    x = tf_keras.layers.LayerNormalization(name=f"attention_norm_{i}")(x + attention)
    hidden = tf_keras.layers.Dense(units, activation="relu", name=f"feed_forward_{i}")(x)
    hidden = tf_keras.layers.Dense(width, name=f"feed_forward_out_{i}")(hidden)
    return tf_keras.layers.LayerNormalization(name=f"feed_forward_norm_{i}")(x + hidden)


class TokenTagger(Model):
    """Embedding, an encoder over the tokens, then each head's tag logits per token.

    Args:
      transform_output, label_key: as every canned model (several label keys with a
        :class:`~tfbake.trainer.MultiHead` of tagging heads).
      head: a :class:`~tfbake.trainer.sequence_tagging.SequenceTaggingHead` (or a multi-head
        of them over the same token feature); its ``token_feature`` is the input.
      embedding_dim: each token's embedding (padding id 0 is masked).
      encoder: ``bilstm`` (``units`` per direction) or ``transformer`` (``num_layers``
        blocks of ``num_heads`` attention heads, learned positions, ``units`` wide
        feed-forward layers).
      dropout: after the embedding and the encoder.
      model_dir, optimizer, learning_rate: as :class:`tfbake.trainer.Model`.
    """

    def __init__(
        self,
        transform_output: str | tft.TFTransformOutput,
        label_key: str | Sequence[str],
        *,
        head: Head,
        embedding_dim: int = 32,
        encoder: str = "bilstm",
        units: int = 32,
        num_heads: int = 2,
        num_layers: int = 1,
        dropout: float = 0.0,
        model_dir: str | None = None,
        optimizer: str = "adam",
        learning_rate: float = 0.01,
    ):
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        tft_output = as_tft_output(transform_output)
        name = _token_feature(head)
        available = {
            f.name: f for f in transformed_features(tft_output, exclude=label_keys_of(label_key))
        }
        feature = available.get(name)
        if feature is None or feature.kind != ID_SEQUENCE:
            raise ValueError(
                f'the tags are aligned with transformed feature "{name}", which must be an id '
                f"sequence; it is {feature.kind if feature else 'not a transformed feature'}"
            )
        inputs = make_inputs([feature])
        ids = inputs[name]
        x = embed_sequence(ids, feature, embedding_dim)
        if dropout:
            x = tf_keras.layers.Dropout(dropout, name="embedding_dropout")(x)
        if encoder == "bilstm":
            x = tf_keras.layers.Bidirectional(
                tf_keras.layers.LSTM(units, return_sequences=True), name=f"{name}_bilstm"
            )(x)
        else:
            length = feature.shape[0]
            positions = tf_keras.layers.Embedding(length, embedding_dim, name="positions")(
                tf.range(length)[tf.newaxis]
            )
            x = x + positions
            real = tf.not_equal(ids, 0)
            for i in range(num_layers):
                x = _transformer_block(x, real, units, num_heads, dropout, i)
        if dropout:
            x = tf_keras.layers.Dropout(dropout, name="encoded_dropout")(x)
        super().__init__(
            tf_keras.Model(inputs, _logits(x, head, "logits"), name="token_tagger"),
            head,
            tft_output,
            label_key,
            model_dir=model_dir,
            optimizer=optimizer,
            learning_rate=learning_rate,
        )
