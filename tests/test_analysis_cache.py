"""The analysis cache over training spans, on small spans made here.

Six jobs share one cache, five of them real Beam runs: day 1 alone (cold); days 1 and 2
(day 1 from the cache); the same again (nothing changed: the output is kept, no Beam
run); days 1 and 2 with other eval data (every statistic from the cache, the data
transformed again); days 1 and 2 without a cache (the reference full run); and days 1
and 2 after the user's ``preprocessing_fn`` changed its body under the same name
(``x * 2.0`` -> ``x + 2.0``: tf.Transform's own cache key is the same for both, so
without the analyzer fingerprint the stale mean would be reused).
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import os
import random
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

import transform
from tfbake import stages
from tfbake.config import config_from_dict
from transform.analysis_cache import trace_analyzers
from transform.job_record import JobRecord

HEADER = "x,n,c,y"
FN_MODULE = "span_cache_fns"
FN_SOURCE = """
import tensorflow as tf
import tensorflow_transform as tft


def preprocessing_fn(inputs):
    n = tf.cast(inputs["n"], tf.float32)
    return {"n_stat": tf.fill(tf.shape(n), tft.mean(n {op} 2.0, name="n_stat"))}
"""


def _day(seed: int, colors: str) -> list[str]:
    rng = random.Random(seed)
    rows = []
    for i in range(120):
        x = "NA" if i % 11 == 0 else f"{rng.gauss(seed, 2):.3f}"
        rows.append(f"{x},{rng.randint(0, 40)},{rng.choice(colors)},{rng.choice('pq')}")
    return rows


def _write_fn(directory, op: str) -> None:
    package = directory / FN_MODULE
    shutil.rmtree(package / "__pycache__", ignore_errors=True)  # no stale bytecode
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "features.py").write_text(FN_SOURCE.replace("{op}", op))
    importlib.invalidate_caches()
    if f"{FN_MODULE}.features" in sys.modules:
        importlib.reload(sys.modules[f"{FN_MODULE}.features"])


@dataclasses.dataclass
class Output:
    """What one run left: the cache report, the transform_fn's files (path -> bytes),
    and the transformed training rows (columns in name order), sorted."""

    report: dict | None
    files: dict[str, bytes]
    columns: list[str]
    rows: np.ndarray

    def column(self, name: str) -> np.ndarray:
        return self.rows[:, self.columns.index(name)]


def _output(config) -> Output:
    out = config.transform_dir
    tft_output = tft.TFTransformOutput(out)
    spec = tft_output.transformed_feature_spec()
    files = {}
    transform_fn = transform.transform_fn_dir(out)
    for path in glob.glob(os.path.join(transform_fn, "**"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                files[os.path.relpath(path, transform_fn)] = f.read()
    records = tf.data.TFRecordDataset(
        glob.glob(transform.data_pattern(out, "train")), compression_type="GZIP"
    )
    rows = [
        [float(v) for _, v in sorted(tf.io.parse_single_example(r, spec).items())] for r in records
    ]
    report = stages.analysis_cache_report(config)
    return Output(report, files, sorted(spec), np.array(sorted(rows)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spans")
    days = {"day1": _day(1, "abc"), "day2": _day(5, "bcd")}
    for name, rows in days.items():
        (tmp / f"{name}.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    _write_fn(tmp, "*")
    sys.path.insert(0, str(tmp))

    def config(*names, evaluation="day1"):
        return config_from_dict(
            {
                "name": "spans",
                "artifacts": str(tmp / "artifacts"),
                "data": {
                    "train": [str(tmp / f"{d}.csv") for d in names],
                    "eval": str(tmp / f"{evaluation}.csv"),
                },
                "features": {
                    "x": {"type": "float", "nullable": True},
                    "n": {"type": "int"},
                    "c": {"type": "string"},
                },
                "label": {"name": "y"},
                "preprocessing_fn": f"{FN_MODULE}.features:preprocessing_fn",
                "preprocessing": {
                    "x": {"impute": "mean", "scale": "z_score"},
                    "n": {"bucketize": {"num_buckets": 4}},
                    "c": {"vocabulary": {"num_oov_buckets": 1}},
                },
            }
        )

    both = config("day1", "day2")
    result = {}
    try:
        stages.run_transform(config("day1"))
        result["day1"] = _output(config("day1"))
        stages.run_transform(both)
        result["added_day2"] = _output(both)
        stages.run_transform(both)
        result["unchanged"] = _output(both)
        other_eval = config("day1", "day2", evaluation="day2")
        stages.run_transform(other_eval)
        result["other_eval"] = _output(other_eval)
        transform.run(dataclasses.replace(stages.transform_job(both), analysis_cache_dir=None))
        result["full"] = _output(both)
        _write_fn(tmp, "+")
        stages.run_transform(both)
        result["changed_fn"] = _output(both)
    finally:
        sys.path.remove(str(tmp))
    result["n"] = np.array([int(row.split(",")[1]) for rows in days.values() for row in rows])
    return result


def _spans(output: Output) -> dict[str, dict]:
    return {os.path.basename(s["span"]): s for s in output.report["spans"]}


def test_a_new_span_is_the_only_one_analyzed(runs):
    first = _spans(runs["day1"])["day1.csv"]
    assert first["analyzed"] and first["entries_read"] == 0 and first["entries_written"] > 0
    spans = _spans(runs["added_day2"])
    assert not spans["day1.csv"]["analyzed"]
    assert spans["day1.csv"]["entries_read"] == first["entries_written"]
    assert spans["day2.csv"]["analyzed"] and spans["day2.csv"]["entries_written"] > 0


def test_a_new_span_from_the_cache_equals_a_full_run(runs):
    """Vocabularies (with their counts) byte for byte; means, variances and quantile
    buckets within float rounding (on data this small the quantile sketch is exact)."""
    cached, full = runs["added_day2"], runs["full"]
    assert full.report is None  # no cache at all
    assets = sorted(k for k in full.files if k.startswith("assets/"))
    assert assets and assets == sorted(k for k in cached.files if k.startswith("assets/"))
    for name in assets:
        assert cached.files[name] == full.files[name], name
    np.testing.assert_allclose(cached.rows, full.rows, rtol=1e-6, atol=1e-6)


def test_an_unchanged_rerun_keeps_the_output_byte_for_byte(runs):
    before, rerun = runs["added_day2"], runs["unchanged"]
    assert rerun.report["up_to_date"]
    assert not any(s["analyzed"] or s["entries_written"] for s in _spans(rerun).values())
    assert rerun.files == before.files and rerun.files["saved_model.pb"]
    np.testing.assert_array_equal(rerun.rows, before.rows)


def test_a_rerun_on_the_same_training_spans_analyzes_nothing_and_writes_the_same(runs):
    """Other eval data: the job runs, every statistic comes from the cache. Its
    saved_model.pb differs from the last one only by TensorFlow's function names (a
    process-wide counter), so the transform_fn's vocabularies and variables are compared
    as bytes and its result on the training data exactly."""
    before, rerun = runs["added_day2"], runs["other_eval"]
    spans = _spans(rerun)
    assert not rerun.report["up_to_date"]
    assert not any(s["analyzed"] or s["entries_written"] for s in spans.values())
    for name, span in spans.items():
        cached = _spans(before)[name]  # what the cache held after that run
        assert span["entries_read"] == cached["entries_read"] + cached["entries_written"], name
    content = {k: v for k, v in before.files.items() if k.startswith(("assets/", "variables/"))}
    assert content and all(rerun.files[k] == v for k, v in content.items())
    np.testing.assert_array_equal(rerun.rows, before.rows)


def test_a_changed_preprocessing_fn_body_under_the_same_name_misses(runs):
    """x * 2.0 and x + 2.0 have the same tf.Transform cache key; the fingerprint tells
    them apart, so only that analyzer runs again, over every span, and the result is the
    new mean."""
    spans = _spans(runs["changed_fn"])
    before = _spans(runs["other_eval"])
    for name, span in spans.items():
        assert span["analyzed"], name
        assert span["entries_written"] == 1, name  # the n_stat mean, nothing else
        assert span["entries_read"] == before[name]["entries_read"] - 1, name
    mean = runs["n"].mean()
    np.testing.assert_allclose(runs["changed_fn"].column("n_stat"), mean + 2.0, rtol=1e-6)
    np.testing.assert_allclose(runs["other_eval"].column("n_stat"), mean * 2.0, rtol=1e-6)


def _tf2_only_fn(inputs):
    # TF2-only code, as e.g. a Keras layer that needs a tf.function around it.
    if not tf.inside_function():
        raise RuntimeError("needs a tf.function")
    return {"n_z": tft.scale_to_z_score(tf.cast(inputs["n"], tf.float32))}


def test_a_function_that_only_traces_in_tf2_is_traced_as_a_tf_function():
    specs = {"n": tf.TensorSpec([None], tf.int64)}
    traced = trace_analyzers(_tf2_only_fn, specs)
    assert not traced.tf_compat_v1 and len(traced.fingerprints) == 1
    tf1 = trace_analyzers(lambda inputs: {"n_z": tft.scale_to_z_score(inputs["n"])}, specs)
    assert tf1.tf_compat_v1 and len(tf1.fingerprints) == 1


def test_an_output_with_a_file_missing_or_changed_is_not_up_to_date(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-00000-of-00001.tfrecord.gz").write_bytes(b"rows")
    (tmp_path / "stats.json").write_text("{}")
    record = JobRecord.of({"graph": "g", "train": ["span-1"]})
    record.write(str(tmp_path))
    assert record.matches(str(tmp_path))
    assert not JobRecord.of({"graph": "g", "train": ["span-2"]}).matches(str(tmp_path))
    (tmp_path / "data" / "train-00000-of-00001.tfrecord.gz").write_bytes(b"other rows")
    assert not record.matches(str(tmp_path))
    (tmp_path / "data" / "train-00000-of-00001.tfrecord.gz").unlink()
    assert not record.matches(str(tmp_path))


def test_a_span_whose_header_differs_is_named(tmp_path):
    (tmp_path / "day1.csv").write_text(HEADER + "\n1.0,1,a,p\n")
    (tmp_path / "day2.csv").write_text("n,x,c,y\n1,1.0,a,p\n")
    config = config_from_dict(
        {
            "name": "headers",
            "artifacts": str(tmp_path / "artifacts"),
            "data": {
                "train": [str(tmp_path / "day1.csv"), str(tmp_path / "day2.csv")],
                "eval": str(tmp_path / "day1.csv"),
            },
            "features": {"x": {"type": "float"}, "n": {"type": "int"}, "c": {"type": "string"}},
            "label": {"name": "y"},
        }
    )
    with pytest.raises(transform.TransformError, match="day2.csv: the header") as err:
        stages.run_transform(config)
    assert "every training span needs the same columns" in str(err.value)
