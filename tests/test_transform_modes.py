"""tf.Transform's two modes make the same job.

The job runs tf.Transform in TF1 graph mode when the ``preprocessing_fn`` traces there
(one trace for the whole job) and in TF2 mode when it only traces as a ``tf.function``.
The same function runs both ways here (``tests/custom_preprocessing/modes.py``), beside
declared steps and a class label: the transformed data, the saved transform graph
pruned for serving (``TransformGraph``), the export's ``transform_features`` and
tf.Transform's own ``TransformDataset`` must agree, though the two ``transform_fn``s
are different kinds of SavedModel.
"""

from __future__ import annotations

import glob
import random
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import tf_keras
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from tests.custom_preprocessing import modes
from tfbake import serving_input, stages, trainer, transform
from tfbake.config import config_from_dict
from tfbake.serving_input.csv_format import CsvFormat
from tfbake.serving_input.transform_graph import TransformGraph, tf1_signature
from tfbake.transform.csv_source import CsvRowDecoder, arrow_schema, raw_adapter_config
from tfbake.transform.unknown_labels import CountUnknownLabels, unknown_label_counts

FUNCTIONS = {
    "tf1": "tests.custom_preprocessing.modes:preprocessing_fn",
    "tf2": "tests.custom_preprocessing.modes:tf2_only_preprocessing_fn",
}
WORDS = ["good", "bad", "fine", "slow", "Tasty", "cold"]


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "x": None if i % 7 == 0 else round(rng.gauss(5, 2), 3),
            "c": rng.choice("abc"),
            "review": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))),
            "y": rng.choice("pq"),
        }
        for i in range(n)
    ]


def _csv(rows: list[dict]) -> str:
    lines = ["x,c,review,y"] + [
        f"{'NA' if r['x'] is None else r['x']},{r['c']},{r['review']},{r['y']}" for r in rows
    ]
    return "\n".join(lines) + "\n"


def _export(config, export_dir_base) -> str:
    """A real export around a model that reads one feature (no training needed)."""
    output = tft.TFTransformOutput(config.transform_dir)
    inputs = {"x": tf_keras.Input(shape=(), name="x")}
    logits = tf_keras.layers.Dense(2)(tf_keras.layers.Reshape((1,))(inputs["x"]))
    head = trainer.ClassificationHead(output.vocabulary_by_name("y"))
    model = trainer.Model(tf_keras.Model(inputs, logits), head, output, "y")
    return model.export_saved_model(
        str(export_dir_base),
        serving_input.build_parsing_serving_input_fn(stages.serving_feature_spec(config)),
    )


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("modes")
    train, evaluation = _rows(80, 1), _rows(20, 2)
    (tmp / "train.csv").write_text(_csv(train))
    (tmp / "eval.csv").write_text(_csv(evaluation))
    result = {"rows": evaluation}
    for mode, function in FUNCTIONS.items():
        config = config_from_dict(
            {
                "name": f"modes_{mode}",
                "artifacts": str(tmp / mode),
                "data": {"train": str(tmp / "train.csv"), "eval": str(tmp / "eval.csv")},
                "features": {
                    "x": {"type": "float", "nullable": True},
                    "c": {"type": "string"},
                    "review": {"type": "string"},
                },
                "label": {"name": "y"},
                "preprocessing": {
                    "x": {"impute": "mean", "scale": "z_score"},
                    "c": {"vocabulary": {"num_oov_buckets": 1}},
                },
                "preprocessing_fn": function,
            }
        )
        modes.CALLS.clear()
        stages.run_transform(config)
        result[mode] = {
            "config": config,
            "traces": len(modes.CALLS),
            "export": _export(config, tmp / mode / "export"),
        }
    return result


