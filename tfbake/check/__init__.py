"""``tfbake check``: is the served model the trained model? The skew/parity report.

For the eval rows of a config (all of them, streamed in batches, or the first N):

- the raw rows become serialized ``tf.Example``s (``tf.SequenceExample``s for
  ``data.format: sequence_example``) and go through the export's
  ``predict`` signature (``tf.saved_model.load``): the reference answer;
- the export's ``transform_features`` on the same examples is compared with the Beam
  job's transformed eval data. Beam writes its output in no fixed order, so every row
  is paired with the Beam row whose transformed features match it
  (:class:`~tfbake.check.beam_rows.TransformedRows`); a row without a twin is
  training/serving skew, and the feature that differs is named;
- the paired Beam row through the trained model (what ``tfbake train`` evaluated),
  ``predict_raw`` on raw columns, ``serving_default``, the TF1 session loader (how
  TF Serving loads), and, given a live server, its REST and gRPC answers (``predict``
  and ``classify``/``regress``) are each compared with the reference.

A value differs when ``|a - b| > tolerance * (1 + |b|)``: absolute near zero, relative
for large outputs (a regressor in the user's units). :func:`check` returns a
:class:`~tfbake.check.report.CheckReport`; :func:`format_report` prints it as a
table. The report is :mod:`tfbake.check.report`, the row matching
:mod:`tfbake.check.beam_rows`, the paths :mod:`tfbake.check.paths`.
"""

from __future__ import annotations

import glob
import itertools
from collections.abc import Iterator
from functools import partial

import numpy as np
import tensorflow as tf

from tfbake import serving_input, stages, trainer
from tfbake.check import paths
from tfbake.check.beam_rows import TransformedRows, read_transformed_eval
from tfbake.check.report import (
    REFERENCE,
    CheckError,
    CheckReport,
    FeatureReport,
    PathReport,
    compare,
    format_report,
    print_report,
)
from tfbake.config import Config
from tfbake.serving_input import signatures as sig
from tfbake.serving_input.raw_rows import read_raw_rows

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TOLERANCE",
    "REFERENCE",
    "CheckError",
    "CheckReport",
    "FeatureReport",
    "PathReport",
    "TransformedRows",
    "check",
    "format_report",
    "iter_eval_rows",
    "print_report",
]

DEFAULT_TOLERANCE = 1e-5
DEFAULT_BATCH_SIZE = 256
TRAINED = "trained model on Beam features"
TF1_SESSION = "TF1 session predict"


def iter_eval_rows(config: Config) -> Iterator[tuple[dict, str]]:
    """The eval rows as raw feature dicts of the served features (labels and
    ``serving: false`` columns removed), with ``file:line`` (``file#record``).

    Rows the Beam job rejects (they are not in its output) are skipped.
    """
    spec = config.raw_feature_spec()
    served = config.serving_features()
    files = sorted(glob.glob(config.data.eval))
    if not files:
        raise CheckError(f"data.eval: no file matches {config.data.eval!r}")
    for path in files:
        rows = read_raw_rows(path, spec, data_format=config.data.format,
                             csv_format=config.data.csv, list_features=config.list_columns())
        for row, source in rows:
            yield {k: v for k, v in row.items() if k in served}, source


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
    signatures = tf.saved_model.load(export_dir).signatures
    for key in (sig.PREDICT, sig.TRANSFORM_FEATURES):
        if key not in signatures:
            raise CheckError(
                f"{export_dir} has no {key!r} signature (it has {sorted(signatures)}); "
                "check needs an export made with a parsing serving_input_fn"
            )
    default_method = paths.method_name(export_dir, sig.DEFAULT_SERVING)
    servers = [
        paths.ServerPaths(url, protocol, model_name or config.name, default_method, batch_size)
        for url, protocol in ((server, "rest"), (grpc_target, "grpc")) if url
    ]
    run = _Run(config, signatures, model, servers, paths.TF1Session(export_dir), tolerance,
               batch_size, allow_skips, default_method)
    total = 0
    try:
        for batch in _batches(itertools.islice(iter_eval_rows(config), rows), batch_size):
            run.compare_batch(batch, np.arange(total, total + len(batch)))
            total += len(batch)
    finally:
        run.close()
    run.features.rows = total
    if total == 0:
        raise CheckError(f"no eval rows to check in {config.data.eval!r}")
    return CheckReport(config.name, export_dir, tolerance, total, run.features,
                       list(run.reports.values()), run.outputs)


