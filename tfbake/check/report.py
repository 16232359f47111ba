"""The parity report of ``tfbake check``: what each path found, the value comparison
(``|a - b| <= tolerance * (1 + |b|)``, NaN equal to NaN) and the table it prints."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping
from typing import TextIO

import numpy as np

from tfbake.model_server.ragged import cut_rows, token_counts

# The answer every path is compared with.
REFERENCE = "saved_model.load predict"


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


def rows_differ(got: np.ndarray, want: np.ndarray, tolerance: float) -> np.ndarray:
    """Per-row (first axis) whether any value is over tolerance; NaN equals NaN."""
    n = len(want)
    got, want = got.reshape(n, -1), want.reshape(n, -1)
    if want.dtype == object or want.dtype.kind in "SU":
        return (got != want).any(axis=1)
    a, b = got.astype(np.float64), want.astype(np.float64)
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= tolerance * (1 + np.abs(b))
    return ~(close | (np.isnan(a) & np.isnan(b))).all(axis=1)


def abs_diff(got: np.ndarray, want: np.ndarray) -> float:
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


def compare(
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
    per_token = token_counts(want)
    for name, value in got.items():
        value = np.asarray(value)
        if len(value) != len(positions):
            raise CheckError(
                f"{report.name}: output {name!r} has {len(value)} rows, expected {len(positions)}"
            )
        if name in per_token:
            row_differs, diff = _per_token_diff(value, want[name], per_token[name], tolerance)
        else:
            row_differs, diff = rows_differ(value, want[name], tolerance), abs_diff(
                value, want[name])
        differs |= row_differs
        report.max_abs_diff[name] = max(report.max_abs_diff.get(name, 0.0), diff)
    report.differing_rows += int(differs.sum())
    if differs.any() and report.first_differing_row is None:
        first = int(np.flatnonzero(differs)[0])
        report.first_differing_row = int(positions[first])
        report.first_differing_source = sources[first]


def _per_token_diff(got: np.ndarray, want: np.ndarray, counts: np.ndarray,
                    tolerance: float) -> tuple[np.ndarray, float]:
    """A per-token output compared over each row's own tokens (``counts``, the
    reference's): the padding after them depends on the batch's longest row, and a
    client may answer the rows already cut (an object array of rows)."""
    cut = got if got.dtype == object and got.ndim == 1 else cut_rows(got, counts)
    differs = np.zeros(len(want), dtype=bool)
    largest = 0.0
    for i, (row, expected) in enumerate(zip(cut, cut_rows(want, counts))):
        row = np.asarray(row)
        if row.shape != expected.shape:
            differs[i], largest = True, math.inf
        elif len(expected):
            differs[i] = rows_differ(row[None], expected[None], tolerance)[0]
            largest = max(largest, abs_diff(row[None], expected[None]))
    return differs, largest


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
