"""Rows the job could not decode: kept with their raw text, split and reason, never dropped."""

from __future__ import annotations

import json
import zlib

import apache_beam as beam

COUNTER_NAMESPACE = "tfbake"


def reject_record(split: str, source: str, record: str, reason: str) -> str:
    """One line of ``rejects/<split>-*.jsonl``."""
    return json.dumps({"split": split, "source": source, "record": record, "reason": reason})


class SplitCounters:
    """The Beam counters that ``stats.json`` is built from (read = written + rejected)."""

    def __init__(self, split: str):
        self.read = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, f"{split}_read")
        self.rejected = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, f"{split}_rejected")
        self.written = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, f"{split}_written")


# A source's outputs besides its main RecordBatches: rejects, and the rows (and their
# rejects) it holds out for another split.
HOLDOUT_TAG = "holdout"
HOLDOUT_REJECTS_TAG = "holdout_rejects"
HOLDOUT_TAGS = (HOLDOUT_TAG, HOLDOUT_REJECTS_TAG)


class SplitOutput:
    """Where a source sends one split's rows: its counters and output tags."""

    def __init__(self, split: str, rejects_tag: str, batches_tag: str | None = None):
        self.split = split
        self.counters = SplitCounters(split)
        self._rejects_tag = rejects_tag
        self._batches_tag = batches_tag

    def batch(self, record_batch):
        """A RecordBatch of good rows, tagged for this split."""
        if self._batches_tag is None:
            return record_batch
        return beam.pvalue.TaggedOutput(self._batches_tag, record_batch)

    def reject(self, source: str, record: str, reason: str):
        """One reject of this split, counted."""
        self.counters.rejected.inc()
        return beam.pvalue.TaggedOutput(
            self._rejects_tag, reject_record(self.split, source, record, reason)
        )


class Holdout:
    """A deterministic fraction of a source's records held out as another split (e.g.
    ``validation`` from the training files): a record is held out when the CRC32 of its
    bytes falls below ``fraction`` of the range, so a record always lands in the same
    split, whatever the runner, the file order or the number of workers."""

    def __init__(self, split: str, fraction: float):
        if not 0 < fraction < 1:
            raise ValueError(f"a held-out fraction is between 0 and 1, got {fraction}")
        self.split = split
        self.fraction = fraction
        self._limit = int(fraction * 2**32)

    def takes(self, record: bytes) -> bool:
        """Whether ``record`` belongs to the held-out split."""
        return zlib.crc32(record) < self._limit

    def outputs(self) -> SplitOutput:
        """The held-out split's outputs."""
        return SplitOutput(self.split, HOLDOUT_REJECTS_TAG, HOLDOUT_TAG)
