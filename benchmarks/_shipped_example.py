"""Shared by the benchmarks that build a real export of their own (not a benchmark
itself, so ``make bench`` skips it): a shipped example's config with its data step run
into a work folder, never into the checkout's ``artifacts/``."""

from __future__ import annotations

import importlib
import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shipped_raw_config(config_name: str, data_step: str, source: str, work: str) -> dict:
    """``configs/<config_name>.yaml`` as a dict, its train/eval data written by
    ``examples/<data_step>.py``'s ``split`` from the function ``source`` of that module
    into ``work/data``, and its artifacts under ``work/artifacts``."""
    sys.path.insert(0, os.path.join(REPO, "examples"))  # as the data step runs
    module = importlib.import_module(data_step)
    data_dir = os.path.join(work, "data")
    module.split(getattr(module, source)(), data_dir)
    with open(os.path.join(REPO, "configs", f"{config_name}.yaml")) as f:
        raw = yaml.safe_load(f)
    raw["data"].update(
        train=os.path.join(data_dir, "train.csv"), eval=os.path.join(data_dir, "eval.csv")
    )
    raw["artifacts"] = os.path.join(work, "artifacts")
    return raw


def build_penguins_export(work: str) -> str:
    """The penguins example run for real under ``work``; returns its export base."""
    from tfbake import stages
    from tfbake.config import config_from_dict

    config = config_from_dict(shipped_raw_config("penguins", "penguins_data", "penguins_csv", work))
    stages.run_all(config)
    return config.export_dir_base
