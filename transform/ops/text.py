"""Text: one raw string -> tokens (lowercase, split, n-grams) -> vocabulary ids ->
an id sequence (for embedding / RNN / CNN models) or a bag-of-words / TF-IDF vector.

The served model takes the raw string: tokenizing happens in the graph, the same
ops in the Beam job and at serving time.
"""

from __future__ import annotations

import tensorflow as tf

from tfbake.transform.ops.categories import vocabulary_id_lists, vocabulary_size
from tfbake.transform.ops.lists import id_list_output
from tfbake.transform.ops.missing import densify
from tfbake.transform.preprocessing_config import Split, Text


def tokens(text: tf.Tensor, op: Text) -> tf.RaggedTensor:
    """[batch] strings -> [batch, None] tokens (n-grams joined by a space)."""
    if op.lowercase:
        text = tf.strings.lower(text, encoding="utf-8")
    if isinstance(op.split, Split):
        text = tf.strings.regex_replace(text, op.split.regex, " ")
    words = tf.strings.split(text)  # at runs of whitespace; no empty tokens
    if op.ngrams is not None:
        low, high = op.ngrams
        words = tf.strings.ngrams(words, list(range(low, high + 1)), separator=" ")
    return words


def text_output(x, op: Text, name: str) -> tf.Tensor:
    """A raw string feature (a missing value of a nullable one is an empty text) ->
    the ``output`` kind over the vocabulary named ``name``."""
    if isinstance(x, tf.SparseTensor):
        x = densify(x, "")
    ids = vocabulary_id_lists(tokens(x, op), op.vocabulary, name)
    size = vocabulary_size(op.vocabulary, name) if op.output == "ids" else op.vocabulary.max_size
    return id_list_output(ids, op.output, name, size=size, length=op.max_tokens)
