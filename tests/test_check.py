"""``tfbake check``: the trained, exported and served model agree on the penguins run,
and a serving-time preprocessing done outside the graph is caught, feature named."""

from __future__ import annotations

import dataclasses
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tests.conftest import write_config
from tfbake import check, serving_input, stages

SKEWED_FEATURE = "bill_length_mm"


def _eval_rows(config) -> int:
    """Data rows of the eval CSV, counted without the code under test (no rejects there)."""
    with open(config.data.eval) as f:
        return sum(1 for line in f if line.strip()) - 1


def _skewed_serving_input_fn(config):
    """A parsing serving_input_fn that converts bill length from mm to cm before the
    transform: a serving-time preprocessing step outside the trained graph."""
    build = serving_input.build_parsing_serving_input_fn(stages.serving_feature_spec(config))

    def serving_input_fn():
        receiver = build()

        def features_fn(received):
            features = dict(receiver.features_fn(received))
            bill = features[SKEWED_FEATURE]
            features[SKEWED_FEATURE] = tf.SparseTensor(bill.indices, bill.values / 10.0,
                                                       bill.dense_shape)
            return features

        return dataclasses.replace(receiver, features_fn=features_fn)

    return serving_input_fn


@pytest.fixture(scope="module")
def skewed_export(penguins_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("skewed") / "export"
    return penguins_run.model.export_saved_model(
        str(base), _skewed_serving_input_fn(penguins_run.config))


def test_trained_exported_and_served_answers_agree(penguins_run, served):
    rest, target = served
    report = check.check(penguins_run.config, server=rest, grpc_target=target,
                         model=penguins_run.model)
    assert report.ok, check.format_report(report)
    n = _eval_rows(penguins_run.config)
    assert report.rows == n and report.features.beam_rows == n
    names = [p.name for p in report.paths]
    assert names == [
        "trained model on Beam features", "saved_model.load predict",
        "saved_model.load serving_default", "saved_model.load predict_raw",
        "TF1 session predict", "REST :predict", "REST :classify", "gRPC :predict",
        "gRPC :classify",
    ]
    for path in report.paths:
        assert path.rows + path.skipped_rows == n, path.name
        assert path.max_abs_diff["probabilities"] <= check.DEFAULT_TOLERANCE, path.name
    assert set(report.features.max_abs_diff) == set(penguins_run.config.features)


def test_rows_limits_the_check(penguins_run):
    report = check.check(penguins_run.config, rows=10, batch_size=4, model=penguins_run.model)
    assert report.rows == 10 and report.ok
    assert all(p.rows + p.skipped_rows == 10 for p in report.paths)


def test_preprocessing_outside_the_graph_is_caught_and_named(penguins_run, skewed_export):
    report = check.check(penguins_run.config, export_dir=skewed_export, model=penguins_run.model)
    assert not report.ok
    features = report.features
    assert features.first_differing_feature == SKEWED_FEATURE
    # Rows without a bill length are unaffected; every other row is skewed in that
    # one feature only.
    with_bill = sum(
        1 for row, _ in check.iter_eval_rows(penguins_run.config) if SKEWED_FEATURE in row)
    assert features.unmatched_rows == with_bill
    assert features.differing_rows[SKEWED_FEATURE] == with_bill
    assert sum(features.differing_rows.values()) == with_bill
    assert features.first_differing_source.startswith(penguins_run.config.data.eval)
    # The trained model on Beam's features and predict_raw (built without the skewed
    # step) now disagree with the export's tf.Example signatures.
    trained = report.path("trained model on Beam features")
    assert trained.differing_rows > 0 and trained.max_abs_diff["probabilities"] > 0.01
    assert not report.path("saved_model.load predict_raw").ok
    assert report.path("TF1 session predict").ok  # the same (skewed) graph, loaded another way


def test_cli_exits_non_zero_over_tolerance_naming_the_feature(
    penguins_run, skewed_export, venv_bin, tmp_path
):
    raw = yaml.safe_load(penguins_run.config_path.read_text())
    raw["name"] = "penguins_skewed"
    raw["export"] = {"dir": os.path.dirname(skewed_export)}
    path = write_config(tmp_path, raw)
    result = subprocess.run([os.path.join(venv_bin, "tfbake"), "check", str(path), "--rows", "20"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert f'SKEW: feature "{SKEWED_FEATURE}" differs first' in result.stdout
    assert "FAILED: over tolerance" in result.stdout


def test_beam_rows_pair_in_any_order_and_name_the_differing_feature():
    rng = np.random.default_rng(0)
    beam = {"a": rng.normal(size=50).astype(np.float32), "b": rng.integers(0, 4, 50),
            "c": np.array([b"x", b"y"] * 25, dtype=object)}
    rows = check.TransformedRows(beam, tolerance=1e-5)
    order = rng.permutation(50)
    shuffled = {k: v[order] for k, v in beam.items()}
    shuffled["a"] = shuffled["a"] + np.float32(1e-7)  # float noise within tolerance
    index, differs = rows.match(shuffled)
    np.testing.assert_array_equal(index, order)
    assert not differs.any()
    shuffled["b"] = shuffled["b"] + 10  # no Beam row has these values of b
    index, differs = check.TransformedRows(beam, 1e-5).match(shuffled)
    np.testing.assert_array_equal(index, order)  # the row agreeing on a and c
    assert differs[:, rows.names.index("b")].all() and differs.sum() == 50
