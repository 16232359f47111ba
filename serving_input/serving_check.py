"""Does an export serve? Loaded as TF Serving loads it, in a process of its own.

``export_saved_model`` runs this before it publishes a version: in a fresh
``python -m tfbake.serving_input.serving_check`` process that imports TensorFlow and nothing
of the training process (no tf.Transform, Beam or tf_keras, whose loaded ops would hide
one the export lacks), the export is loaded with the TF1 session loader and tag
``serve`` (as ``tensorflow_model_server`` loads it: tables, init ops, assets) and every
signature runs on the warm-up examples and on the same examples with every nullable
feature absent. A failure names the signature, the absent feature that causes it, the
transformed feature whose computation fails and the op.

The process is started once per process that exports (:func:`serving_check`), early,
so its TensorFlow import overlaps other work; it reads one JSON request per line on
stdin and answers each with one JSON line.
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Mapping, Sequence

import tensorflow as tf

from tfbake.serving_input import tf_errors
from tfbake.serving_input.export_layout import EXAMPLES_KEY, callable_signatures, load_session
from tfbake.serving_input.feature_spec import (
    feature_lists_of,
    read_raw_feature_spec,
    spec_of_contract,
)
from tfbake.serving_input.raw_tensors import raw_columns
from tfbake.serving_input.sequence_example import example_of_record, serialize_examples
from tfbake.serving_input.signatures import CLASSIFY_INPUTS, TRANSFORM_FEATURES

WARMUP = "the warm-up examples"
ABSENT = "the warm-up examples with every nullable feature absent"


class ExportCheckError(RuntimeError):
    """An export that would not serve; the message names the signature, feature and op."""


# ---------------------------------------------------------------------- the parent side


class ServingCheck:
    """The check process: it imports TensorFlow once, then checks one export folder per
    request (each in a graph and session of its own) until it is closed.

    Use :func:`serving_check` (one per process, started on first use) so its import is
    paid once and overlaps other work (training, the export's save).
    """

    def __init__(self):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # A file, not a pipe: nobody reads stderr while the check runs, and a full pipe
        # would stop the process.
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tfbake.serving_input.serving_check"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=env, text=True,
        )
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self._process.poll() is None

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace").strip()[-2000:]

    def run(self, export_dir: str, examples: Sequence[bytes], timeout: float = 600) -> list[dict]:
        """The failures found (empty: the export serves); see :func:`check_export`."""
        request = {"export_dir": export_dir,
                   "examples": [base64.b64encode(e).decode("ascii") for e in examples]}
        with self._lock:
            try:
                self._process.stdin.write(json.dumps(request) + "\n")
                self._process.stdin.flush()
            except OSError:
                pass  # the process is gone: said below
            ready, _, _ = select.select([self._process.stdout], [], [], timeout)
            line = self._process.stdout.readline() if ready else ""
        if not line:
            reason = f"ran over {timeout:.0f} s" if not ready else (
                f"exited with {self._process.wait()}")
            self.close()
            raise ExportCheckError(
                f"the serving check of {export_dir} {reason}: {self._stderr_tail()}"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise ExportCheckError(f"the serving check of {export_dir} failed: {answer['error']}")
        return answer["failures"]

    def close(self) -> None:
        """Ends the process."""
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._stderr.close()


_shared: ServingCheck | None = None


def serving_check() -> ServingCheck:
    """This process's check process, started now if it is not running."""
    global _shared
    if _shared is None or not _shared.alive:
        if _shared is None:
            atexit.register(lambda: _shared.close() if _shared else None)
        _shared = ServingCheck()
    return _shared


def describe(failure: Mapping, sources: Mapping[str, Sequence[str]] | None = None) -> str:
    """One failure (:func:`check_export`) as a sentence; ``sources``: transformed feature
    -> the raw columns it is computed from."""
    if failure["signature"] is None:
        return f"the export does not load as TF Serving loads it: {failure['message']}"
    text = f'signature "{failure["signature"]}" fails on {failure["examples"]}'
    if failure.get("absent_feature"):
        text += f' (it fails when feature "{failure["absent_feature"]}" is absent)'
    transformed = failure.get("transformed_feature")
    if transformed:
        text += f', computing transformed feature "{transformed}"'
        columns = (sources or {}).get(transformed)
        if columns:
            text += f" (from raw {', '.join(sorted(columns))})"
    if failure.get("op"):
        text += f', in op {failure["op"]} (node "{failure["node"]}")'
    return f"{text}: {failure['message']}"


def check_or_raise(check: ServingCheck, export_dir: str, examples: Sequence[bytes],
                   sources: Mapping[str, Sequence[str]] | None = None) -> None:
    """Runs the check; raises :class:`ExportCheckError` describing every failure."""
    failures = check.run(export_dir, examples)
    if failures:
        lines = [describe(f, sources) for f in failures]
        raise ExportCheckError(
            "the export would not serve, so it was not published:\n  " + "\n  ".join(lines)
        )


# ---------------------------------------------------------------------- the check itself


def _row(example: tf.train.Example, spec: Mapping) -> dict:
    row = {}
    for name, feature_spec in spec.items():
        feature = example.features.feature.get(name)
        kind = feature.WhichOneof("kind") if feature is not None else None
        values = list(getattr(feature, kind).value) if kind else []
        if values:
            scalar = isinstance(feature_spec, tf.io.FixedLenFeature) and not feature_spec.shape
            row[name] = values[0] if scalar else values
    return row


@dataclasses.dataclass(frozen=True)
class _Contract:
    """The export's raw features: the spec, its list features, and those a serving
    record carries as a SequenceExample's feature_lists."""

    spec: Mapping
    lists: Sequence[str]
    feature_lists: Sequence[str]

    def feeds(self, signature_def, rows: list[dict]) -> dict:
        inputs = signature_def.inputs
        if len(inputs) == 1 and next(iter(inputs)) in (EXAMPLES_KEY, CLASSIFY_INPUTS):
            (info,) = inputs.values()
            return {info.name: serialize_examples(rows, self.spec, self.feature_lists)}
        columns = raw_columns(rows, self.spec, self.lists)
        return {info.name: columns[key] for key, info in inputs.items()}


def _run(session, signature_defs: Mapping, rows, contract: _Contract,
         outputs=None) -> str | None:
    """None, or the TensorFlow message of the failed run of ``signature_defs`` (all in
    one ``session.run``; ``outputs``: only these outputs)."""
    feeds, fetches = {}, {}
    for key, signature_def in signature_defs.items():
        feeds.update(contract.feeds(signature_def, rows))
        fetches.update({f"{key}/{k}": v.name for k, v in signature_def.outputs.items()
                        if outputs is None or k in outputs})
    try:
        session.run(fetches, feeds)
    except tf.errors.OpError as err:
        return err.message
    return None


def _diagnose(session, signatures, key, what, batch, rows, message, nullable,
              contract: _Contract) -> dict:
    """One failing signature: the failing node and op, the absent feature whose absence
    alone makes it fail, and the ``transform_features`` output that fails."""
    signature = {key: signatures[key]}
    failure = {"signature": key, "examples": f"{what} ({len(batch)})",
               "message": tf_errors.error_text(message)}
    node = tf_errors.failing_node(message)
    if node:
        failure.update(node=node, op=_op_type(session.graph, node) or node)
    if what == ABSENT:
        failure["absent_feature"] = next(
            (name for name in nullable if _run(
                session, signature, [{k: v for k, v in r.items() if k != name} for r in rows],
                contract)),
            None)
    probe = signatures.get(TRANSFORM_FEATURES)
    if probe is not None:
        failure["transformed_feature"] = next(
            (out for out in sorted(probe.outputs)
             if _run(session, {TRANSFORM_FEATURES: probe}, batch, contract, outputs={out})),
            None)
    return failure


def _op_type(graph: tf.Graph, node: str) -> str | None:
    graph_def = graph.as_graph_def()
    for node_def in graph_def.node:
        if node_def.name == node:
            return node_def.op
    for function in graph_def.library.function:
        for node_def in function.node_def:
            if node_def.name == node:
                return node_def.op
    return None


def check_export(export_dir: str, examples: Sequence[bytes]) -> list[dict]:
    """Loads ``export_dir`` with the TF1 session loader (tag ``serve``) and runs every
    signature on ``examples`` (serialized raw tf.Examples, or SequenceExamples when the
    contract has feature_lists) and on them with every nullable feature absent.

    Returns one dict per failing signature: ``signature`` (None: the export does not
    load), ``examples`` (which batch), ``absent_feature`` (the nullable feature whose
    absence alone makes it fail), ``transformed_feature`` (the ``transform_features``
    output that fails on that batch), ``op`` and ``node`` (the failing node) and
    ``message`` (TensorFlow's, without graph noise).
    """
    contract = read_raw_feature_spec(export_dir) or {}
    spec, lists = spec_of_contract(contract)
    inputs = _Contract(spec, lists, feature_lists_of(contract))
    nullable = [name for name, entry in contract.items() if entry["nullable"]]
    try:
        session, meta_graph = load_session(export_dir)
    except Exception as err:  # noqa: BLE001 - whatever stops the load is the answer
        message = err.message if isinstance(err, tf.errors.OpError) else str(err)
        return [{"signature": None, "message": tf_errors.error_text(message)}]
    rows = [_row(example_of_record(e, spec, inputs.feature_lists), spec) for e in examples]
    batches = [(WARMUP, rows)] if rows else []  # no examples: the load is the check
    if rows and nullable:
        batches.append((ABSENT, [{k: v for k, v in r.items() if k not in nullable} for r in rows]))
    signatures = callable_signatures(meta_graph.signature_def)
    failures: list[dict] = []
    for what, batch in batches:
        pending = {k: v for k, v in signatures.items()
                   if k not in {f["signature"] for f in failures}}
        # All signatures in one run: one executor to build; one by one only on failure.
        if not pending or _run(session, pending, batch, inputs) is None:
            continue
        for key, signature_def in sorted(pending.items()):
            message = _run(session, {key: signature_def}, batch, inputs)
            if message is not None:
                failures.append(_diagnose(session, signatures, key, what, batch, rows,
                                          message, nullable, inputs))
    session.close()
    return failures


def main() -> int:
    """Answers each request line (``{"export_dir", "examples": [base64]}``) with
    ``{"failures": [...]}`` (or ``{"error": ...}``); ends when stdin closes."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            examples = [base64.b64decode(e) for e in request["examples"]]
            answer = {"failures": check_export(request["export_dir"], examples)}
        except Exception:  # noqa: BLE001 - said to the parent, which raises it
            answer = {"error": traceback.format_exc()[-2000:]}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
