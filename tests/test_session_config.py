"""tf.Transform's sessions in a local job run without Grappler
(``transform.session_config``): each step gets the config, the graphs give the values
they give with it (z-scores, buckets and vocabulary ids worked out here), and
tf.Transform's own configs are back after the job is built."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from tensorflow_transform.beam import impl as tft_impl

from tfbake.transform.beam_overhead import cut_overhead
from tfbake.transform.csv_source import arrow_schema, raw_adapter_config
from tfbake.transform.session_config import as_built, graphs_run_as_built
from tfbake.transform.shared_graph import graph_steps

SPEC = {"x": tf.io.FixedLenFeature([], tf.float32), "w": tf.io.FixedLenFeature([], tf.string)}
XS = [1.0, 2.0, 3.0, 6.0]


def _preprocessing_fn(inputs):
    return {
        "z": tft.scale_to_z_score(inputs["x"]),
        "bucket": tft.bucketize(inputs["x"], num_buckets=2),
        "w": tft.compute_and_apply_vocabulary(inputs["w"]),
    }


def _rows(batch: pa.RecordBatch) -> list[tuple]:
    columns = [batch.column(name).to_pylist() for name in ("z", "bucket", "w")]
    return [(round(z, 5), bucket, w) for [z], [bucket], [w] in zip(*columns)]


def test_graphs_run_as_built_give_their_values(tmp_path):
    cut_overhead()  # the job's Beam
    configs = tft_impl._DEFAULT_TENSORFLOW_CONFIG_BY_BEAM_RUNNER_TYPE  # noqa: SLF001
    before = {runner: config for runner, config in configs.items()}
    batch = pa.RecordBatch.from_pydict(
        {"x": [[x] for x in XS], "w": [[b"a" if x > 2 else b"b"] for x in XS]},
        schema=arrow_schema(SPEC),
    )
    mean, std = 3.0, 3.5 ** 0.5
    # Two buckets split at the median (2 or 3: either puts 1 and 2 below it); "a" and
    # "b" twice each, the tie broken by their bytes, "b" first.
    expected = [(round((x - mean) / std, 5), int(x > 2), int(x > 2)) for x in XS]
    with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=True), \
            graphs_run_as_built():
        pipeline = beam.Pipeline(runner=FnApiRunner())
        data = pipeline | beam.Create([batch])
        config = raw_adapter_config(SPEC)
        transform_fn = (data, config) | tft_beam.AnalyzeDataset(_preprocessing_fn)
        (batches, _) = ((data, config), transform_fn) | tft_beam.TransformDataset(
            output_record_batches=True)
        assert_that(batches | beam.FlatMap(lambda b: _rows(b[0])), equal_to(expected))
        steps = [step.transform.fn._tf_config for step in graph_steps(pipeline)]  # noqa: SLF001
        pipeline.run().wait_until_finish()
    # The analyzers' inputs and the transform_fn, each with Grappler off and
    # tf.Transform's own settings kept.
    assert len(steps) == 2
    for step in steps:
        assert step.graph_options.rewrite_options.disable_meta_optimizer
        assert step.intra_op_parallelism_threads == before[FnApiRunner].intra_op_parallelism_threads
    assert configs == before
    assert not configs[FnApiRunner].graph_options.rewrite_options.disable_meta_optimizer


@pytest.mark.parametrize("config", [None, tf.compat.v1.ConfigProto(inter_op_parallelism_threads=3)])
def test_as_built_keeps_the_rest_of_a_config(config):
    built = as_built(config)
    assert built.graph_options.rewrite_options.disable_meta_optimizer
    assert built.inter_op_parallelism_threads == (config.inter_op_parallelism_threads
                                                  if config else 0)
