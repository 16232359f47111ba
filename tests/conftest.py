"""Shared fixtures: one real penguins pipeline run (Beam -> training -> export) per session."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.beam_portable import portable_runner as start_portable_runner
from tfbake.model_server import listening_address

ROOT = Path(__file__).resolve().parent.parent
PENGUINS_CONFIG = ROOT / "configs" / "penguins.yaml"


def _load_example_module(name: str):
    # Imported as the scripts run: with examples/ on the path (for examples/data_split.py).
    examples = str(ROOT / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    return importlib.import_module(name)


def write_config(directory: Path, raw: dict) -> Path:
    """Writes a YAML config into ``directory`` and returns its path."""
    path = directory / f"{raw.get('name', 'config')}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def penguins_raw_config(tmp: Path) -> dict:
    """The shipped penguins config, with its data and artifacts moved under ``tmp``."""
    penguins_data = _load_example_module("penguins_data")
    data_dir = tmp / "data"
    penguins_data.split(penguins_data.penguins_csv(), str(data_dir))
    raw = yaml.safe_load(PENGUINS_CONFIG.read_text())
    raw["data"]["train"] = str(data_dir / "train.csv")
    raw["data"]["eval"] = str(data_dir / "eval.csv")
    raw["artifacts"] = str(tmp / "artifacts")
    return raw


USER_PREPROCESSING = '''
import tensorflow_transform as tft


def preprocessing_fn(inputs):
    outputs = dict(inputs)
    outputs["x"] = tft.scale_to_z_score(inputs["x"])
    return outputs
'''


def user_pipeline(tmp: Path, package: str, module: str, rows: int, init: str = "") -> Path:
    """A tiny CSV pipeline (``x``, ``c``, label ``y``; ``rows`` train and eval rows)
    whose ``preprocessing_fn`` is a user's, in ``tmp/user_src/<package>/<module>.py``
    (``init``: the package's ``__init__.py``). Returns the config's path."""
    folder = tmp / "user_src" / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(init)
    (folder / f"{module}.py").write_text(USER_PREPROCESSING)
    lines = "\n".join(f"{i % 7}.5,{'ab'[i % 2]},{'pq'[i % 3 == 0]}" for i in range(rows))
    for split in ("train", "eval"):
        (tmp / f"{split}.csv").write_text("x,c,y\n" + lines + "\n")
    return write_config(tmp, {
        "name": f"{package}_pipeline",
        "artifacts": str(tmp / "artifacts"),
        "data": {"train": str(tmp / "train.csv"), "eval": str(tmp / "eval.csv")},
        "features": {"x": {"type": "float"}, "c": {"type": "string"}},
        "label": {"name": "y"},
        "preprocessing_fn": f"{package}.{module}:preprocessing_fn",
    })


def run_sample(sample: dict, python: str) -> subprocess.CompletedProcess:
    """Runs a generated request sample (``RequestSample.to_dict()``) as a user would
    paste it: curl in bash, Python with ``python``, JavaScript with node."""
    args = {"sh": ["bash", "-c"], "python": [python, "-c"],
            "javascript": ["node", "--input-type=module", "-e"]}[sample["language"]]
    return subprocess.run([*args, sample["text"]], capture_output=True, text=True, timeout=120)


@dataclasses.dataclass
class PipelineRun:
    config: object  # tfbake.config.Config
    config_path: Path
    stats: dict
    model: object  # trainer.Model, as trained
    metrics: dict
    export_dir: str


def run_pipeline(tmp: Path, raw: dict) -> PipelineRun:
    """A config written into ``tmp`` and run for real: transform, train, export."""
    from tfbake import stages
    from tfbake.config import load_config

    config_path = write_config(tmp, raw)
    config = load_config(config_path)
    stats = stages.run_transform(config)
    model, metrics = stages.run_training(config)
    export_dir = stages.run_export(config, model)
    return PipelineRun(config, config_path, stats, model, metrics, export_dir)


@pytest.fixture(scope="session")
def penguins_run(tmp_path_factory) -> PipelineRun:
    """The penguins example run once, for real: transform, train, export."""
    tmp = tmp_path_factory.mktemp("penguins")
    return run_pipeline(tmp, penguins_raw_config(tmp))


@contextlib.contextmanager
def serve_config(python: str, config_path, log_dir: Path):
    """A real ``tfbake serve --config`` process on free loopback ports (see :func:`serve`)."""
    with serve(python, ["--config", str(config_path)], log_dir) as urls:
        yield urls


@contextlib.contextmanager
def serve(python: str, server_args: list[str], log_dir: Path, *, tfbake: list[str] | None = None,
          env: dict | None = None):
    """A real ``tfbake serve`` process with ``server_args`` on free loopback ports
    (``tfbake``: the command line that runs tfbake, default ``python -m tfbake``;
    ``env``: its environment, default this process's).

    Yields ``(rest_url, grpc_target)`` as the server prints them; stops it with
    SIGTERM and checks that it exits 0.
    """
    log = log_dir / "server.err"
    tfbake = tfbake or [python, "-m", "tfbake"]
    with open(log, "w") as err:
        process = subprocess.Popen(
            [*tfbake, "serve", *server_args, "--port=0", "--rest_api_port=-1"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    addresses = {}
    for line in process.stdout:
        kind_and_address = listening_address(line)
        if kind_and_address:
            addresses.update([kind_and_address])
        if len(addresses) == 2:
            break
    rest, target = addresses.get("rest"), addresses.get("grpc")
    assert rest and target, f"server exited {process.poll()}: {log.read_text()[-2000:]}"
    try:
        yield rest, target
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


@pytest.fixture(scope="session")
def served(penguins_run, python, tmp_path_factory):
    """``tfbake serve --config`` on the penguins export, one process for the session:
    ``(rest_url, grpc_target)``."""
    with serve_config(python, penguins_run.config_path, tmp_path_factory.mktemp("serve")) as urls:
        yield urls


@pytest.fixture(scope="session")
def python() -> str:
    """The interpreter of the project's venv, for subprocesses."""
    return sys.executable


@pytest.fixture(scope="session")
def venv_bin() -> str:
    return os.path.dirname(sys.executable)


@pytest.fixture(scope="session")
def portable_runner(tmp_path_factory):
    """Beam's portable job server (2 SDK workers per job) and an SDK worker pool, both
    on 127.0.0.1 and in a folder of their own, started by ``scripts/beam_portable.py``
    and stopped by pid: ``{"beam_args", "job_log", "pool_log", ...}``."""
    with start_portable_runner(tmp_path_factory.mktemp("portable_runner"), num_workers=2) as r:
        yield r


@pytest.fixture(scope="session")
def other_saved_models(tmp_path_factory) -> dict[str, str]:
    """SavedModels not made by tfbake (tests/other_saved_models.py): name -> base path."""
    from tests import other_saved_models

    return other_saved_models.save_all(str(tmp_path_factory.mktemp("other_models")))


@pytest.fixture(scope="session")
def other_models_served(other_saved_models, python, tmp_path_factory):
    """``tfbake serve --model_config_file`` on those models, one process for the session:
    ``(rest_url, grpc_target)``."""
    from tests import other_saved_models as models

    tmp = tmp_path_factory.mktemp("other_serve")
    config = tmp / "models.config"
    config.write_text(models.model_config(other_saved_models))
    with serve(python, [f"--model_config_file={config}"], tmp) as urls:
        yield urls
