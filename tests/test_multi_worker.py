"""Multi-worker training (``training.distribute: multi_worker_mirrored``): two
``tfbake train`` processes on 127.0.0.1, the cluster in ``TF_CONFIG``.

The Beam job writes one train file, fewer than the workers: each worker keeps its
share of the records (tf.data's DATA sharding), which a custom model's layer shows by
logging the example ids each process trains on. The first run loses worker 1 to
SIGKILL after an epoch: the chief fails instead of waiting forever, and the rerun of
both resumes from the chief's backup. Only the chief writes the trainer folder; the
export of the trained weights has the signatures and variables of a single-process one.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import tensorflow as tf
from tensorflow.python.tools import saved_model_utils

from tests.conftest import write_config
from tests.trainer.conftest import write_csv
from tfbake import stages
from tfbake.config import ConfigError, load_config
from tfbake.trainer.distribution import WORKER_TEMP_PREFIX
from tfbake.trainer.model import HISTORY_FILE

EPOCHS = 3
TRAIN_ROWS = 160

# The user's model: its SeenIds layer logs, in training, each batch's example ids into
# $SEEN_IDS_DIR/seen-<pid>.txt (tf.print to a file: a graph op, run per replica).
USER_MODEL = '''
import os

import tensorflow as tf
import tf_keras


@tf_keras.saving.register_keras_serializable(package="mwmodels")
class SeenIds(tf_keras.layers.Layer):
    def call(self, inputs, training=None):
        x, ids = inputs
        out_dir = os.environ.get("SEEN_IDS_DIR")
        if training and out_dir:
            stream = f"file://{out_dir}/seen-{os.getpid()}.txt"
            tf.print(ids, summarize=-1, output_stream=stream)
        return x


def build(transformed_feature_spec, tft_output):
    inputs = {
        k: tf_keras.Input(shape=(), name=k, dtype=transformed_feature_spec[k].dtype)
        for k in ("id", "x", "c")
    }
    x = tf_keras.layers.Concatenate()(
        [tf_keras.layers.Reshape((1,))(tf.cast(inputs[k], tf.float32)) for k in ("x", "c")]
    )
    x = SeenIds()([x, inputs["id"]])
    x = tf_keras.layers.Dense(8, activation="relu")(x)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(1)(x))
'''


def _rows(n: int, first_id: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        x = rng.uniform(-2, 2)
        c = rng.choice("ab")
        rows.append({"id": first_id + i, "x": round(x, 3), "c": c, "y": "pos" if x > 0 else "neg"})
    return rows


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _epochs(history_path) -> list[int]:
    if not os.path.exists(history_path):
        return []
    with open(history_path) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@contextlib.contextmanager
def _cluster(python, config_path, env, log_dir, name) -> Iterator[list[subprocess.Popen]]:
    """``tfbake train`` on both workers of a fresh 127.0.0.1 cluster; any still running
    on exit are killed."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    # Where a non-chief worker writes, and must clean up: a folder of each run's own.
    temp_dir = log_dir / f"{name}-tmp"
    temp_dir.mkdir()
    env = dict(env, TMPDIR=str(temp_dir))
    workers = []
    try:
        for index in range(2):
            task = {"type": "worker", "index": index}
            with open(log_dir / f"{name}-{index}.err", "w") as err:
                workers.append(
                    subprocess.Popen(
                        [python, "-m", "tfbake", "train", str(config_path)],
                        env=dict(env, TF_CONFIG=json.dumps({"cluster": cluster, "task": task})),
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                    )
                )
        yield workers
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def _written_files(directory: str) -> set[str]:
    """The files under ``directory``, TensorBoard's (named by host, pid and time) by folder."""
    files = set()
    for folder, _, names in os.walk(directory):
        for name in names:
            shown = "events.out.tfevents.*" if name.startswith("events.out.tfevents") else name
            files.add(os.path.relpath(os.path.join(folder, shown), directory))
    return files


def _signature_table(export_dir: str) -> dict:
    """Signature -> method, inputs and outputs with dtype and shape, from the MetaGraph."""
    meta_graph = saved_model_utils.get_meta_graph_def(export_dir, "serve")

    def tensors(infos):
        return {k: (v.dtype, str(v.tensor_shape)) for k, v in infos.items()}

    return {
        key: (s.method_name, tensors(s.inputs), tensors(s.outputs))
        for key, s in meta_graph.signature_def.items()
    }


