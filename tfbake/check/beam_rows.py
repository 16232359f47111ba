"""The Beam job's transformed eval rows, read back and found again by their values.

Beam writes its output in no fixed order, so ``tfbake check`` pairs each row the
export's ``transform_features`` made with the Beam row whose transformed features
match it (:class:`TransformedRows`); a row without a twin is training/serving skew.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from tfbake import transform
from tfbake.check.report import CheckError, abs_diff
from tfbake.config import Config

# Beam rows are looked up by their features rounded to this grid; values that
# straddle a grid line fall back to a full scan, so it only affects speed.
_GRID = 1e-3


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
        return {name: abs_diff(np.asarray(served[name]), np.asarray(beam[name])[index])
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
