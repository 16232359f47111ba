"""The job's TFRecord sink: every record of every bundle in its prefix's gzip files,
in order; an error of a write (made in the sink's writing thread) fails the bundle."""

from __future__ import annotations

import glob
import threading

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tfbake.transform.tfrecord_shards import WriteTFRecordShards, _WritingThread


def test_every_record_is_written_to_its_prefixs_files_in_order(tmp_path):
    prefixes = [str(tmp_path / "data" / "train"), str(tmp_path / "data" / "eval")]
    batches = [
        (prefixes[k % 2], [f"{k}-{i}".encode() for i in range(k * 50)]) for k in range(7)
    ]
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            pipeline
            | beam.Create(batches, reshuffle=False)
            | WriteTFRecordShards(prefixes, str(tmp_path / "tmp"), suffix=".tfrecord.gz")
        )
    for prefix in prefixes:
        files = sorted(glob.glob(prefix + "-*"))
        assert files and all(f.endswith(f"-of-{len(files):05d}.tfrecord.gz") for f in files)
        written = [
            r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
        ]
        ours = [records for p, records in batches if p == prefix]
        assert sorted(written) == sorted(r for records in ours for r in records)
        # Within a batch, the records keep their order.
        for records in ours:
            at = [written.index(r) for r in records]
            assert at == sorted(at)
    assert not (tmp_path / "tmp").exists()


def test_an_error_of_a_write_is_raised_and_nothing_waits_for_ever():
    written = []

    def write(record: bytes) -> None:
        if record == b"bad":
            raise OSError("No space left on device")
        written.append((record, threading.current_thread().name))

    writing = _WritingThread(depth=1)
    writing.put(write, [b"a", b"b"])
    writing.put(write, [b"bad", b"c"])
    with pytest.raises(OSError, match="No space left"):
        for _ in range(10):  # later puts: the error, once the thread has met it
            writing.put(write, [b"d"])
        writing.close()
    writing.stop()  # the thread has ended: nothing to wait for
    assert [r for r, _ in written[:2]] == [b"a", b"b"]
    assert b"c" not in [r for r, _ in written]
    assert {thread for _, thread in written} == {"WriteTFRecords"}
