"""The analysis cache over training spans, on small spans made here.

Five real Beam runs share one cache: day 1 alone (cold); days 1 and 2 (day 1 from the
cache); days 1 and 2 again (all from the cache); days 1 and 2 without a cache (the
reference full run); and days 1 and 2 after the user's ``preprocessing_fn`` changed its
body under the same name (``x * 2.0`` -> ``x + 2.0``: tf.Transform's own cache key is
the same for both, so without the analyzer fingerprint the stale mean would be reused).
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
    """What one run left: the cache report, the vocabularies and variables (bytes), and
    the transformed training rows (columns in name order), sorted."""

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
    for sub in ("assets", "variables"):
        for path in glob.glob(os.path.join(transform.transform_fn_dir(out), sub, "*")):
            with open(path, "rb") as f:
                files[f"{sub}/{os.path.basename(path)}"] = f.read()
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

    def config(*names):
        return config_from_dict(
            {
                "name": "spans",
                "artifacts": str(tmp / "artifacts"),
                "data": {
                    "train": [str(tmp / f"{d}.csv") for d in names],
                    "eval": str(tmp / "day1.csv"),
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
        result["rerun"] = _output(both)
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


def test_an_unchanged_rerun_reads_everything_from_the_cache_and_writes_the_same(runs):
    """saved_model.pb differs between runs only by TensorFlow's function names (a
    process-wide counter), so the transform_fn's vocabularies and variables are compared
    as bytes and its result on the data exactly."""
    before, rerun = runs["added_day2"], runs["rerun"]
    spans = _spans(rerun)
    assert not any(s["analyzed"] for s in spans.values())
    assert not any(s["entries_written"] for s in spans.values())
    assert rerun.files == before.files
    np.testing.assert_array_equal(rerun.rows, before.rows)


def test_a_changed_preprocessing_fn_body_under_the_same_name_misses(runs):
    """x * 2.0 and x + 2.0 have the same tf.Transform cache key; the fingerprint tells
    them apart, so only that analyzer runs again, over every span, and the result is the
    new mean."""
    spans = _spans(runs["changed_fn"])
    before = _spans(runs["rerun"])
    for name, span in spans.items():
        assert span["analyzed"], name
        assert span["entries_written"] == 1, name  # the n_stat mean, nothing else
        assert span["entries_read"] == before[name]["entries_read"] - 1, name
    mean = runs["n"].mean()
    np.testing.assert_allclose(runs["changed_fn"].column("n_stat"), mean + 2.0, rtol=1e-6)
    np.testing.assert_allclose(runs["rerun"].column("n_stat"), mean * 2.0, rtol=1e-6)


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