def _transformed(transform_dir: str, split: str) -> list[tuple]:
    """The split's transformed rows (values in feature name order), sorted."""
    spec = tft.TFTransformOutput(transform_dir).transformed_feature_spec()
    files = glob.glob(transform.data_pattern(transform_dir, split))
    records = tf.constant(
        [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    )
    parsed = {name: value.numpy() for name, value in tf.io.parse_example(records, spec).items()}
    names = sorted(parsed)
    assert names == sorted(["x", "c", "custom_length_z", "custom_words", "y"])
    rows = zip(*(parsed[name].reshape(len(records), -1).tolist() for name in names))
    # Float sums depend on batching: rows are sorted and compared on rounded values.
    return sorted(tuple(round(v, 4) for column in row for v in column) for row in rows)


def test_each_mode_writes_its_kind_of_transform_fn(jobs):
    signatures = {
        mode: set(
            tf.saved_model.load(
                transform.transform_fn_dir(jobs[mode]["config"].transform_dir)
            ).signatures
        )
        for mode in FUNCTIONS
    }
    assert "transform_signature" in signatures["tf1"]  # a TF1 graph's signature
    assert "transform_signature" not in signatures["tf2"]  # a tf.function


def test_a_tf1_job_traces_the_function_once(jobs):
    assert jobs["tf1"]["traces"] == 1
    assert jobs["tf2"]["traces"] > 1  # TF2 mode traces again for each SavedModel


@pytest.mark.parametrize("split", ["train", "eval"])
def test_both_modes_write_the_same_transformed_data(jobs, split):
    tf1, tf2 = (_transformed(jobs[mode]["config"].transform_dir, split) for mode in FUNCTIONS)
    assert len(tf1) == {"train": 80, "eval": 20}[split]
    np.testing.assert_allclose(np.array(tf1), np.array(tf2), rtol=1e-5, atol=1e-4)


def test_the_pruned_transform_graphs_agree(jobs):
    rows = jobs["rows"]
    raw = {
        "c": tf.constant([r["c"] for r in rows]),
        "review": tf.constant([r["review"] for r in rows]),
    }
    outputs = {}
    for mode in FUNCTIONS:
        graph = TransformGraph(transform.transform_fn_dir(jobs[mode]["config"].transform_dir))
        sources = graph.output_sources()
        assert sources["custom_words"] == {"review"} and sources["c"] == {"c"}
        fetches = {name: graph.outputs[name] for name in ("c", "custom_length_z", "custom_words")}
        outputs[mode] = {k: v.numpy() for k, v in graph.prune(raw, fetches)(raw).items()}
        with pytest.raises(ValueError, match='"x" needs raw column'):
            graph.prune(["c"], {"x": graph.outputs["x"]})
    for name, value in outputs["tf1"].items():
        np.testing.assert_allclose(value, outputs["tf2"][name], rtol=1e-5, err_msg=name)


def test_both_exports_transform_requests_the_same(jobs):
    rows = jobs["rows"]
    config = jobs["tf1"]["config"]
    spec = stages.serving_feature_spec(config)
    examples = tf.constant(
        [
            serving_input.encode_example(
                {k: v for k, v in row.items() if k != "y" and v is not None}, spec
            ).SerializeToString()
            for row in rows
        ]
    )
    served = {}
    for mode in FUNCTIONS:
        signature = tf.saved_model.load(jobs[mode]["export"]).signatures["transform_features"]
        served[mode] = {k: v.numpy() for k, v in signature(examples=examples).items()}
    assert set(served["tf1"]) == {"x", "c", "custom_length_z", "custom_words"}
    for name, value in served["tf1"].items():
        np.testing.assert_allclose(value, served["tf2"][name], rtol=1e-5, err_msg=name)


def _rounded_row(instance: dict, names: list[str]) -> tuple:
    return tuple(round(float(v), 4) for name in names for v in np.ravel(instance[name]))


def test_tf_transforms_own_transform_dataset_applies_either_in_its_mode(jobs):
    """The recipe docs/retraining.md gives for a Beam job of the user's own."""
    rows = jobs["rows"]
    for mode in FUNCTIONS:
        out = jobs[mode]["config"].transform_dir
        output = tft.TFTransformOutput(out)
        instances = [
            {
                "x": [] if r["x"] is None else [r["x"]],
                "c": r["c"].encode(),
                "review": r["review"].encode(),
                "y": r["y"].encode(),
            }
            for r in rows
        ]
        tf1 = tf1_signature(transform.transform_fn_dir(out)) is not None
        assert tf1 == (mode == "tf1")
        with beam.Pipeline() as pipeline, tft_beam.Context(
            temp_dir=str(Path(out) / "own_job"), force_tf_compat_v1=tf1
        ):
            transform_fn = pipeline | tft_beam.ReadTransformFn(out)
            raw = pipeline | beam.Create(instances)
            transformed, _ = ((raw, output.raw_metadata), transform_fn) | (
                tft_beam.TransformDataset()
            )
            names = sorted(output.transformed_feature_spec())
            as_rows = transformed | beam.Map(_rounded_row, names)
            assert_that(
                as_rows, equal_to(_transformed(out, "eval")),
            )


def test_both_modes_count_eval_labels_that_are_no_training_class(jobs):
    """The job's check of eval labels loads either kind of ``transform_fn`` its own way
    (a TF1 graph in a session, a ``tf.function`` pruned); both find the same values."""
    rows = jobs["rows"][:6] + [
        dict(jobs["rows"][0], y="zebra"), dict(jobs["rows"][1], y="p."),
        dict(jobs["rows"][2], y="zebra"),
    ]
    lines = _csv(rows).splitlines()
    for mode in FUNCTIONS:
        config = jobs[mode]["config"]
        spec = config.raw_feature_spec()
        decoder = CsvRowDecoder(spec, lines[0].split(","), CsvFormat())
        batch, rejects = decoder.decode_block(lines[1:], arrow_schema(spec))
        assert not rejects
        pipeline = beam.Pipeline(runner=FnApiRunner())
        transform_fn = pipeline | "TransformFn" >> beam.Create(
            [transform.transform_fn_dir(config.transform_dir)]
        )
        _ = pipeline | beam.Create([batch]) | CountUnknownLabels(
            "eval", ["y"], raw_adapter_config(spec), transform_fn
        )
        result = pipeline.run()
        result.wait_until_finish()
        assert unknown_label_counts(result) == {("eval", "y"): {"zebra": 2, "p.": 1}}, mode
