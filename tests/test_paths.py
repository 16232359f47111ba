"""Paths in a config mean the same in every process: relative ones are resolved against
the folder tfbake runs from when the config loads, and a Beam job whose workers may be
other machines refuses a local path, naming its key, unless told the workers see it."""

from __future__ import annotations

import os

import pytest

from tests.conftest import write_config
from tfbake import cli, stages
from tfbake.config import config_from_dict, load_config
from tfbake.paths import LocalPathError


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A folder with data and a config whose paths are relative to it; the current one."""
    (tmp_path / "data").mkdir()
    for name in ("train.csv", "eval.csv"):
        (tmp_path / "data" / name).write_text("x,y\n1.0,p\n")
    write_config(
        tmp_path,
        {
            "name": "rel",
            "data": {"train": "data/train.csv", "eval": "data/eval.csv"},
            "features": {"x": {"type": "float"}},
            "label": {"name": "y"},
            "export": {"dir": "exports/rel"},
            "training": {"warm_start": "exports/old"},
        },
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_relative_paths_are_made_absolute_against_the_current_folder(project, monkeypatch):
    config = load_config("rel.yaml")
    monkeypatch.chdir(project / "data")  # later moves change nothing
    assert config.data.train == str(project / "data" / "train.csv")
    assert config.data.eval == str(project / "data" / "eval.csv")
    assert config.artifacts_dir == str(project / "artifacts" / "rel")
    assert config.export_dir_base == str(project / "exports" / "rel")
    assert config.training.warm_start == str(project / "exports" / "old")
    assert stages.transform_job(config).train_pattern == str(project / "data" / "train.csv")


def test_remote_paths_are_kept_as_they_are():
    config = config_from_dict(
        {
            "name": "remote",
            "artifacts": "gs://bucket/artifacts",
            "data": {"train": "gs://bucket/train-*.csv", "eval": "hdfs://nn/eval.csv"},
            "features": {"x": {"type": "float"}},
            "label": {"name": "y"},
        },
        check_files=False,
    )
    assert config.data.train == "gs://bucket/train-*.csv"
    assert config.data.eval == "hdfs://nn/eval.csv"
    assert config.transform_dir == "gs://bucket/artifacts/transform"
    # Storage every worker reads: no refusal on a remote runner.
    assert stages.transform_job(config, ["--runner=FlinkRunner"]).output_dir.startswith("gs://")


def test_a_remote_runner_refuses_a_local_path_naming_the_key(project):
    config = load_config("rel.yaml")
    with pytest.raises(LocalPathError, match=r"^data\.train: .*train\.csv .* DataflowRunner"):
        stages.transform_job(config, ["--runner=DataflowRunner"])
    remote_data = config.model_copy(
        update={"data": config.data.model_copy(update={"train": "gs://b/t", "eval": "gs://b/e"})}
    )
    with pytest.raises(LocalPathError, match=r"^artifacts: .*--workers_see_local_files"):
        stages.transform_job(remote_data, ["--runner=PortableRunner"])


def test_a_remote_runner_refuses_a_local_vocabulary_file(project):
    (project / "words.txt").write_text("a\nb\n")
    raw = {
        "name": "vocab",
        "artifacts": "gs://b/a",
        "data": {"train": "data/train.csv", "eval": "data/eval.csv"},
        "features": {"x": {"type": "string"}},
        "label": {"name": "y"},
        "preprocessing": {"x": {"vocabulary": {"file": "words.txt"}}},
    }
    config = load_config(write_config(project, raw))
    remote_data = config.model_copy(
        update={"data": config.data.model_copy(update={"train": "gs://b/t", "eval": "gs://b/e"})}
    )
    with pytest.raises(LocalPathError, match=r"^preprocessing\.x\.vocabulary\.file: .*words"):
        stages.transform_job(remote_data, ["--runner=DataflowRunner"])


def test_local_paths_pass_when_the_workers_see_this_machines_files(project):
    config = load_config("rel.yaml")
    for args in (
        [],  # the local FnApiRunner
        ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
        ["--runner=PortableRunner", "--environment_type=LOOPBACK"],  # workers in-process
    ):
        stages.transform_job(config, args)
    stages.transform_job(config, ["--runner=FlinkRunner"], workers_see_local_files=True)


def test_cli_refuses_before_the_job_starts_and_exits_2(project, capsys):
    assert cli.main(["transform", "rel.yaml", "--runner=SparkRunner"]) == 2
    message = capsys.readouterr().err
    assert message.startswith("tfbake transform: data.train: ")
    assert os.path.join(str(project), "data", "train.csv") in message
    assert not (project / "artifacts").exists()
