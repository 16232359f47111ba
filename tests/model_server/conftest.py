"""Fixtures for the model server tests: test models built here, real server processes.

The models are tf.Modules with known outputs (TF Serving's ``half_plus_two``:
y = 0.5 x + 2), saved with ``tf.saved_model.save`` and given their real method names
with ``MethodNameUpdater``. One server process serves them all for the session
(a second one, with batching on, serves the batching tests).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from tfbake.model_server import listening_address
from tfbake.serving_input import signatures as sig_keys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    # An editable install made before model_server/ existed does not map it;
    # `python -m pytest` from the root finds it anyway, `pytest` then does too.
    sys.path.insert(0, REPO)
HPT_VERSION = 123
# The shared server's limit on a decoded request tensor (gRPC tests send 8 MB).
MAX_TENSOR_BYTES = 16_000_000
STARTUP_TIMEOUT_S = 90


class HalfPlusTwo(tf.Module):
    """y = 0.5 x + 2, behind predict, classify and regress signatures."""

    def __init__(self):
        super().__init__()
        self.a = tf.Variable(0.5)
        self.b = tf.Variable(2.0)

    def _y_from_examples(self, serialized):
        x = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        return self.a * x + self.b  # [N, 1]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def predict(self, x):
        return {"y": self.a * x + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify(self, inputs):
        y = self._y_from_examples(inputs)
        n = tf.shape(y)[0]
        classes = tf.tile(tf.constant([["neg", "pos"]]), [n, 1])
        return {"classes": classes, "scores": tf.concat([y, y + 1.0], axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify_x_to_y(self, inputs):
        return {"scores": self._y_from_examples(inputs)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def regress_x_to_y(self, inputs):
        return {"outputs": tf.reshape(self._y_from_examples(inputs), [-1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32),
                                  tf.TensorSpec([None], tf.int64)])
    def multi(self, x, k):
        return {
            "y": self.a * x + self.b,
            "k_text": tf.strings.as_string(k),
            "pair": tf.stack([x, tf.cast(k, tf.float32)], axis=1),
            "inv": 1.0 / x,
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def bytes_echo(self, image_bytes):
        return {"echo_bytes": image_bytes, "size": tf.strings.length(image_bytes)}


def save_half_plus_two(path: str) -> None:
    """Saves the test model with its signatures and method names, plus a warm-up log."""
    module = HalfPlusTwo()
    signatures = {
        "serving_default": module.predict,
        sig_keys.PREDICT_RAW: module.predict,
        "classify": module.classify,
        "classify_x_to_y": module.classify_x_to_y,
        "regress_x_to_y": module.regress_x_to_y,
        "multi": module.multi,
        "bytes": module.bytes_echo,
    }
    tf.saved_model.save(module, path, signatures=signatures)
    updater = tf.compat.v1.saved_model.signature_def_utils.MethodNameUpdater(path)
    for key in ("classify", "classify_x_to_y"):
        updater.replace_method_name(key, sig_keys.CLASSIFY_METHOD, tags="serve")
    updater.replace_method_name("regress_x_to_y", sig_keys.REGRESS_METHOD, tags="serve")
    updater.save()
    os.makedirs(os.path.join(path, "assets.extra"))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hpt"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(request)
    warmup = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    with tf.io.TFRecordWriter(warmup) as w:
        w.write(log.SerializeToString())


class VersionModel(tf.Module):
    """Answers its own version number, so a test sees which version served it."""

    def __init__(self, version: int):
        super().__init__()
        self.version = tf.Variable(float(version))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def predict(self, x):
        return {"version": tf.zeros_like(x) + self.version}


def save_version_model(path: str, version: int) -> None:
    """A SavedModel whose serving_default returns ``version`` for every row."""
    module = VersionModel(version)
    tf.saved_model.save(module, path, signatures={"serving_default": module.predict})


def drop_version(source: str, base_path: str, version: int) -> str:
    """Copies a SavedModel in as version ``version`` atomically (copy, then rename)."""
    staging = os.path.join(base_path, f".staging-{version}")
    shutil.copytree(source, staging)
    target = os.path.join(base_path, str(version))
    os.rename(staging, target)
    return target


class ServerProcess:
    """A ``python -m tfbake.model_server`` child process and where it listens."""

    def __init__(self, args: list[str], log_dir: str, name: str):
        self.stdout_path = os.path.join(log_dir, f"{name}.out")
        self.stderr_path = os.path.join(log_dir, f"{name}.err")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        self._out = open(self.stdout_path, "w")
        self._err = open(self.stderr_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfbake.model_server", *args],
            cwd=REPO, env=env, stdout=self._out, stderr=self._err,
        )
        self.grpc_target = self.rest_url = None

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.stdout_path) as f:
                text = f.read()
            for line in text.splitlines():
                kind, address = listening_address(line) or (None, None)
                if kind == "grpc":
                    self.grpc_target = address
                elif kind == "rest":
                    self.rest_url = address
            if self.grpc_target and self.rest_url:
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}: {self.stderr()}")
            time.sleep(0.1)
        raise TimeoutError(f"server not ready: {self.stderr()}")

    def stderr(self) -> str:
        with open(self.stderr_path) as f:
            return f.read()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()
        self._err.close()
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """Base paths: ``hpt`` (version 123), ``swap`` and ``corrupt`` (version 1 each),
    and staged versions 2..6 of the version model for the swap tests."""
    root = tmp_path_factory.mktemp("models")
    dirs = {name: str(root / name) for name in ("hpt", "swap", "corrupt", "staged")}
    save_half_plus_two(os.path.join(dirs["hpt"], str(HPT_VERSION)))
    for version in range(1, 7):
        save_version_model(os.path.join(dirs["staged"], str(version)), version)
    for name in ("swap", "corrupt"):
        os.makedirs(dirs[name])
        drop_version(os.path.join(dirs["staged"], "1"), dirs[name], 1)
    dirs["root"] = str(root)
    return dirs


def model_config_text(dirs, extra: str = "") -> str:
    """The text ModelServerConfig of the shared server."""
    return f"""
