"""Text: one raw string -> tokens (lowercase, split, n-grams) -> vocabulary ids ->
an id sequence (for embedding / RNN / CNN models) or a bag-of-words / TF-IDF vector.

The served model takes the raw string: tokenizing happens in the graph, the same
ops in the Beam job and at serving time.
"""

from __future__ import annotations

import re
from typing import Literal

import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from transform.ops.categories import Vocabulary, vocabulary_id_lists, vocabulary_size
from transform.ops.lists import DENSE_OUTPUTS, id_list_output
from transform.ops.missing import densify


class Split(BaseModel):
    """Every match of ``regex`` separates tokens, as whitespace always does (e.g.
    ``"[^a-z0-9'\\s]+"``: punctuation and symbols separate words too)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regex: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        try:
            re.compile(regex)
        except re.error as err:
            raise ValueError(f"split.regex {regex!r} is not a regular expression: {err}") from None
        return regex


class Text(BaseModel):
    """The ``text`` op of a string feature, as declared in YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lowercase: bool = True
    split: Literal["whitespace"] | Split = "whitespace"
    ngrams: tuple[int, int] | None = None  # [min, max] n-gram widths, e.g. [1, 2]
    vocabulary: Vocabulary = Field(default_factory=Vocabulary)
    output: Literal["ids", "bag_of_words", "tfidf"] = "ids"
    max_tokens: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Text:
        if self.ngrams is not None and not 1 <= self.ngrams[0] <= self.ngrams[1]:
            raise ValueError(
                f"ngrams {list(self.ngrams)}: expected [min, max] with 1 <= min <= max"
            )
        if (self.output == "ids") != (self.max_tokens is not None):
            raise ValueError("max_tokens is required with output: ids, and only then")
        if self.output in DENSE_OUTPUTS and not self.vocabulary.has_size:
            raise ValueError(
                f"output: {self.output} needs vocabulary.top_k or vocabulary.file "
                "(the length of the vector)"
            )
        return self


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
