"""Cleaning raw string values, in the graph: strip, case folding and a map of values.

Applied to the raw strings before any analyzer (the vocabulary is built from the
cleaned values) and, being part of the transform graph, to what serving clients send:
``" Retail"`` in a training file and ``"Retail"`` in a request get the same id, and an
eval label spelled ``"high."`` can be mapped to the training class ``"high"``.

Order: strip (surrounding whitespace), then case folding, then ``map`` (whole values,
compared after the two).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import tensorflow as tf
from pydantic import BaseModel, ConfigDict, model_validator

Case = Literal["lower", "upper"]


class Cleaning(BaseModel):
    """How string values are cleaned (``strip``, ``case``, ``map``); ``None`` leaves a
    key to the config's ``cleaning`` section (every string feature and string label)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strip: bool | None = None
    case: Case | None = None
    map: dict[str, str] | None = None

    @model_validator(mode="after")
    def _map_keys_can_match(self) -> Cleaning:
        for key in self.map or {}:
            if self.strip and key != key.strip():
                raise ValueError(f"map key {key!r} never matches: values are stripped first")
            folded = {"lower": key.lower(), "upper": key.upper()}.get(self.case or "", key)
            if folded != key:
                raise ValueError(
                    f"map key {key!r} never matches: values are {self.case}-cased first"
                )
        return self

    def over(self, defaults: Cleaning | None) -> Cleaning:
        """These keys, the ``defaults`` where unset (validated again: a map key must
        still be able to match)."""
        if defaults is None:
            return self
        return Cleaning(
            strip=defaults.strip if self.strip is None else self.strip,
            case=defaults.case if self.case is None else self.case,
            map=self.map,
        )

    @classmethod
    def of(cls, entry) -> Cleaning:
        """The ``strip``/``case``/``map`` keys of a config entry (a feature's
        preprocessing or a label), as declared: checked once merged (:meth:`over`)."""
        return cls.model_construct(strip=entry.strip, case=entry.case, map=entry.map)

    @property
    def active(self) -> bool:
        """Whether this changes any value."""
        return bool(self.strip or self.case or self.map)


def _clean_values(values: tf.Tensor, cleaning: Cleaning) -> tf.Tensor:
    if cleaning.strip:
        values = tf.strings.strip(values)
    if cleaning.case == "lower":
        values = tf.strings.lower(values, encoding="utf-8")
    elif cleaning.case == "upper":
        values = tf.strings.upper(values, encoding="utf-8")
    if cleaning.map:
        values = map_values(values, cleaning.map)
    return values


def map_values(values: tf.Tensor, mapping: Mapping[str, str]) -> tf.Tensor:
    """Each value found among ``mapping``'s keys replaced by its value, others kept."""
    keys = tf.constant(list(mapping))
    replacements = tf.constant(list(mapping.values()))
    matches = tf.equal(values[..., tf.newaxis], keys)
    replaced = tf.gather(replacements, tf.argmax(tf.cast(matches, tf.int32), axis=-1))
    return tf.where(tf.reduce_any(matches, axis=-1), replaced, values)


def clean_strings(x, cleaning: Cleaning | None):
    """``x`` (a string Tensor, SparseTensor or RaggedTensor) with its values cleaned."""
    if cleaning is None or not cleaning.active or x.dtype != tf.string:
        return x
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, _clean_values(x.values, cleaning), x.dense_shape)
    if isinstance(x, tf.RaggedTensor):
        return x.with_flat_values(_clean_values(x.flat_values, cleaning))
    return _clean_values(x, cleaning)