model_config_list {{
  config {{
    name: "hpt"
    base_path: "{dirs['hpt']}"
    model_platform: "tensorflow"
    version_labels {{ key: "stable" value: {HPT_VERSION} }}
  }}
  config {{ name: "swap" base_path: "{dirs['swap']}" model_platform: "tensorflow" }}
  config {{
    name: "corrupt"
    base_path: "{dirs['corrupt']}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
  }}
  {extra}
}}
"""


@pytest.fixture(scope="session")
def server(model_dirs, tmp_path_factory):
    """The shared server: REST + gRPC, Prometheus on, 0.3 s file-system polling."""
    work = tmp_path_factory.mktemp("server")
    config = work / "models.config"
    config.write_text(model_config_text(model_dirs))
    monitoring = work / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    process = ServerProcess(
        [
            f"--model_config_file={config}",
            "--port=0",
            f"--rest_api_port={free_port()}",
            "--file_system_poll_wait_seconds=0.3",
            f"--monitoring_config_file={monitoring}",
            "--rest_api_max_body_bytes=1000000",
            f"--max_request_tensor_bytes={MAX_TENSOR_BYTES}",
        ],
        str(work), "shared",
    ).wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def grpc_channel(server):
    import grpc

    channel = grpc.insecure_channel(
        server.grpc_target,
        options=[("grpc.max_receive_message_length", 2**31 - 1),
                 ("grpc.max_send_message_length", 2**31 - 1)],
    )
    yield channel
    channel.close()


@pytest.fixture(scope="session")
def http(server):
    import requests

    session = requests.Session()
    yield session
    session.close()


def run_threads(count: int, target) -> list:
    """Runs ``target(i)`` on ``count`` threads; returns their results (or exceptions)."""
    results = [None] * count

    def wrap(i):
        try:
            results[i] = target(i)
        except Exception as e:  # noqa: BLE001 - returned to the test
            results[i] = e

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture(scope="session")
def helpers():
    """This file's helpers, for test modules (importlib mode cannot import conftest)."""
    import types

    return types.SimpleNamespace(
        drop_version=drop_version,
        free_port=free_port,
        model_config_text=model_config_text,
        run_threads=run_threads,
        save_version_model=save_version_model,
        ServerProcess=ServerProcess,
        HPT_VERSION=HPT_VERSION,
        MAX_TENSOR_BYTES=MAX_TENSOR_BYTES,
    )
