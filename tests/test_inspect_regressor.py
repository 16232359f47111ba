"""``tfbake inspect`` on a regressor export: every generated sample runs as printed
against a real ``tfbake serve`` (the classifier's are in test_inspect.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import serve_config, write_config
from tfbake import stages
from tfbake.config import load_config

SIGNATURES = {"serving_default", "regression", "predict", "predict_raw", "transform_features"}


@pytest.fixture(scope="module")
def regressor(tmp_path_factory, python):
    """A linear regressor on y = 2x + 10 (plus a category), trained, exported and served."""
    tmp = tmp_path_factory.mktemp("regressor")
    rows = "\n".join(f"{x / 10:.2f},{'ab'[x % 2]},{2 * x / 10 + 10:.3f}" for x in range(-50, 50))
    for split in ("train", "eval"):
        (tmp / f"{split}.csv").write_text("x,c,y\n" + rows + "\n")
    path = write_config(
        tmp,
        {
            "name": "reg",
            "artifacts": str(tmp / "artifacts"),
            "data": {"train": str(tmp / "train.csv"), "eval": str(tmp / "eval.csv")},
            "features": {"x": {"type": "float"}, "c": {"type": "string"}},
            "label": {"name": "y", "type": "float"},
            "model": {"type": "linear_regressor", "learning_rate": 0.05},
            "training": {"epochs": 40, "early_stopping": None},
        },
    )
    config = load_config(path)
    summary = stages.run_all(config)
    with serve_config(python, path, tmp) as urls:
        yield summary["export"], urls


def test_every_generated_regressor_sample_runs_against_a_live_server(regressor, venv_bin, python):
    export_dir, (rest, target) = regressor
    result = subprocess.run(
        [
            os.path.join(venv_bin, "tfbake"),
            "inspect",
            export_dir,
            "--model",
            "reg",
            "--rest_url",
            rest,
            "--grpc_target",
            target,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    samples = json.loads(result.stdout)["samples"]
    assert {(s["signature"], s["client"]) for s in samples} == {
        (name, client)
        for name in SIGNATURES
        for client in ("curl", "python-requests", "python-grpc", "javascript-fetch")
    }
    apis = {s["signature"]: s["api"] for s in samples}
    assert apis["serving_default"] == apis["regression"] == "regress"

    def run(sample):
        args = {"sh": ["bash", "-c"], "python": [python, "-c"],
                "javascript": ["node", "--input-type=module", "-e"]}[sample["language"]]
        return subprocess.run([*args, sample["text"]], capture_output=True, text=True,
                              timeout=120)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, samples))
    for sample, done in zip(samples, results):
        assert done.returncode == 0, (sample["title"], done.stdout[-1000:], done.stderr[-2000:])
        if sample["client"] == "python-grpc":  # a printed response proto
            assert "outputs {" in done.stdout or "result {" in done.stdout, sample["title"]
        else:  # JSON carrying numbers: the regression values or transformed features
            assert re.search(r"-?\d+\.\d+", done.stdout), (sample["title"], done.stdout[-500:])
