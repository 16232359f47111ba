"""Rows whose tags do not line up with their tokens are rejects, not training data.

A sequence-tagging label holds one tag per token of its token feature. A row with
more or fewer tags than tokens would teach the model the wrong tag for every token
after the first gap, so the Beam job rejects it, naming both counts. Tokens are
counted by the same tokenizer the ``preprocessing_fn`` uses
(:func:`tfbake.transform.ops.text.tokens`), or as the values of a list feature.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from tfbake.transform.ops.text import Text, tokens
from tfbake.transform.rejects import SplitCounters, reject_record

REJECTS_TAG = "rejects"


@dataclasses.dataclass(frozen=True)
class TokenAlignment:
    """A tag list (``label``) that must hold one tag per token of ``feature``: the
    tokens of a text (``text``: its op) or the values of a list (``text`` None)."""

    label: str
    feature: str
    text: Text | None = None

    def token_counts(self, batch: pa.RecordBatch) -> np.ndarray:
        """How many tokens each row of ``batch`` has."""
        column = batch.column(self.feature)
        if self.text is None:
            return pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
        # One text per row (none: an empty text, as the preprocessing_fn reads it).
        texts = tf.constant([values[0] if values else b"" for values in column.to_pylist()],
                            tf.string)
        return tokens(texts, self.text).row_lengths().numpy()

    def tag_counts(self, batch: pa.RecordBatch) -> np.ndarray:
        """How many tags each row of ``batch`` has."""
        lengths = pc.list_value_length(batch.column(self.label))
        return lengths.fill_null(0).to_numpy(zero_copy_only=False)


def _row_json(batch: pa.RecordBatch, row: int) -> str:
    values = {
        name: [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
               for v in (batch.column(name)[row].as_py() or [])]
        for name in batch.schema.names
    }
    return json.dumps(values, ensure_ascii=False)


class _KeepAligned(beam.DoFn):
    def __init__(self, alignments: Sequence[TokenAlignment], split: str):
        self._alignments = list(alignments)
        self._split = split

    def setup(self):
        self._counters = SplitCounters(self._split)

    def process(self, batch: pa.RecordBatch):
        keep = np.ones(batch.num_rows, bool)
        reasons: dict[int, str] = {}
        for alignment in self._alignments:
            tags, counted = alignment.tag_counts(batch), alignment.token_counts(batch)
            for row in np.flatnonzero(keep & (tags != counted)):
                reasons[int(row)] = (
                    f'label "{alignment.label}" has {tags[row]} tags but feature '
                    f'"{alignment.feature}" has {counted[row]} tokens: a sequence-tagging label '
                    "needs one tag per token"
                )
            keep &= tags == counted
        for row, reason in sorted(reasons.items()):
            self._counters.rejected.inc()
            yield beam.pvalue.TaggedOutput(
                REJECTS_TAG, reject_record(self._split, "", _row_json(batch, row), reason)
            )
        if keep.all():
            yield batch
        elif keep.any():
            yield batch.filter(pa.array(keep))


class KeepAlignedRows(beam.PTransform):
    """RecordBatches -> those rows whose tag lists line up with their tokens (main) and
    a reject line for each other row (``rejects``), counted as the split's rejects."""

    def __init__(self, alignments: Sequence[TokenAlignment], split: str):
        super().__init__()
        self._alignments = list(alignments)
        self._split = split

    def expand(self, record_batches):
        return record_batches | "KeepAligned" >> beam.ParDo(
            _KeepAligned(self._alignments, self._split)
        ).with_outputs(REJECTS_TAG, main="record_batches")
