"""Whether a transform output is up to date: nothing its content depends on has changed.

A finished job records, beside its output, a fingerprint of everything the output is a
function of (the training and eval spans' keys, the traced ``preprocessing_fn`` graph,
the code of this package, the library versions) and the size of every file it wrote.
A job whose fingerprint equals the record, over an output whose files are all there,
keeps that output instead of running again: the analysis it would do comes from the
cache and the data it would write would be the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import tensorflow as tf

RECORD_FILE = "job_record.json"


def code_fingerprint() -> str:
    """SHA-256 of this package's source: how rows are read, decoded and written."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _files(output_dir: str, reports: tuple[str, ...]) -> dict[str, int]:
    files = {}
    for root, _, names in tf.io.gfile.walk(output_dir):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, output_dir)
            if relative != RECORD_FILE and relative not in reports:
                files[relative] = tf.io.gfile.stat(path).length
    return files


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """The fingerprint of a job's inputs; see the module docstring."""

    fingerprint: str

    @classmethod
    def of(cls, parts: Mapping) -> JobRecord:
        """The record of a job whose output is a function of ``parts`` (JSON-able)."""
        text = json.dumps(parts, sort_keys=True)
        return cls(hashlib.sha256(text.encode()).hexdigest())

    def matches(self, output_dir: str) -> bool:
        """Whether ``output_dir`` holds the complete output of a job with this record."""
        path = os.path.join(output_dir, RECORD_FILE)
        if not tf.io.gfile.exists(path):
            return False
        with tf.io.gfile.GFile(path) as f:
            recorded = json.load(f)
        if recorded.get("fingerprint") != self.fingerprint:
            return False
        files = recorded.get("files", {})
        return bool(files) and all(
            tf.io.gfile.exists(os.path.join(output_dir, name))
            and tf.io.gfile.stat(os.path.join(output_dir, name)).length == size
            for name, size in files.items()
        )

    def write(self, output_dir: str, reports: tuple[str, ...] = ()) -> None:
        """Records this job beside the output it finished writing; ``reports``: files
        about the last run (not output), left out of the record."""
        record = {"fingerprint": self.fingerprint, "files": _files(output_dir, reports)}
        with tf.io.gfile.GFile(os.path.join(output_dir, RECORD_FILE), "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
