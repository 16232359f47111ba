"""The request log: sampled requests and answers as TF Serving's ``PredictionLog`` TFRecords.

Turned on by ``--request_log_dir`` (every request of every model is logged) or by a
model's ``logging_config`` in ``--model_config_file`` (TF Serving's
``LoggingConfig``: ``sampling_config.sampling_rate``, and
``log_collector_config.filename_prefix`` as the file name prefix, or the path prefix
when no ``--request_log_dir`` is given).

Files are ``<prefix>-<start time>-<pid>-<n>.tfrecord``: TFRecords of
``tensorflow.serving.PredictionLog`` (``predict_log``, ``classify_log``,
``regress_log``), readable with ``tf.data.TFRecordDataset`` and the protos of
``tensorflow-serving-api`` alone. A file is closed at ``max_file_bytes`` and the next
one started; once the files this process wrote reach ``max_total_bytes``, further
records are dropped.

Writing never fails a request and costs it little: the request path only samples and
puts the request's own objects on a bounded queue; one writer thread builds the protos
and writes them, in batches. A full queue, the size cap, or a failing write (a full or read-only
disk) drops the record and counts it in
``:tfbake:serving:request_log_dropped_total{model_name,reason}``; written records are
in ``:tfbake:serving:request_log_written_total{model_name}``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable

import tensorflow as tf
from prometheus_client import CollectorRegistry, Counter
from tensorflow_serving.apis import logging_pb2, prediction_log_pb2

log = logging.getLogger(__name__)

WRITTEN = ":tfbake:serving:request_log_written"
DROPPED = ":tfbake:serving:request_log_dropped"
QUEUE_FULL = "queue_full"
SIZE_CAP = "size_cap"
WRITE_ERROR = "write_error"
# After a failed write, the next attempt to open a file waits this long (records in
# between are dropped), so a broken disk costs one failed open per interval.
_RETRY_S = 1.0
_BATCH_S = 0.05


@dataclasses.dataclass(frozen=True)
class LogTarget:
    """Where and how often one model's requests are logged."""

    directory: str
    prefix: str
    sampling_rate: float


def log_target(request_log_dir: str | None, model_config) -> LogTarget | None:
    """A model's log target from ``--request_log_dir`` and its ``ModelConfig``, or None."""
    config = model_config.logging_config if model_config is not None else None
    has_config = config is not None and model_config.HasField("logging_config")
    prefix = config.log_collector_config.filename_prefix if has_config else ""
    if not request_log_dir and not prefix:
        return None
    rate = config.sampling_config.sampling_rate if has_config else 1.0
    if request_log_dir:
        return LogTarget(request_log_dir, os.path.basename(prefix) or model_config.name, rate)
    return LogTarget(os.path.dirname(prefix) or ".", os.path.basename(prefix), rate)


class _File:
    def __init__(self, directory: str, prefix: str, pid: int, sequence: int):
        os.makedirs(directory, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.path = os.path.join(directory, f"{prefix}-{stamp}-{pid}-{sequence}.tfrecord")
        self.writer = tf.io.TFRecordWriter(self.path)
        self.bytes = 0


class RequestLog:
    """The writer thread and its queue; :meth:`submit` is what a request calls."""

    def __init__(
        self,
        registry: CollectorRegistry | None,
        target_of: Callable[[str], LogTarget | None],
        *,
        max_file_bytes: int = 64 << 20,
        max_total_bytes: int = 1 << 30,
        queue_size: int = 10_000,
    ):
        self._target_of = target_of
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._written = Counter(WRITTEN, "Request log records written.", ("model_name",),
                                registry=registry)
        self._dropped = Counter(DROPPED, "Request log records dropped.",
                                ("model_name", "reason"), registry=registry)
        self._files: dict[tuple[str, str], _File] = {}
        self._sequence = 0
        self._total = 0
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name="request_log", daemon=True)
        self._thread.start()

    def submit(self, model_name: str, build: Callable[[], prediction_log_pb2.PredictionLog],
               ) -> None:
        """Samples one answered request; ``build`` makes its ``PredictionLog`` (called on
        the writer thread, from objects the request no longer changes)."""
        target = self._target_of(model_name)
        if target is None or (target.sampling_rate < 1.0
                              and random.random() >= target.sampling_rate):
            return
        try:
            self._queue.put_nowait((model_name, target, build, time.time()))
        except queue.Full:
            self._dropped.labels(model_name, QUEUE_FULL).inc()

    def close(self, timeout: float = 10.0) -> None:
        """Writes what is queued (for at most ``timeout`` seconds) and closes the files."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:  # the writer is stuck: its daemon thread ends with the process
            return
        self._thread.join(timeout)

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        # Records are taken in batches, one wake-up and one flush each: on a busy server
        # the writer competes with the request path for the GIL and the cores once per
        # _BATCH_S, not once per request. A record reaches its file about that long after
        # its request.
        while True:
            batch = [self._queue.get()]
            while batch[-1] is not None:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if item is not None:
                    self._write(*item)
            self._flush()
            if batch[-1] is None:
                break
            time.sleep(_BATCH_S)
        for file in self._files.values():
            file.writer.close()

    def _write(self, model_name: str, target: LogTarget, build, timestamp: float) -> None:
        try:
            record = build()
            record.log_metadata.sampling_config.sampling_rate = target.sampling_rate
            record.log_metadata.timestamp_secs = int(timestamp)
            data = record.SerializeToString()
        except Exception:  # noqa: BLE001 - a record that cannot be built is dropped
            log.exception("request log: cannot build the record")
            self._dropped.labels(model_name, WRITE_ERROR).inc()
            return
        size = len(data) + 16  # TFRecord framing: length, two CRCs
        if self._total + size > self.max_total_bytes:
            self._dropped.labels(model_name, SIZE_CAP).inc()
            return
        key = (target.directory, target.prefix)
        try:
            file = self._files.get(key)
            if file is not None and file.bytes + size > self.max_file_bytes and file.bytes:
                self._files.pop(key).writer.close()  # rotated: the next record opens a file
                file = None
            if file is None:
                if time.monotonic() < self._retry_at:
                    self._dropped.labels(model_name, WRITE_ERROR).inc()
                    return
                self._sequence += 1
                file = self._files[key] = _File(
                    target.directory, target.prefix, os.getpid(), self._sequence)
            file.writer.write(data)
            file.bytes += size
        except Exception as e:  # noqa: BLE001 - a full or read-only disk: drop, go on
            self._failed(key, e)
            self._dropped.labels(model_name, WRITE_ERROR).inc()
            return
        self._total += size
        self._written.labels(model_name).inc()

    def _flush(self) -> None:
        for key, file in list(self._files.items()):
            try:
                file.writer.flush()
            except Exception as e:  # noqa: BLE001
                self._failed(key, e)

    def _failed(self, key, error: Exception) -> None:
        log.warning("request log: cannot write in %s: %s", key[0], error)
        self._retry_at = time.monotonic() + _RETRY_S
        file = self._files.pop(key, None)
        if file is not None:
            try:
                file.writer.close()
            except Exception:  # noqa: BLE001
                pass


def metadata(servable, signature_name: str) -> logging_pb2.LogMetadata:
    """The ``LogMetadata`` of a servable's request (model, version, signature)."""
    meta = logging_pb2.LogMetadata()
    meta.model_spec.name = servable.name
    meta.model_spec.version.value = servable.version
    meta.model_spec.signature_name = signature_name
    return meta
