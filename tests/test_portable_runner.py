"""The Beam job on a portable runner: the Fn API that Flink, Spark and Dataflow speak,
with two SDK workers in processes of their own, started from another folder
(``scripts/beam_portable.py``, the ``portable_runner`` fixture).

``tfbake run`` on a config whose paths are relative to the folder it runs from, with a
user ``preprocessing_fn`` that the workers can import only from the packages staged by
``--setup_file`` and ``--extra_package``: the job reads and writes every row, both
workers write shards (their pids in the job's log), and ``tfbake check`` finds the
export in line with the Beam job's features.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from tests.conftest import write_config
from tfbake import cli

# The user's preprocessing_fn (shipped by --setup_file) uses a helper package of
# theirs (shipped, built, by --extra_package).
USER_MODULE = """
import tensorflow_transform as tft
from my_helpers import category_ids


def preprocessing_fn(inputs):
    return {"x": tft.scale_to_z_score(inputs["x"]), "c": category_ids(inputs["c"])}
"""
HELPER_MODULE = """
import tensorflow_transform as tft


def category_ids(values):
    return tft.compute_and_apply_vocabulary(values)
"""
SETUP = """
from setuptools import setup

setup(name="{name}", version="0.1", packages=["{package}"])
"""


def _rows(n: int, start: int) -> str:
    rows = range(start, start + n)
    return "".join(f"{(i % 7) - 3}.5,{'ab'[i % 2]},{'pq'[i % 7 > 3]}\n" for i in rows)


def _package(root, name: str, package: str, module: str, source: str) -> None:
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / f"{module}.py").write_text(source)
    (root / "setup.py").write_text(SETUP.format(name=name, package=package))


def _project(root, python: str) -> str:
    """Data in two train files (so both workers get a share), the user's two packages;
    returns the helper's sdist."""
    (root / "data").mkdir(parents=True)
    for name, start in (("train-1.csv", 0), ("train-2.csv", 30)):
        (root / "data" / name).write_text("x,c,y\n" + _rows(30, start))
    (root / "data" / "eval.csv").write_text("x,c,y\n" + _rows(20, 100))
    _package(root / "user_src", "my-features", "my_features", "prep", USER_MODULE)
    helpers = root / "helpers_src"
    _package(helpers, "my-helpers", "my_helpers", "__init__", HELPER_MODULE)
    subprocess.run(
        [python, "setup.py", "-q", "sdist", "--dist-dir", str(root / "dist")],
        cwd=helpers, check=True, capture_output=True,
    )
    return "dist/my-helpers-0.1.tar.gz"


def test_tfbake_run_with_relative_paths_on_two_portable_runner_workers(
    portable_runner, python, venv_bin, tmp_path, monkeypatch
):
    project = tmp_path / "project"
    helper_sdist = _project(project, python)
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
    # The launcher imports the user's modules from its path; the workers do not have them.
    paths = [
        str(project / "user_src"), str(project / "helpers_src"), os.environ.get("PYTHONPATH", "")
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    result = subprocess.run(
        [
            os.path.join(venv_bin, "tfbake"), "run", "portable.yaml",
            *portable_runner["beam_args"],
            "--setup_file", "user_src/setup.py",
            "--extra_package", helper_sdist,
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
    # ... SDK workers of the pool, which installed the staged packages first.
    installed = re.findall(
        r"beam_sdk_boot\[pid (\d+)\]: installed my-helpers-0.1.tar.gz, workflow.tar.gz",
        portable_runner["pool_log"].read_text(),
    )
    assert writers <= set(installed)

    monkeypatch.chdir(project)  # the config's paths are relative to it
    assert cli.main(["check", "portable.yaml"]) == 0
