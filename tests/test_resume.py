"""A ``tfbake train`` killed (SIGKILL) after an epoch's backup resumes from it when run
again: the epochs continue, none starts over, and the export answers. The config
trains under ``MirroredStrategy`` (one CPU replica here), so that path runs end to end.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import write_config
from tests.trainer.conftest import write_csv
from tfbake import serving_input, stages
from tfbake.config import load_config
from tfbake.trainer.model import BACKUP_DIR, HISTORY_FILE

EPOCHS = 12


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x = rng.uniform(-2, 2)
        rows.append({"x": round(x, 3), "c": rng.choice("ab"), "y": "pos" if x > 0.3 else "neg"})
    return rows


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    path = write_config(
        tmp,
        {
            "name": "resume",
            "artifacts": str(tmp / "artifacts"),
            "data": {
                "train": write_csv(tmp / "train.csv", _rows(3000, 0)),
                "eval": write_csv(tmp / "eval.csv", _rows(200, 1)),
            },
            "features": {"x": {"type": "float"}, "c": {"type": "string"}},
            "label": {"name": "y", "type": "string"},
            "model": {"type": "dnn_classifier", "hidden_units": [8]},
            "training": {
                "epochs": EPOCHS,
                "batch_size": 16,
                "distribute": "mirrored",
                "early_stopping": {"monitor": "val_accuracy", "patience": EPOCHS},
            },
            "export": {"warmup_examples": 0},
        },
    )
    loaded = load_config(path)
    stages.run_transform(loaded)
    return path, loaded


def _epochs(history_path: str) -> list[int]:
    if not os.path.exists(history_path):
        return []
    with open(history_path) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_killed_training_resumes_from_its_last_epoch(config, python, tmp_path):
    path, loaded = config
    history = os.path.join(loaded.trainer_dir, HISTORY_FILE)
    command = [python, "-m", "tfbake", "train", str(path)]
    with open(tmp_path / "first.err", "w") as err:
        first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120
    while not _epochs(history) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    done_before = _epochs(history)
    assert done_before, (tmp_path / "first.err").read_text()[-2000:]
    assert done_before[-1] < EPOCHS - 1, "the first run finished before it was killed"
    backup = os.path.join(loaded.trainer_dir, BACKUP_DIR)
    assert os.listdir(backup)

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    epochs = _epochs(history)
    # Resumed: the second run starts after the last backed-up epoch, never at 0 again.
    assert epochs.count(0) == 1
    assert epochs[-1] == EPOCHS - 1
    assert len(epochs) <= EPOCHS + 1  # at most the epoch cut off by the kill runs twice
    assert epochs == sorted(epochs)
    assert not os.listdir(backup)  # finished: nothing left to resume from

    export_dir = stages.run_export(loaded)
    rows = [{"x": 1.5, "c": "a"}, {"x": -1.5, "c": "b"}]
    spec = stages.serving_feature_spec(loaded)
    answer = tf.saved_model.load(export_dir).signatures["predict"](
        examples=tf.constant(serving_input.serialize_examples(rows, spec))
    )
    assert [c.decode() for c in np.ravel(answer["classes"].numpy())] == ["pos", "neg"]


def test_a_run_with_a_seed_is_deterministic(config):
    """Two trainings of one config with one seed give the same weights (same metrics)."""
    _, loaded = config
    short = loaded.model_copy(update={"training": loaded.training.model_copy(update={"epochs": 2})})
    _, first = stages.run_training(short)
    _, second = stages.run_training(short)
    assert first == second
