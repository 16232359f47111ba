"""Shared fixtures: one real penguins pipeline run (Beam -> training -> export) per session."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PENGUINS_CONFIG = ROOT / "configs" / "penguins.yaml"


def _load_example_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@dataclasses.dataclass
class PipelineRun:
    config: object  # tfbake.config.Config
    config_path: Path
    stats: dict
    model: object  # trainer.Model, as trained
    metrics: dict
    export_dir: str


@pytest.fixture(scope="session")
def penguins_run(tmp_path_factory) -> PipelineRun:
    """The penguins example run once, for real: transform, train, export."""
    from tfbake import stages
    from tfbake.config import load_config

    tmp = tmp_path_factory.mktemp("penguins")
    config_path = write_config(tmp, penguins_raw_config(tmp))
    config = load_config(config_path)
    stats = stages.run_transform(config)
    model, metrics = stages.run_training(config)
    export_dir = stages.run_export(config, model)
    return PipelineRun(config, config_path, stats, model, metrics, export_dir)


@pytest.fixture(scope="session")
def python() -> str:
    """The interpreter of the project's venv, for subprocesses."""
    return sys.executable


@pytest.fixture(scope="session")
def venv_bin() -> str:
    return os.path.dirname(sys.executable)