class _Run:
    """One check under way: the paths' reports, filled a batch of eval rows at a time."""

    def __init__(self, config: Config, signatures, model: trainer.Model, servers: list,
                 session: paths.TF1Session, tolerance: float, batch_size: int,
                 allow_skips: bool, default_method: str):
        self.signatures, self.servers, self.session = signatures, servers, session
        self.tolerance = tolerance
        self.spec = stages.serving_feature_spec(config)
        self.feature_lists = config.serving_feature_lists()
        # A classify/regress serving_default is compared under the predict output names
        # (a multi-head model's is its first head's: "<head>/..."); a predicting one (a
        # tagging export) as it is.
        self.default_head = None if default_method == sig.PREDICT_METHOD else (
            f"{config.label_keys[0]}/" if config.labels is not None else "")
        self.beam, skipped = read_transformed_eval(config, model.tft_output)
        self.beam_rows = TransformedRows(self.beam, tolerance)
        self.beam_predictions = paths.trained_predictions(model, self.beam, batch_size)
        names = self.beam_rows.names
        self.features = FeatureReport(beam_rows=self.beam_rows.rows, skipped_features=skipped,
                                      max_abs_diff={n: 0.0 for n in names},
                                      differing_rows={n: 0 for n in names})
        names = [TRAINED, REFERENCE, f"saved_model.load {sig.DEFAULT_SERVING}"]
        if sig.PREDICT_RAW in signatures:
            names.append(f"saved_model.load {sig.PREDICT_RAW}")
        names.append(TF1_SESSION)
        names += [name for s in servers for name in s.names]
        self.reports = {name: PathReport(name, allow_skips=allow_skips) for name in names}
        self.outputs: list[str] = []

    def compare_batch(self, batch: list[tuple[dict, str]], positions: np.ndarray) -> None:
        """Every path on one batch of ``(row, source)``, compared with the reference."""
        rows = [row for row, _ in batch]
        sources = [source for _, source in batch]
        examples = serving_input.serialize_examples(rows, self.spec, self.feature_lists)
        tensor = tf.constant(examples)
        signatures, reports = self.signatures, self.reports
        reference = paths.as_arrays(signatures[sig.PREDICT](examples=tensor))
        self.outputs = self.outputs or sorted(reference)
        where = (reference, positions, sources, self.tolerance)
        compare(reports[REFERENCE], reference, *where)

        served = paths.as_arrays(signatures[sig.TRANSFORM_FEATURES](examples=tensor))
        index, differs = self.beam_rows.match(served)
        _add_features(self.features, self.beam_rows, served, self.beam, index, differs,
                      positions, sources)
        trained = {k: v[index] for k, v in self.beam_predictions.items() if k in reference}
        compare(reports[TRAINED], trained, *where)

        default = signatures[sig.DEFAULT_SERVING]
        default_inputs = {paths.input_key(default): tensor}
        paths.run_path(reports[f"saved_model.load {sig.DEFAULT_SERVING}"],
                       lambda: paths.as_arrays(default(**default_inputs)), *where,
                       rename=self.default_head)
        if sig.PREDICT_RAW in signatures:
            paths.run_raw(reports[f"saved_model.load {sig.PREDICT_RAW}"],
                          signatures[sig.PREDICT_RAW], rows, *where)
        paths.run_path(reports[TF1_SESSION], partial(self.session.predict, examples), *where)
        for s in self.servers:
            predict_name, default_name = s.names
            paths.run_path(reports[predict_name], partial(s.predict, examples), *where)
            paths.run_path(reports[default_name], partial(s.default, examples), *where,
                           rename=self.default_head)

    def close(self) -> None:
        """Closes the TF1 session and the server clients."""
        self.session.close()
        for s in self.servers:
            s.close()


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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
