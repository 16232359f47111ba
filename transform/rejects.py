"""Rows the job could not decode: kept with their raw text, split and reason, never dropped."""

from __future__ import annotations

import json

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
