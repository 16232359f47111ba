"""``tfbake replay``: logged requests sent again to a server, answers compared.

A shadow test before promoting a version: every request of the request log (predict,
classify, regress) goes to ``--server`` over TF Serving's gRPC API (the model the log
names, or ``--model``; its latest version, or ``--version``), and each answer is
compared with the logged one. Strings must be equal, numbers within ``tolerance``
(``|a - b| <= tolerance * (1 + |b|)``); a request the server refuses differs too.
"""

from __future__ import annotations

import dataclasses

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from model_server.grpc_service import MAX_MESSAGE_BYTES
from tfbake.request_logs import read_logs

DEFAULT_TOLERANCE = 1e-6
_METHODS = {"predict_log": "Predict", "classify_log": "Classify", "regress_log": "Regress"}


@dataclasses.dataclass
class Difference:
    """One logged request whose answer differs: its place in the log and how."""

    index: int
    method: str
    detail: str


@dataclasses.dataclass
class ReplayReport:
    """How many requests were replayed, and those whose answers differ."""

    replayed: int
    differences: list[Difference]
    skipped: int = 0

    def to_dict(self) -> dict:
        """The report as JSON-ready values."""
        return dataclasses.asdict(self)


def _arrays_differ(a: np.ndarray, b: np.ndarray, tolerance: float) -> str | None:
    if a.shape != b.shape:
        return f"shape {list(a.shape)} vs logged {list(b.shape)}"
    if a.dtype == object or b.dtype == object:
        if a.tolist() != b.tolist():
            return f"{a.tolist()} vs logged {b.tolist()}"
        return None
    a, b = a.astype(np.float64), b.astype(np.float64)
    bad = np.abs(a - b) > tolerance * (1 + np.abs(b))
    if bad.any():
        where = np.argwhere(bad)[0]
        return f"{a[tuple(where)]!r} vs logged {b[tuple(where)]!r} at {where.tolist()}"
    return None


def _answer_arrays(method: str, response) -> dict[str, np.ndarray]:
    if method == "Predict":
        return {alias: tf.make_ndarray(p) for alias, p in response.outputs.items()}
    if method == "Regress":
        return {"outputs": np.array([r.value for r in response.result.regressions])}
    rows = response.result.classifications
    return {
        "classes": np.array([[c.label for c in row.classes] for row in rows], dtype=object),
        "scores": np.array([[c.score for c in row.classes] for row in rows]),
    }


def compare_answers(method: str, answer, logged, tolerance: float) -> str | None:
    """How ``answer`` differs from the ``logged`` response, or None when it does not."""
    new, old = _answer_arrays(method, answer), _answer_arrays(method, logged)
    if set(new) != set(old):
        return f"outputs {sorted(new)} vs logged {sorted(old)}"
    for alias in sorted(old):
        detail = _arrays_differ(new[alias], old[alias], tolerance)
        if detail:
            return f"{alias}: {detail}"
    return None


def replay(log_dir: str, target: str, *, model_name: str | None = None,
           version: int | None = None, tolerance: float = DEFAULT_TOLERANCE,
           timeout: float = 30.0) -> ReplayReport:
    """Replays every predict/classify/regress record of ``log_dir`` against ``target``
    (``host:port`` or ``grpc://host:port``): the log as it is when the replay starts,
    so a server that logs the replayed requests does not feed the replay."""
    target = target.removeprefix("grpc://")
    report = ReplayReport(0, [])
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for index, record in enumerate(read_logs(log_dir)):
            kind = record.WhichOneof("log_type")
            method = _METHODS.get(kind)
            if method is None:
                report.skipped += 1
                continue
            entry = getattr(record, kind)
            request = type(entry.request)()
            request.CopyFrom(entry.request)
            if model_name:
                request.model_spec.name = model_name
            request.model_spec.ClearField("version_choice")
            if version is not None:
                request.model_spec.version.value = version
            report.replayed += 1
            try:
                answer = getattr(stub, method)(request, timeout=timeout)
            except grpc.RpcError as e:
                report.differences.append(Difference(index, method, f"{e.code().name}: "
                                                                    f"{e.details()}"))
                continue
            detail = compare_answers(method, answer, entry.response, tolerance)
            if detail:
                report.differences.append(Difference(index, method, detail))
    return report


def format_text(report: ReplayReport) -> str:
    """One line per differing request, then the count."""
    lines = [f"  request {d.index} ({d.method}): {d.detail}" for d in report.differences]
    skipped = f" ({report.skipped} records of other kinds skipped)" if report.skipped else ""
    lines.append(f"{len(report.differences)} of {report.replayed} replayed requests "
                 f"answer differently{skipped}")
    return "\n".join(lines)
