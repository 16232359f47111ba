"""The command line: help on every command, config errors before work. (Beam flags after
the config reaching the multi-process runner: tests/test_setup_file.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import ROOT, write_config

COMMANDS = ("run", "transform", "train", "export")


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)


def test_help_lists_every_command(venv_bin):
    result = _run([os.path.join(venv_bin, "tfbake"), "--help"])
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize(
    "module, command", [("tfbake", "train"), ("tfbake.transform", None), ("tfbake.trainer", None)]
)
def test_modules_take_help(python, module, command):
    args = [python, "-m", module] + ([command] if command else []) + ["--help"]
    result = _run(args)
    assert result.returncode == 0, result.stderr[-1000:]
    assert "config" in result.stdout


def test_a_bad_config_exits_2_naming_the_key(venv_bin, tmp_path):
    path = write_config(
        tmp_path,
        {
            "name": "x",
            "data": {"train": "a", "eval": "b"},
            "features": {"f": {"type": "float", "colour": "red"}},
            "label": {"name": "y"},
        },
    )
    result = _run([os.path.join(venv_bin, "tfbake"), "transform", str(path)])
    assert result.returncode == 2
    assert "features.f.colour: unknown key" in result.stderr


def test_sdist_carries_every_package_a_beam_worker_needs(tmp_path):
    result = _run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (sdist,) = tmp_path.glob("tfbake-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for package in ("tfbake", "transform", "trainer", "serving_input"):
        assert f"{package}/__init__.py" in names
    assert "transform/preprocessing.py" in names and "setup.py" in names


def test_run_wires_a_regressor_config_to_a_regression_export(venv_bin, tmp_path):
    import tensorflow as tf

    rows = "\n".join(f"{x / 10:.2f},{'ab'[x % 2]},{2 * x / 10 + 10:.3f}" for x in range(-50, 50))
    for split in ("train", "eval"):
        (tmp_path / f"{split}.csv").write_text("x,c,y\n" + rows + "\n")
    path = write_config(
        tmp_path,
        {
            "name": "reg",
            "artifacts": str(tmp_path / "artifacts"),
            "data": {"train": str(tmp_path / "train.csv"), "eval": str(tmp_path / "eval.csv")},
            "features": {"x": {"type": "float"}, "c": {"type": "string"}},
            "label": {"name": "y", "type": "float"},
            "model": {"type": "wide_deep_regressor", "hidden_units": [8], "linear_features": ["x"]},
            "training": {"epochs": 3, "early_stopping": None},
        },
    )
    result = _run([os.path.join(venv_bin, "tfbake"), "run", str(path)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (version,) = (tmp_path / "artifacts" / "export").iterdir()
    loaded = tf.saved_model.load(str(version))
    assert set(loaded.signatures) >= {"serving_default", "regression", "predict", "predict_raw"}
    example = tf.train.Example()
    example.features.feature["x"].float_list.value.append(1.0)
    example.features.feature["c"].bytes_list.value.append(b"a")
    outputs = loaded.signatures["regression"](inputs=tf.constant([example.SerializeToString()]))
    assert outputs["outputs"].shape == (1, 1) and outputs["outputs"].dtype == tf.float32


def test_inspect_serving_docs_fills_in_the_export(venv_bin, penguins_run):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from tfbake import serving_docs
    from tfbake.model_server.config import BatchingParameters

    result = _run([os.path.join(venv_bin, "tfbake"), "inspect", penguins_run.export_dir,
                   "--serving-docs", "--model", "penguins"])
    assert result.returncode == 0, result.stderr[-2000:]
    base = os.path.dirname(os.path.abspath(penguins_run.export_dir))
    assert f"source={base},target=/models/penguins" in result.stdout
    assert "-e MODEL_NAME=penguins" in result.stdout
    config = text_format.Parse(serving_docs.models_config(result.stdout),
                               model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "penguins" and model.base_path == "/models/penguins"
    version = int(os.path.basename(penguins_run.export_dir))
    assert model.version_labels["stable"] == version
    batching = text_format.Parse(serving_docs.batching_config(result.stdout), BatchingParameters())
    assert batching.max_batch_size.value == 64
