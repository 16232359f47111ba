"""Gzip TFRecord files from Beam, one per bundle, named ``<prefix>-SSSSS-of-NNNNN<suffix>``.

TensorFlow's writer compresses and checksums in C++; Beam's ``WriteToTFRecord`` does
both in Python, one element at a time, and expands into a dozen transforms per sink.
:class:`WriteTFRecordShards` writes any number of prefixes in one pass: each bundle
writes a temporary file per prefix, and once every bundle has finished the files are
renamed. A bundle that failed and was retried leaves a temporary file that is never
renamed (only the files of finished bundles reach the renaming step), and the
temporary folder is removed at the end.

Records are written by a thread of the bundle's own (:class:`_WritingThread`):
TensorFlow's writer compresses without holding Python's lock, so on a machine with a
second core the gzip work of one batch runs beside the encoding of the next.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.transforms.window import GlobalWindows

_LOG = logging.getLogger(__name__)
_GZIP = tf.io.TFRecordOptions(compression_type="GZIP")


class _WritingThread:
    """Writes batches of records in a thread of its own, in the order they are put.

    At most ``depth`` batches wait, so a bundle that makes records faster than they are
    written waits for the writing. An error of a write is raised by the next
    :meth:`put` or by :meth:`close` (the batches after it are not written).
    """

    def __init__(self, depth: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="WriteTFRecords", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking batches, so that no put waits for ever
            write, records = batch
            try:
                for record in records:
                    write(record)
            except BaseException as error:  # noqa: BLE001 - raised in the bundle's thread
                self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, write: Callable[[bytes], None], records: Sequence[bytes]) -> None:
        """Has ``write`` called on each record, in the thread."""
        self._raise()
        self._queue.put((write, records))

    def close(self) -> None:
        """Waits until every batch put is written; raises the error of a write."""
        self.stop()
        self._raise()

    def stop(self) -> None:
        """Ends the thread once the batches put are written (or dropped after an error)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class _WriteBundleFiles(beam.DoFn):
    """``(prefix, records)`` -> one temporary gzip TFRecord file per prefix and bundle;
    yields ``(prefix, file)`` when the bundle finishes."""

    def __init__(self, temp_dir: str, counter: tuple[str, str] | None):
        self._temp_dir = temp_dir
        self._counter_name = counter

    def setup(self):
        counter = self._counter_name
        self._counter = beam.metrics.Metrics.counter(*counter) if counter else None
        self._writing: _WritingThread | None = None

    def start_bundle(self):
        self._files: dict[str, tuple[str, tf.io.TFRecordWriter]] = {}
        self._counts: collections.Counter = collections.Counter()
        if self._writing is not None:  # the thread of a bundle that failed
            self._writing.stop()
            self._writing = None

    def process(self, element: tuple[str, Sequence[bytes]]):
        prefix, records = element
        if prefix not in self._files:
            tf.io.gfile.makedirs(self._temp_dir)
            path = os.path.join(self._temp_dir, f"{uuid.uuid4().hex}.gz")
            self._files[prefix] = (path, tf.io.TFRecordWriter(path, _GZIP))
        if self._writing is None:
            self._writing = _WritingThread()
        self._writing.put(self._files[prefix][1].write, records)
        self._counts[prefix] += len(records)
        if self._counter is not None:
            self._counter.inc(len(records))

    def finish_bundle(self):
        if self._writing is not None:
            self._writing.close()
            self._writing = None
        for prefix, (path, writer) in self._files.items():
            writer.close()
            # Which worker wrote what: on a distributed runner, the job's log shows how
            # the work was spread.
            _LOG.info(
                "%s: %d examples -> %s (worker pid %d)",
                os.path.basename(prefix), self._counts[prefix], path, os.getpid(),
            )
            yield GlobalWindows.windowed_value((prefix, path))
        self._files = {}

    def teardown(self):
        if self._writing is not None:
            self._writing.stop()


def _name_files(
    written: Iterable[tuple[str, str]], prefixes: Sequence[str], suffix: str, temp_dir: str
) -> list[str]:
    """Renames each prefix's temporary files to ``<prefix>-SSSSS-of-NNNNN<suffix>``; a
    prefix without records gets one empty file."""
    by_prefix = collections.defaultdict(list)
    for prefix, path in written:
        by_prefix[prefix].append(path)
    names = []
    for prefix in prefixes:
        files = sorted(by_prefix[prefix])
        if not files:
            tf.io.gfile.makedirs(temp_dir)
            files = [os.path.join(temp_dir, f"{uuid.uuid4().hex}.gz")]
            tf.io.TFRecordWriter(files[0], _GZIP).close()
        tf.io.gfile.makedirs(os.path.dirname(prefix))
        for i, path in enumerate(files):
            name = f"{prefix}-{i:05d}-of-{len(files):05d}{suffix}"
            tf.io.gfile.rename(path, name, overwrite=True)
            names.append(name)
    if tf.io.gfile.exists(temp_dir):
        tf.io.gfile.rmtree(temp_dir)
    return names


class WriteTFRecordShards(beam.PTransform):
    """``(prefix, records)`` elements (``prefix`` one of ``prefixes``, ``records`` a list
    of bytes) -> gzip TFRecord files ``<prefix>-SSSSS-of-NNNNN<suffix>``, at least one
    per prefix. Outputs the list of file names. ``counter``: a (namespace, name) counter
    of the records written."""

    def __init__(
        self,
        prefixes: Sequence[str],
        temp_dir: str,
        suffix: str = ".gz",
        counter: tuple[str, str] | None = None,
    ):
        super().__init__()
        self._prefixes = list(prefixes)
        self._temp_dir = temp_dir
        self._suffix = suffix
        self._counter = counter

    def expand(self, records):
        return (
            records
            | "WriteBundles" >> beam.ParDo(_WriteBundleFiles(self._temp_dir, self._counter))
            | "Gather" >> beam.combiners.ToList()
            | "Name" >> beam.Map(_name_files, self._prefixes, self._suffix, self._temp_dir)
        )
