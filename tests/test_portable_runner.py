"""The Beam job on a portable runner: the Fn API that Flink, Spark and Dataflow speak,
with two SDK workers in processes of their own, started from another folder
(``scripts/beam_portable.py``, the ``portable_runner`` fixture).

``tfbake run`` on a config whose paths are relative to the folder it runs from, with a
user ``preprocessing_fn`` that the workers can import only from the package staged by
``--setup_file``: the job reads and writes every row, both workers write shards (their
pids in the job's log), and ``tfbake check`` finds the export in line with the Beam
job's features.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from tests.conftest import write_config
from tfbake import cli

USER_MODULE = """
import tensorflow_transform as tft


def preprocessing_fn(inputs):
    return {
        "x": tft.scale_to_z_score(inputs["x"]),
        "c": tft.compute_and_apply_vocabulary(inputs["c"]),
    }
"""
USER_SETUP = """
from setuptools import setup

setup(name="my-features", version="0.1", packages=["my_features"])
"""


def _rows(n: int, start: int) -> str:
    rows = range(start, start + n)
    return "".join(f"{(i % 7) - 3}.5,{'ab'[i % 2]},{'pq'[i % 7 > 3]}\n" for i in rows)


def _project(root) -> None:
    """Data in two train files (so both workers get a share), the user's package."""
    (root / "data").mkdir(parents=True)
    for name, start in (("train-1.csv", 0), ("train-2.csv", 30)):
        (root / "data" / name).write_text("x,c,y\n" + _rows(30, start))
    (root / "data" / "eval.csv").write_text("x,c,y\n" + _rows(20, 100))
    package = root / "user_src" / "my_features"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "prep.py").write_text(USER_MODULE)
    (root / "user_src" / "setup.py").write_text(USER_SETUP)


def test_tfbake_run_with_relative_paths_on_two_portable_runner_workers(
    portable_runner, venv_bin, tmp_path, monkeypatch
):
    project = tmp_path / "project"
    _project(project)
    write_config(
        project,
        {
            "name": "portable",
            "artifacts": "artifacts",
            "data": {"train": "data/train-*.csv", "eval": "data/eval.csv"},
            "features": {"x": {"type": "float"}, "c": {"type": "string"}},
            "label": {"name": "y"},
            "preprocessing_fn": "my_features.prep:preprocessing_fn",
            "model": {"type": "dnn_classifier", "hidden_units": [4]},
            "training": {"epochs": 2, "early_stopping": None},
        },
    )
    # The launcher imports the user's module from its path; the workers do not have it.
    paths = [str(project / "user_src"), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    result = subprocess.run(
        [
            os.path.join(venv_bin, "tfbake"), "run", "portable.yaml",
            *portable_runner["beam_args"],
            "--setup_file", "user_src/setup.py",
            "--workers_see_local_files",
        ],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    with open(project / "artifacts" / "transform" / "stats.json") as f:
        assert json.load(f) == {
            "train": {"read": 60, "written": 60, "rejected": 0},
            "eval": {"read": 20, "written": 20, "rejected": 0},
        }
    # Each train shard, as the worker that wrote it logged it into the job's log.
    shards = re.findall(
        r"train: (\d+) examples -> .*? \(worker pid (\d+)\)", portable_runner["job_log"].read_text()
    )
    assert sum(int(n) for n, _ in shards) == 60
    writers = {pid for _, pid in shards}
    assert len(writers) == 2
    # ... SDK workers of the pool, which installed the staged package first.
    installed = re.findall(
        r"beam_sdk_boot\[pid (\d+)\]: installed workflow.tar.gz",
        portable_runner["pool_log"].read_text(),
    )
    assert writers <= set(installed)

    monkeypatch.chdir(project)  # the config's paths are relative to it
    assert cli.main(["check", "portable.yaml"]) == 0
