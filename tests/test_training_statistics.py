"""Training statistics of a few rows made here, merged as the Beam combiner merges them,
against values counted by hand."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest
import tensorflow as tf

from serving_input.training_statistics import (
    common_stats,
    features_by_name,
    quantile_bounds,
    vocabulary,
)
from transform.statistics import accumulate

SPEC = {
    "color": tf.io.FixedLenFeature([], tf.string),
    "note": tf.io.VarLenFeature(tf.string),
    "size": tf.io.VarLenFeature(tf.float32),
}


def _batch(colors, notes, sizes) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([[c] for c in colors], pa.large_list(pa.large_binary())),
         pa.array([None if n is None else [n] for n in notes], pa.large_list(pa.large_binary())),
         pa.array([None if s is None else [s] for s in sizes], pa.large_list(pa.float32()))],
        ["color", "note", "size"],
    )


@pytest.fixture(scope="module")
def statistics():
    first = accumulate(SPEC, [_batch([b"red", b"red", b"blue"], [b"a", b"b", None],
                                     [1.0, None, float("nan")])], top_k=3)
    second = accumulate(SPEC, [_batch([b"red", b"green"], [b"c", b"d"], [4.0, -2.0])], top_k=3)
    # The Beam runner pickles accumulators between stages.
    merged = pickle.loads(pickle.dumps(first)).merge(pickle.loads(pickle.dumps(second)))
    return features_by_name(merged.proto().datasets[0])


def test_a_small_vocabulary_is_kept_whole_with_counts(statistics):
    color = statistics["color"]
    assert {v.value: v.frequency for v in color.string_stats.top_values} == {
        "red": 3, "blue": 1, "green": 1}
    assert vocabulary(color) == {b"red", b"blue", b"green"}


def test_more_values_than_top_k_is_no_vocabulary(statistics):
    note = statistics["note"]
    assert note.string_stats.unique == 4
    assert vocabulary(note) is None
    assert common_stats(note).num_missing == 1


def test_numbers_leave_out_nan_and_count_it(statistics):
    size = statistics["size"].num_stats
    assert (size.min, size.max, size.mean) == (-2.0, 4.0, 1.0)
    assert size.histograms[0].num_nan == 1
    assert (common_stats(statistics["size"]).num_non_missing,
            common_stats(statistics["size"]).num_missing) == (4, 1)
    bounds = quantile_bounds(statistics["size"])
    assert bounds[0] == -2.0 and bounds[-1] == 4.0
