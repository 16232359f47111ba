"""The job's splits share one loaded transform_fn graph per process
(``transform.shared_graph``): tf.Transform's own count of graph loads goes down by one
per split that shares, and each split's output is what its own graph gives."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from tensorflow_transform.beam.common import METRICS_NAMESPACE

from tfbake.transform.beam_overhead import cut_overhead
from tfbake.transform.csv_source import arrow_schema, raw_adapter_config
from tfbake.transform.shared_graph import share_loaded_graph

SPEC = {"x": tf.io.FixedLenFeature([], tf.float32), "w": tf.io.FixedLenFeature([], tf.string)}


def _preprocessing_fn(inputs):
    return {"x": tft.scale_to_z_score(inputs["x"]),
            "w": tft.compute_and_apply_vocabulary(inputs["w"])}


def _batch(xs: list[float]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {"x": [[x] for x in xs], "w": [[b"a" if x > 2 else b"b"] for x in xs]},
        schema=arrow_schema(SPEC),
    )


def _rows(batch: pa.RecordBatch) -> list[tuple]:
    """(x, w) per row of a transformed batch (a list of one value per cell)."""
    return [(round(x, 4), w) for [x], [w] in
            zip(batch.column("x").to_pylist(), batch.column("w").to_pylist())]


def test_splits_share_one_loaded_graph_and_transform_as_their_own(tmp_path):
    cut_overhead()  # the job's Beam
    config = raw_adapter_config(SPEC)
    other_config = raw_adapter_config(SPEC)  # equal, but another object: not shared
    splits = {"TransformTrain": [1.0, 2.0, 3.0, 6.0], "TransformEval": [3.0, 1.0],
              "TransformValidation": [6.0]}
    # z-scores over the training data (mean 3, variance 3.5) and the vocabulary
    # (a: 3.0 and 6.0, b: 1.0 and 2.0; tie broken by the bytes, b first).
    expected = {label: [(round((x - 3.0) / 3.5 ** 0.5, 4), 1 if x > 2 else 0) for x in xs]
                for label, xs in splits.items()}
    with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=True):
        pipeline = beam.Pipeline(runner=FnApiRunner())
        train = pipeline | "Train" >> beam.Create([_batch(splits["TransformTrain"])])
        transform_fn = (train, config) | tft_beam.AnalyzeDataset(_preprocessing_fn)
        for label, xs in splits.items():
            data = pipeline | f"Read{label}" >> beam.Create([_batch(xs)])
            inputs_config = other_config if label == "TransformValidation" else config
            (batches, _) = ((data, inputs_config), transform_fn) | label >> (
                tft_beam.TransformDataset(output_record_batches=True))
            rows = batches | f"Rows{label}" >> beam.FlatMap(lambda b: _rows(b[0]))
            assert_that(rows, equal_to(expected[label]), label=f"Check{label}")
        assert share_loaded_graph(pipeline, list(splits)) == 2
        result = pipeline.run()
        result.wait_until_finish()
    loads = result.metrics().query(
        MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name("graph_load_seconds")
    )["distributions"]
    # One graph for the analyzers' inputs, one shared by train and eval, one for the
    # split with its own input config (each Transform loads its own without sharing).
    assert sum(d.committed.count for d in loads) == 3
