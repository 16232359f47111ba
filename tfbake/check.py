"""``tfbake check``: is the served model the trained model? The skew/parity report.

For the eval rows of a config (all of them, streamed in batches, or the first N):

- the raw rows become serialized ``tf.Example``s and go through the export's
  ``predict`` signature (``tf.saved_model.load``): the reference answer;
- the export's ``transform_features`` on the same examples is compared with the Beam
  job's transformed eval data. Beam writes its output in no fixed order, so every row
  is paired with the Beam row whose transformed features match it
  (:class:`TransformedRows`); a row without a twin is training/serving skew, and the
  feature that differs is named;
- the paired Beam row through the trained model (what ``tfbake train`` evaluated),
  ``predict_raw`` on raw columns, ``serving_default``, the TF1 session loader (how
  TF Serving loads), and, given a live server, its REST and gRPC answers (``predict``
  and ``classify``/``regress``) are each compared with the reference.

A value differs when ``|a - b| > tolerance * (1 + |b|)``: absolute near zero, relative
for large outputs (a regressor in the user's units). :func:`check` returns a
:class:`CheckReport`; :func:`format_report` prints it as a table.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, TextIO

import numpy as np
import tensorflow as tf

import serving_input
import trainer
import transform
from serving_input import signatures as sig
from tfbake import stages
from tfbake.config import Config

DEFAULT_TOLERANCE = 1e-5
DEFAULT_BATCH_SIZE = 256
REFERENCE = "saved_model.load predict"
# Beam rows are looked up by their features rounded to this grid; values that
# straddle a grid line fall back to a full scan, so it only affects speed.
_GRID = 1e-3


class CheckError(RuntimeError):
    """The check could not run (no export, no Beam output, an export without the
    ``transform_features`` signature...); the message says what was expected."""


# ---------------------------------------------------------------------- the report


@dataclasses.dataclass
class PathReport:
    """One way of computing the predictions, compared with the reference.

    Attributes:
      name: the path, e.g. ``"TF1 session predict"`` or ``"REST :classify"``.
      rows: rows compared.
      max_abs_diff: output name -> largest absolute difference (``inf`` for a string
        output that differs).
      differing_rows: rows where some output is over tolerance.
      first_differing_row: index (in the eval stream) of the first such row.
      first_differing_source: where that row comes from (``file:line``).
      skipped_rows: rows this path cannot take (``predict_raw`` of an export made before
        nullable and list features came with counts); skipped rows fail the check
        unless it allows skips.
      error: why the path failed, if it did (a failed path fails the check).
      allow_skips: whether skipped rows are allowed.
    """

    name: str
    rows: int = 0
    max_abs_diff: dict[str, float] = dataclasses.field(default_factory=dict)
    differing_rows: int = 0
    first_differing_row: int | None = None
    first_differing_source: str | None = None
    skipped_rows: int = 0
    error: str | None = None
    allow_skips: bool = False

    @property
    def ok(self) -> bool:
        skips_ok = self.allow_skips or self.skipped_rows == 0
        return self.error is None and self.differing_rows == 0 and skips_ok


@dataclasses.dataclass
class FeatureReport:
    """The export's ``transform_features`` against the Beam job's transformed eval data.

    Attributes:
      rows: rows compared.
      beam_rows: rows in the Beam output.
      unmatched_rows: rows with no Beam twin within tolerance (skew).
      max_abs_diff: feature -> largest difference to the closest Beam row.
      differing_rows: feature -> rows where it differs.
      first_differing_feature: the feature that differs in the first differing row.
      first_differing_row, first_differing_source: that row.
      skipped_features: transformed features not compared (not dense).
    """

    rows: int = 0
    beam_rows: int = 0
    unmatched_rows: int = 0
    max_abs_diff: dict[str, float] = dataclasses.field(default_factory=dict)
    differing_rows: dict[str, int] = dataclasses.field(default_factory=dict)
    first_differing_feature: str | None = None
    first_differing_row: int | None = None
    first_differing_source: str | None = None
    skipped_features: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.unmatched_rows == 0


@dataclasses.dataclass
class CheckReport:
    """What :func:`check` found; ``ok`` is False over tolerance anywhere."""

    config_name: str
    export_dir: str
    tolerance: float
    rows: int
    features: FeatureReport
    paths: list[PathReport]
    outputs: list[str]

    @property
    def ok(self) -> bool:
        return self.features.ok and all(p.ok for p in self.paths)

    def path(self, name: str) -> PathReport:
        """The report of one path, by name."""
        for p in self.paths:
            if p.name == name:
                return p
        raise KeyError(f"no path {name!r}; the report has {[p.name for p in self.paths]}")

    def to_dict(self) -> dict:
        """The report as JSON-ready data (``inf`` stays a float)."""
        return {"ok": self.ok, **dataclasses.asdict(self)}


# ---------------------------------------------------------------------- comparing


def _differs(got: np.ndarray, want: np.ndarray, tolerance: float) -> np.ndarray:
    """Per-row (first axis) whether any value is over tolerance; NaN equals NaN."""
    n = len(want)
    got, want = got.reshape(n, -1), want.reshape(n, -1)
    if want.dtype == object or want.dtype.kind in "SU":
        return (got != want).any(axis=1)
    a, b = got.astype(np.float64), want.astype(np.float64)
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= tolerance * (1 + np.abs(b))
    return ~(close | (np.isnan(a) & np.isnan(b))).all(axis=1)


def _abs_diff(got: np.ndarray, want: np.ndarray) -> float:
    n = len(want)
    if n == 0:
        return 0.0
    got, want = got.reshape(n, -1), want.reshape(n, -1)
    if want.dtype == object or want.dtype.kind in "SU":
        return math.inf if (got != want).any() else 0.0
    a, b = got.astype(np.float64), want.astype(np.float64)
    diff = np.abs(a - b)
    diff[np.isnan(a) & np.isnan(b)] = 0.0
    diff[np.isnan(diff)] = math.inf  # NaN on one side only
    return float(diff.max())


def _compare(
    report: PathReport,
    got: Mapping[str, np.ndarray],
    want: Mapping[str, np.ndarray],
    positions: np.ndarray,
    sources: list[str],
    tolerance: float,
) -> None:
    """Adds one batch to a path's report; ``positions`` are the rows' stream indices."""
    report.rows += len(positions)
    differs = np.zeros(len(positions), dtype=bool)
    for name, value in got.items():
        value = np.asarray(value)
        if len(value) != len(positions):
            raise CheckError(
                f"{report.name}: output {name!r} has {len(value)} rows, expected {len(positions)}"
            )
        differs |= _differs(value, want[name], tolerance)
        report.max_abs_diff[name] = max(report.max_abs_diff.get(name, 0.0),
                                        _abs_diff(value, want[name]))
    report.differing_rows += int(differs.sum())
    if differs.any() and report.first_differing_row is None:
        first = int(np.flatnonzero(differs)[0])
        report.first_differing_row = int(positions[first])
        report.first_differing_source = sources[first]


# ---------------------------------------------------------------------- Beam rows


class TransformedRows:
    """The Beam job's transformed rows, found again by their feature values.

    Beam writes its output in no guaranteed order, so a served row is paired with the
    Beam row whose transformed features all match within tolerance. Rows are indexed
    by their values rounded to a coarse grid, so pairing is a dict look-up; a row that
    has no twin is compared with the Beam row agreeing on the most features, which
    names the features that differ.

    Args:
      features: feature name -> array ``[M, ...]`` (dense transformed features).
      tolerance: as in :func:`check`.
    """

    def __init__(self, features: Mapping[str, np.ndarray], tolerance: float):
        self.names = sorted(features)
        self.tolerance = tolerance
        self._strings: dict[bytes, int] = {}
        self.rows = len(next(iter(features.values()))) if features else 0
        self._columns, self._exact, self._feature_of = self._matrix(features, register=True)
        self._used = np.zeros(self.rows, dtype=bool)
        self._index: dict[tuple, list[int]] = defaultdict(list)
        for i, key in enumerate(self._keys(self._columns)):
            self._index[key].append(i)

    def _matrix(self, features: Mapping[str, np.ndarray], register: bool = False):
        """Features as one float64 matrix; strings become ids (compared exactly)."""
        columns, exact, feature_of = [], [], []
        for name in self.names:
            value = np.asarray(features[name])
            value = value.reshape(len(value), -1)
            if value.dtype == object or value.dtype.kind in "SU":
                ids = np.array(
                    [[self._string_id(v, register) for v in row] for row in value.tolist()],
                    dtype=np.float64,
                ).reshape(value.shape)
                columns.append(ids)
                exact += [True] * value.shape[1]
            else:
                columns.append(value.astype(np.float64))
                exact += [False] * value.shape[1]
            feature_of += [name] * value.shape[1]
        n = len(columns[0]) if columns else 0
        matrix = np.concatenate(columns, axis=1) if columns else np.zeros((n, 0))
        return matrix, np.array(exact, dtype=bool), np.array(feature_of)

    def _string_id(self, value: bytes, register: bool) -> int:
        if value not in self._strings:
            if not register:
                return -1  # a string Beam never wrote: matches nothing
            self._strings[value] = len(self._strings)
        return self._strings[value]

    def _keys(self, matrix: np.ndarray) -> list[tuple]:
        rounded = np.where(np.isnan(matrix), np.inf, np.round(matrix / _GRID))
        return [tuple(row) for row in rounded.tolist()]

    def _column_differs(self, row: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """[len(candidates), columns]: which values of ``row`` differ from each candidate."""
        with np.errstate(invalid="ignore"):
            close = np.abs(candidates - row) <= self.tolerance * (1 + np.abs(candidates))
        close |= np.isnan(candidates) & np.isnan(row)
        close[:, self._exact] = candidates[:, self._exact] == row[self._exact]
        return ~close

    def match(self, served: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Pairs served rows with Beam rows.

        Returns ``(index, differs)``: for each served row, the paired (or closest) Beam
        row, and a ``[rows, features]`` bool matrix of the features (in ``names`` order)
        that differ from it (all False for a matched row). A Beam row is paired once
        while an unpaired twin remains, so duplicated rows pair one to one.
        """
        missing = sorted(set(self.names) - set(served))
        if missing:
            raise CheckError(f"transform_features lacks the Beam features {missing}")
        matrix, _, _ = self._matrix(served)
        index = np.zeros(len(matrix), dtype=np.int64)
        differs = np.zeros((len(matrix), len(self.names)), dtype=bool)
        for i, (row, key) in enumerate(zip(matrix, self._keys(matrix))):
            candidates = np.array(self._index.get(key, []), dtype=np.int64)
            if candidates.size:
                ok = ~self._column_differs(row, self._columns[candidates]).any(axis=1)
                twins = candidates[ok]
                if twins.size:
                    free = twins[~self._used[twins]]
                    index[i] = free[0] if free.size else twins[0]
                    self._used[index[i]] = True
                    continue
            column_differs = self._column_differs(row, self._columns)
            by_feature = np.stack(
                [column_differs[:, self._feature_of == name].any(axis=1) for name in self.names],
                axis=1,
            )
            counts = by_feature.sum(axis=1)
            best = int(np.argmin(counts))  # the Beam row agreeing on the most features
            if counts[best] == 0:
                self._used[best] = True
            index[i] = best
            differs[i] = by_feature[best]
        return index, differs

    def feature_diffs(self, served: Mapping[str, np.ndarray], index: np.ndarray,
                      beam: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Per feature, the largest difference between served rows and their Beam rows."""
        return {name: _abs_diff(np.asarray(served[name]), np.asarray(beam[name])[index])
                for name in self.names}


def read_transformed_eval(config: Config, tft_output) -> tuple[dict[str, np.ndarray], list[str]]:
    """The Beam job's transformed eval data, dense features as arrays (labels dropped);
    also the names of features that are not dense (not compared)."""
    spec = tft_output.transformed_feature_spec()
    labels = set(config.label_keys)
    dense = {k: v for k, v in spec.items()
             if isinstance(v, tf.io.FixedLenFeature) and k not in labels}
    skipped = sorted(k for k in spec if k not in dense and k not in labels)
    pattern = transform.data_pattern(config.transform_dir, "eval")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise CheckError(f"no transformed eval data matches {pattern}: run `tfbake transform`")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024)
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    for batch in dataset:
        for name, value in tf.io.parse_example(batch, dense).items():
            parts[name].append(value.numpy())
    return {name: np.concatenate(parts[name]) for name in dense}, skipped


# ---------------------------------------------------------------------- raw eval rows


def iter_eval_rows(config: Config) -> Iterator[tuple[dict, str]]:
    """The eval rows as raw feature dicts of the served features (labels and
    ``serving: false`` columns removed), with ``file:line``.

    Rows the Beam job rejects (they are not in its output) are skipped.
    """
    spec = config.raw_feature_spec()
    served = config.serving_features()
    files = sorted(glob.glob(config.data.eval))
    if not files:
        raise CheckError(f"data.eval: no file matches {config.data.eval!r}")
    for path in files:
        if config.data.format == "tfrecord":
            for n, record in enumerate(tf.data.TFRecordDataset(path)):
                example = tf.train.Example.FromString(record.numpy())
                row = _example_to_row(example, spec)
                if row is not None:
                    yield {k: v for k, v in row.items() if k in served}, f"{path}#{n}"
            continue
        csv = config.data.csv
        columns = transform.column_names(path, csv)
        decoder = transform.CsvRowDecoder(spec, columns, csv, config.list_columns())
        with open(path, encoding="utf-8", newline="") as f:
            lines = [line.removesuffix("\r") for line in f.read().split("\n")]
            for n, line in transform.csv_records(lines):
                if (csv.header and n == 1) or not line.strip():
                    continue
                try:
                    row = decoder.decode_dict(line)
                except ValueError:
                    continue
                yield {k: v for k, v in row.items() if k in served}, f"{path}:{n}"


def _example_to_row(example: tf.train.Example, spec: Mapping) -> dict | None:
    """A raw tf.Example as a feature dict; None when a required feature is missing."""
    row = {}
    for name, feature_spec in spec.items():
        feature = example.features.feature.get(name)
        kind = feature.WhichOneof("kind") if feature is not None else None
        values = list(getattr(feature, kind).value) if kind else []
        if not values:
            if isinstance(feature_spec, tf.io.FixedLenFeature):
                return None
            continue
        if isinstance(feature_spec, tf.io.FixedLenFeature) and not feature_spec.shape:
            row[name] = values[0]
        else:
            row[name] = values
    return row


# ---------------------------------------------------------------------- the paths


def _numpy(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in outputs.items()}


def _as_predict_outputs(outputs: Mapping[str, np.ndarray], reference: Mapping,
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


class _TF1Session:
    """The export loaded as TF Serving loads it: the TF1 loader, tag ``serve``."""

    def __init__(self, export_dir: str):
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        with self._graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], export_dir)
        predict = meta_graph.signature_def[sig.PREDICT]
        self._input = predict.inputs["examples"].name
        self._outputs = {name: info.name for name, info in predict.outputs.items()}

    def predict(self, examples: list[bytes]) -> dict[str, np.ndarray]:
        return self._session.run(self._outputs, {self._input: examples})

    def close(self) -> None:
        self._session.close()


class _ServerPaths:
    """A live server's ``predict`` and ``classify``/``regress`` answers over one protocol."""

    def __init__(self, url: str, protocol: str, model_name: str, default_method: str,
                 batch_size: int):
        import model_server

        self.label = "REST" if protocol == "rest" else "gRPC"
        self.client = model_server.Client(url, protocol, batch_size=batch_size)
        self.model_name = model_name
        self.default_method = default_method

    @property
    def names(self) -> tuple[str, str]:
        kind = ":classify" if self.default_method == sig.CLASSIFY_METHOD else ":regress"
        return f"{self.label} :predict", f"{self.label} {kind}"

    def predict(self, examples: list[bytes]) -> dict[str, np.ndarray]:
        return self.client.predict(self.model_name, examples, signature_name=sig.PREDICT)

    def default(self, examples: list[bytes]) -> dict[str, np.ndarray]:
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
        self.client.close()


# ---------------------------------------------------------------------- check


def check(
    config: Config,
    *,
    export_dir: str | None = None,
    server: str | None = None,
    grpc_target: str | None = None,
    model_name: str | None = None,
    rows: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    model: trainer.Model | None = None,
    allow_skips: bool = False,
) -> CheckReport:
    """Runs the parity check of a config's export; see the module docstring.

    Args:
      config: the pipeline config (its eval data, transform output and trained model).
      export_dir: the version folder to check; default the latest under the config's
        export base.
      server: a live server's REST URL (``http://127.0.0.1:8501``).
      grpc_target: a live server's gRPC target (``127.0.0.1:8500``).
      model_name: the model's name on the server; default the config's name.
      rows: check only the first N eval rows; default all.
      tolerance: see the module docstring.
      batch_size: rows per batch through every path.
      model: the trained model; default the one ``tfbake train`` saved.
      allow_skips: rows a path cannot take (:attr:`PathReport.skipped_rows`) do not
        fail the check.
    """
    export_dir = export_dir or trainer.latest_export(config.export_dir_base)
    model = model or stages.load_trained_model(config)
    loaded = tf.saved_model.load(export_dir)
    signatures = loaded.signatures
    for key in (sig.PREDICT, sig.TRANSFORM_FEATURES):
        if key not in signatures:
            raise CheckError(
                f"{export_dir} has no {key!r} signature (it has {sorted(signatures)}); "
                "check needs an export made with a parsing serving_input_fn"
            )
    default_method = _method_name(export_dir, sig.DEFAULT_SERVING)
    # A multi-head model's serving_default is its first head's: outputs "<head>/...".
    default_head = f"{config.label_keys[0]}/" if config.labels is not None else ""

    beam, skipped = read_transformed_eval(config, model.tft_output)
    beam_rows = TransformedRows(beam, tolerance)
    beam_predictions = _trained_predictions(model, beam, batch_size)
    feature_report = FeatureReport(beam_rows=beam_rows.rows, skipped_features=skipped,
                                   max_abs_diff={n: 0.0 for n in beam_rows.names},
                                   differing_rows={n: 0 for n in beam_rows.names})

    paths = [PathReport("trained model on Beam features"), PathReport(REFERENCE),
             PathReport(f"saved_model.load {sig.DEFAULT_SERVING}")]
    if sig.PREDICT_RAW in signatures:
        paths.append(PathReport(f"saved_model.load {sig.PREDICT_RAW}"))
    paths.append(PathReport("TF1 session predict"))
    servers = []
    if server:
        servers.append(_ServerPaths(server, "rest", model_name or config.name, default_method,
                                    batch_size))
    if grpc_target:
        servers.append(_ServerPaths(grpc_target, "grpc", model_name or config.name,
                                    default_method, batch_size))
    for s in servers:
        paths += [PathReport(name) for name in s.names]
    for p in paths:
        p.allow_skips = allow_skips
    by_name = {p.name: p for p in paths}
    session = _TF1Session(export_dir)
    spec = stages.serving_feature_spec(config)
    outputs: list[str] = []
    total = 0
    try:
        for batch in _batches(iter_eval_rows(config), batch_size, rows):
            row_dicts = [row for row, _ in batch]
            sources = [source for _, source in batch]
            positions = np.arange(total, total + len(batch))
            total += len(batch)
            examples = [serving_input.encode_example(row, spec).SerializeToString()
                        for row in row_dicts]
            batch_tensor = tf.constant(examples)
            reference = _numpy(signatures[sig.PREDICT](examples=batch_tensor))
            outputs = outputs or sorted(reference)
            _compare(by_name[REFERENCE], reference, reference, positions, sources, tolerance)

            served = _numpy(signatures[sig.TRANSFORM_FEATURES](examples=batch_tensor))
            index, differs = beam_rows.match(served)
            _add_features(feature_report, beam_rows, served, beam, index, differs, positions,
                          sources)
            trained = {k: v[index] for k, v in beam_predictions.items() if k in reference}
            _compare(by_name["trained model on Beam features"], trained, reference, positions,
                     sources, tolerance)

            default_fn = partial(signatures[sig.DEFAULT_SERVING],
                                 **{_input_key(signatures[sig.DEFAULT_SERVING]): batch_tensor})
            _run_path(by_name[f"saved_model.load {sig.DEFAULT_SERVING}"],
                      lambda f=default_fn: _numpy(f()), reference, positions, sources,
                      tolerance, rename=default_head)
            if sig.PREDICT_RAW in signatures:
                _run_raw(by_name[f"saved_model.load {sig.PREDICT_RAW}"],
                         signatures[sig.PREDICT_RAW], row_dicts, reference, positions,
                         sources, tolerance)
            _run_path(by_name["TF1 session predict"], partial(session.predict, examples),
                      reference, positions, sources, tolerance)
            for s in servers:
                predict_name, default_name = s.names
                _run_path(by_name[predict_name], partial(s.predict, examples), reference,
                          positions, sources, tolerance)
                _run_path(by_name[default_name], partial(s.default, examples), reference,
                          positions, sources, tolerance, rename=default_head)
    finally:
        session.close()
        for s in servers:
            s.close()
    feature_report.rows = total
    if total == 0:
        raise CheckError(f"no eval rows to check in {config.data.eval!r}")
    return CheckReport(config.name, export_dir, tolerance, total, feature_report, paths, outputs)


def _method_name(export_dir: str, key: str) -> str:
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    return saved_model.meta_graphs[0].signature_def[key].method_name


def _input_key(function) -> str:
    (key,) = function.structured_input_signature[1]
    return key


def _batches(items: Iterator, size: int, limit: int | None) -> Iterator[list]:
    batch = []
    for n, item in enumerate(items):
        if limit is not None and n >= limit:
            break
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _trained_predictions(model: trainer.Model, beam: Mapping[str, np.ndarray],
                         batch_size: int) -> dict[str, np.ndarray]:
    """The trained model's ``predict`` outputs on every Beam-transformed eval row."""
    names = list(model.keras_model.input_names)
    missing = sorted(set(names) - set(beam))
    if missing:
        raise CheckError(f"the trained model takes {missing}, which the Beam output lacks")
    n = len(beam[names[0]]) if names else 0
    parts = []
    for start in range(0, n, max(batch_size, 1024)):
        features = {k: beam[k][start:start + max(batch_size, 1024)] for k in names}
        logits = model.keras_model(features, training=False)
        parts.append(_numpy(model.head.predictions(logits)))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def _add_features(report: FeatureReport, beam_rows: TransformedRows, served, beam, index,
                  differs, positions, sources) -> None:
    for name, diff in beam_rows.feature_diffs(served, index, beam).items():
        report.max_abs_diff[name] = max(report.max_abs_diff[name], diff)
    unmatched = differs.any(axis=1)
    report.unmatched_rows += int(unmatched.sum())
    for j, name in enumerate(beam_rows.names):
        report.differing_rows[name] += int(differs[:, j].sum())
    if unmatched.any() and report.first_differing_row is None:
        first = int(np.flatnonzero(unmatched)[0])
        report.first_differing_row = int(positions[first])
        report.first_differing_source = sources[first]
        # The first row's differing feature; among several, the one differing most often.
        names = [n for j, n in enumerate(beam_rows.names) if differs[first, j]]
        report.first_differing_feature = max(names, key=lambda n: differs[:, beam_rows.names
                                                                          .index(n)].sum())


def _run_raw(report, function, rows, reference, positions, sources, tolerance) -> None:
    """``predict_raw`` on the rows it takes, as the signature's inputs say
    (:func:`serving_input.raw_feature_spec_of`): every row, for an export whose nullable
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
    _run_path(report, lambda: _numpy(function(**tensors)),
              {k: v[takes] for k, v in reference.items()}, positions[takes],
              [s for s, ok in zip(sources, takes) if ok], tolerance)


def _run_path(report: PathReport, compute: Callable[[], Mapping], reference: Mapping,
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
            got = _as_predict_outputs(got, reference, rename)
        _compare(report, got, reference, positions, sources, tolerance)
    except Exception as err:  # a server down, a refused request: the path fails
        report.error = f"{type(err).__name__}: {err}"


# ---------------------------------------------------------------------- printing


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "differs"
    return "0" if value == 0 else f"{value:.1e}"


def format_report(report: CheckReport) -> str:
    """The report as text: the feature comparison, then one table row per path."""
    f = report.features
    lines = [
        f"tfbake check: {report.config_name}, export {report.export_dir}",
        f"{report.rows} eval rows, tolerance {report.tolerance:g} (|a - b| <= t * (1 + |b|))",
        "",
        f"transformed features, Beam output vs transform_features: {f.rows} rows, "
        f"{f.rows - f.unmatched_rows} paired with a Beam row ({f.beam_rows} in the Beam output)",
    ]
    width = max([len(n) for n in f.max_abs_diff] + [7])
    lines.append(f"  {'feature':<{width}}  {'max abs diff':>12}  {'rows differing':>14}")
    for name in f.max_abs_diff:
        lines.append(f"  {name:<{width}}  {_number(f.max_abs_diff[name]):>12}  "
                     f"{f.differing_rows[name]:>14}")
    if f.skipped_features:
        lines.append(f"  not compared (not dense): {', '.join(f.skipped_features)}")
    if f.ok:
        lines.append("  OK: every row has a Beam twin")
    else:
        lines.append(f'  SKEW: feature "{f.first_differing_feature}" differs first, in row '
                     f"{f.first_differing_row} ({f.first_differing_source}); "
                     f"{f.unmatched_rows} rows without a Beam twin")
    lines.append("")
    lines.append(f"predictions vs {REFERENCE} (max abs diff per output):")
    header = ["path", "rows", *report.outputs, "first differing row", "status"]
    table = [header]
    for p in report.paths:
        first = "-" if p.first_differing_row is None else (
            f"{p.first_differing_row} ({p.first_differing_source})")
        status = "OK" if p.ok else (
            "ERROR" if p.error else "SKEW" if p.differing_rows else "SKIPPED")
        table.append([p.name, str(p.rows),
                      *[_number(p.max_abs_diff.get(o)) for o in report.outputs], first, status])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        lines.append("  " + "  ".join(
            cell.ljust(w) if i == 0 or i >= len(header) - 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    for p in report.paths:
        if p.error:
            lines.append(f"  {p.name}: {p.error}")
        if p.skipped_rows:
            lines.append(f"  {p.name}: {p.skipped_rows} rows skipped: this export's predict_raw "
                         "has no input for a missing value or a list (export it again)"
                         + ("" if p.allow_skips else "; a skipped row fails the check unless "
                            "--allow-skips"))
    lines.append("")
    lines.append("OK" if report.ok else "FAILED: over tolerance (see above)")
    return "\n".join(lines)


def print_report(report: CheckReport, file: TextIO | None = None) -> None:
    """Prints :func:`format_report`."""
    print(format_report(report), file=file or sys.stdout)
