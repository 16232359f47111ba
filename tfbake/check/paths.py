"""The paths ``tfbake check`` compares with the reference (the export's ``predict`` on
serialized examples): the trained model on the Beam rows, the export's other
signatures (``serving_default``, ``predict_raw``), the TF1 session loader (how TF
Serving loads), and a live server's REST or gRPC answers. A path that fails is
recorded in its report, not raised, so the others still run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from tfbake import serving_input, trainer
from tfbake.check.report import CheckError, PathReport, compare
from tfbake.serving_input import signatures as sig
from tfbake.serving_input.export_layout import EXAMPLES_KEY, load_session, read_signature_defs
from tfbake.trainer import export


def as_arrays(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Tensors (or anything array-like) as numpy arrays, by output name."""
    return {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in outputs.items()}


def as_predict_outputs(outputs: Mapping[str, np.ndarray], reference: Mapping,
                        prefix: str = "") -> dict:
    """A classify/regress answer under the ``predict`` output names it must equal
    (``prefix``: ``<head>/`` when it is a multi-head model's default head)."""
    renamed = {}
    for name, value in outputs.items():
        if name == sig.SCORES:
            renamed[prefix + sig.PROBABILITIES] = value
        elif name == sig.CLASSES:
            renamed[prefix + sig.ALL_CLASSES] = value
        elif name == sig.OUTPUTS:
            regression = prefix + sig.PREDICTIONS in reference
            renamed[prefix + (sig.PREDICTIONS if regression else sig.LOGISTIC)] = value
    return renamed


class TF1Session:
    """The export loaded as TF Serving loads it: the TF1 loader, tag ``serve``."""

    def __init__(self, export_dir: str):
        self._session, meta_graph = load_session(export_dir)
        predict = meta_graph.signature_def[sig.PREDICT]
        self._input = predict.inputs[EXAMPLES_KEY].name
        self._outputs = {name: info.name for name, info in predict.outputs.items()}

    def predict(self, examples: list[bytes]) -> dict[str, np.ndarray]:
        """The ``predict`` signature's outputs for serialized examples."""
        return self._session.run(self._outputs, {self._input: examples})

    def close(self) -> None:
        """Closes the session."""
        self._session.close()


class ServerPaths:
    """A live server's ``predict`` and ``classify``/``regress`` answers over one protocol."""

    def __init__(self, url: str, protocol: str, model_name: str, default_method: str,
                 batch_size: int):
        from tfbake import model_server

        self.label = "REST" if protocol == "rest" else "gRPC"
        self.client = model_server.Client(url, protocol, batch_size=batch_size)
        self.model_name = model_name
        self.default_method = default_method

    @property
    def names(self) -> tuple[str, str]:
        """The two paths' names, e.g. ``("REST :predict", "REST :classify")``; a
        ``serving_default`` that predicts (a tagging export) is ``:predict serving_default``."""
        kind = {sig.CLASSIFY_METHOD: ":classify", sig.REGRESS_METHOD: ":regress"}.get(
            self.default_method, f":predict {sig.DEFAULT_SERVING}")
        return f"{self.label} :predict", f"{self.label} {kind}"

    def predict(self, examples: list[bytes]) -> dict[str, np.ndarray]:
        """The server's ``predict`` signature on serialized examples."""
        return self.client.predict(self.model_name, examples, signature_name=sig.PREDICT)

    def default(self, examples: list[bytes]) -> dict[str, np.ndarray]:
        """The server's ``serving_default`` answer (classify, regress or predict), as arrays."""
        if self.default_method == sig.PREDICT_METHOD:
            return self.client.predict(self.model_name, examples,
                                       signature_name=sig.DEFAULT_SERVING)
        if self.default_method == sig.CLASSIFY_METHOD:
            results = self.client.classify(self.model_name, examples)
            labels = np.empty((len(results), len(results[0]) if results else 0), dtype=object)
            labels[:] = [[label.encode() if isinstance(label, str) else label
                          for label, _ in row] for row in results]
            scores = np.array([[score for _, score in row] for row in results], dtype=np.float32)
            return {sig.CLASSES: labels, sig.SCORES: scores}
        values = self.client.regress(self.model_name, examples)
        return {sig.OUTPUTS: np.array(values, dtype=np.float32)[:, None]}

    def close(self) -> None:
        """Closes the client's connections."""
        self.client.close()


def method_name(export_dir: str, key: str) -> str:
    """The method name of the export's signature ``key`` (classify, regress, predict)."""
    return read_signature_defs(export_dir)[key].method_name


def input_key(function) -> str:
    """The one input name of a concrete signature function."""
    (key,) = function.structured_input_signature[1]
    return key


def trained_predictions(model: trainer.Model, beam: Mapping[str, np.ndarray],
                         batch_size: int) -> dict[str, np.ndarray]:
    """The trained model's ``predict`` outputs on every Beam-transformed eval row, as the
    export computes them (the head given each row's features, the user's postprocess)."""
    names = list(model.keras_model.input_names)
    missing = sorted(set(names) - set(beam))
    if missing:
        raise CheckError(f"the trained model takes {missing}, which the Beam output lacks")
    n = len(beam[names[0]]) if names else 0
    parts = []
    for start in range(0, n, max(batch_size, 1024)):
        features = {k: beam[k][start:start + max(batch_size, 1024)] for k in names}
        logits = model.keras_model(features, training=False)
        parts.append(as_arrays(export.predictions_of(model.head, logits, model.postprocess,
                                                      features)))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def run_raw(report, function, rows, reference, positions, sources, tolerance) -> None:
    """``predict_raw`` on the rows it takes, as the signature's inputs say
    (:func:`tfbake.serving_input.raw_feature_spec_of`): every row, for an export whose nullable
    and list features come with their counts. A row it cannot take is skipped."""
    inputs = function.structured_input_signature[1]
    spec, lists = serving_input.raw_feature_spec_of(
        {name: (s.dtype, s.shape.rank) for name, s in inputs.items()}
    )
    takes = np.array([
        all(row.get(name) is not None or not isinstance(s, tf.io.FixedLenFeature)
            for name, s in spec.items())
        and all(not isinstance(row.get(name), (list, tuple)) or name in lists for name in spec)
        for row in rows
    ], dtype=bool)
    report.skipped_rows += int((~takes).sum())
    if not takes.any():
        return
    kept = [row for row, ok in zip(rows, takes) if ok]
    columns = serving_input.raw_columns(kept, spec, lists)
    tensors = {k: tf.constant(v) for k, v in columns.items()}
    run_path(report, lambda: as_arrays(function(**tensors)),
              {k: v[takes] for k, v in reference.items()}, positions[takes],
              [s for s, ok in zip(sources, takes) if ok], tolerance)


def run_path(report: PathReport, compute: Callable[[], Mapping], reference: Mapping,
              positions: np.ndarray, sources: list[str], tolerance: float, *,
              rename: str | None = None) -> None:
    """Computes one path's answer for a batch and compares it with the reference; a
    failure is recorded (once) in the path's report, not raised, so the others still run.
    ``rename`` (a head prefix, "" for a single head): a classify/regress answer, compared
    under the predict output names."""
    if report.error is not None:
        return
    try:
        got = compute()
        if rename is not None:
            got = as_predict_outputs(got, reference, rename)
        compare(report, got, reference, positions, sources, tolerance)
    except Exception as err:  # a server down, a refused request: the path fails
        report.error = f"{type(err).__name__}: {err}"