def _variable_shapes(export_dir: str) -> dict:
    return dict(tf.train.list_variables(os.path.join(export_dir, "variables", "variables")))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, python):
    """One Beam run; a single-process training and export; then the two-worker
    training, killed (worker 1) after its first epoch and run again; its export."""
    tmp = tmp_path_factory.mktemp("multi_worker")
    package = tmp / "userpkg" / "mwmodels"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(USER_MODEL)
    sys.path.insert(0, str(tmp / "userpkg"))
    raw = {
        "name": "multi_worker",
        "artifacts": str(tmp / "artifacts"),
        "data": {
            "train": write_csv(tmp / "train.csv", _rows(TRAIN_ROWS, 0, seed=0)),
            "eval": write_csv(tmp / "eval.csv", _rows(60, 1000, seed=1)),
        },
        "features": {"id": {"type": "int"}, "x": {"type": "float"}, "c": {"type": "string"}},
        "label": {"name": "y"},
        "preprocessing": {"id": {"passthrough": True}},
        "model": {"type": "custom", "build": "mwmodels.nets:build"},
        "training": {
            "epochs": EPOCHS,
            "batch_size": 32,
            "distribute": "multi_worker_mirrored",
            "early_stopping": {"monitor": "val_loss", "patience": EPOCHS},
        },
        "export": {"dir": str(tmp / "export" / "multi_worker"), "warmup_examples": 0},
    }
    config_path = write_config(tmp, raw)
    config = load_config(config_path)
    stages.run_transform(config)

    single = config.model_copy(
        update={
            # Its weights do not matter, only what the export is made of.
            "training": config.training.model_copy(update={"distribute": "default", "epochs": 1}),
            "export": config.export.model_copy(update={"dir": str(tmp / "export" / "single")}),
        }
    )
    stages.run_training(single)
    single_files = _written_files(config.trainer_dir)
    # Both exports from the weights file, as `tfbake export` makes them.
    single_export = stages.run_export(single)
    shutil.rmtree(config.trainer_dir)  # the cluster's run starts afresh

    seen_dir = tmp / "seen"
    seen_dir.mkdir()
    paths = [str(tmp / "userpkg"), os.environ.get("PYTHONPATH", "")]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), SEEN_IDS_DIR=str(seen_dir)
    )
    history = os.path.join(config.trainer_dir, HISTORY_FILE)
    with _cluster(python, config_path, env, tmp, "first") as first:
        deadline = time.monotonic() + 300
        while not _epochs(history) and all(w.poll() is None for w in first):
            assert time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.05)
        first[1].send_signal(signal.SIGKILL)
        first[1].wait(timeout=30)
        chief_status = first[0].wait(timeout=180)  # it must notice, not wait forever
    before = _epochs(history)

    with _cluster(python, config_path, env, tmp, "second") as second:
        statuses = [w.wait(timeout=600) for w in second]
    for index, status in enumerate(statuses):
        assert status == 0, (tmp / f"second-{index}.err").read_text()[-3000:]
    seen = {
        index: [
            int(i)
            for i in re.findall(r"\d+", (seen_dir / f"seen-{worker.pid}.txt").read_text())
        ]
        for index, worker in enumerate(second)
    }
    return {
        "config": config,
        "chief_status": chief_status,
        "before": before,
        "after": _epochs(history),
        "seen": seen,
        "worker_tmp": tmp / "second-tmp",
        "files": _written_files(config.trainer_dir),
        "single_files": single_files,
        "single_export": single_export,
        "export": stages.run_export(config),
    }


def test_each_worker_trains_on_its_own_share_of_the_records(runs):
    rerun_epochs = len(runs["after"]) - len(runs["before"])
    assert rerun_epochs >= 1
    worker_0, worker_1 = runs["seen"][0], runs["seen"][1]
    assert worker_0 and worker_1
    # Every record once per epoch across the two workers (not once per worker).
    assert Counter(worker_0 + worker_1) == {i: rerun_epochs for i in range(TRAIN_ROWS)}


def test_a_killed_worker_fails_the_chief_and_the_rerun_resumes(runs):
    assert runs["chief_status"] != 0
    before, after = runs["before"], runs["after"]
    assert before and before[-1] < EPOCHS - 1, "the first run finished before the kill"
    assert after[: len(before)] == before
    assert after[len(before)] > before[-1]  # resumed after the backup, not from epoch 0
    assert after[-1] == EPOCHS - 1 and after.count(0) == 1


def test_only_the_chief_writes_the_trainer_folder(runs):
    # What one process writes, nothing more (no second history, no worker folders).
    assert runs["files"] == runs["single_files"]
    # The non-chief's own folder, removed at the end.
    assert [n for n in os.listdir(runs["worker_tmp"]) if n.startswith(WORKER_TEMP_PREFIX)] == []


def test_the_export_has_the_signatures_and_variables_of_a_single_process_one(runs):
    assert _signature_table(runs["export"]) == _signature_table(runs["single_export"])
    assert _variable_shapes(runs["export"]) == _variable_shapes(runs["single_export"])


def test_tfbake_run_refuses_a_multi_worker_cluster(runs, monkeypatch):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"index": 0}}))
    with pytest.raises(ConfigError, match="training.distribute: .* `tfbake train` on every"):
        stages.run_all(runs["config"])
