"""Versions swapped under load, a corrupt version, a model that cannot load at start-up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

MIN_REQUESTS = 2000
CONCURRENCY = 16
DROP_EVERY_S = 2.0


def wait_for(condition, timeout=20.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_version_swap_under_load(server, model_dirs, helpers):
    """≥2,000 requests at concurrency 16 while versions 2..4 land every ~2 s: no failure,
    and each client only ever sees the serving version move forward."""
    stop = threading.Event()
    count = [0]
    lock = threading.Lock()
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(server.grpc_target))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "swap"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    url = server.rest_url + "/v1/models/swap:predict"

    def client(i):
        seen, failures = [], []
        session = requests.Session()
        while not stop.is_set():
            try:
                if i % 2:
                    r = session.post(url, data=b'{"instances": [1.0]}', timeout=30)
                    if r.status_code != 200:
                        failures.append(r.text)
                        continue
                    version = r.json()["predictions"][0]
                else:
                    version = float(tf.make_ndarray(stub.Predict(request).outputs["version"])[0])
                seen.append(version)
            except Exception as e:  # noqa: BLE001 - counted as a failure
                failures.append(repr(e))
            with lock:
                count[0] += 1
        return seen, failures

    results = []
    runner = threading.Thread(target=lambda: results.extend(
        helpers.run_threads(CONCURRENCY, client)))
    runner.start()
    dropped = []
    for version in (2, 3, 4):
        time.sleep(DROP_EVERY_S)
        helpers.drop_version(os.path.join(model_dirs["staged"], str(version)),
                             model_dirs["swap"], version)
        dropped.append(version)
    wait_for(lambda: count[0] >= MIN_REQUESTS, timeout=60)
    time.sleep(1.5)  # let the last version take over while the load continues
    stop.set()
    runner.join()

    assert count[0] >= MIN_REQUESTS
    assert all(not isinstance(r, Exception) for r in results), results
    failures = [f for _, fs in results for f in fs]
    assert failures == []
    for seen, _ in results:
        assert seen == sorted(seen), "a client saw the version go backwards"
    assert {v for seen, _ in results for v in seen} >= {1.0, 4.0}
    status = requests.get(server.rest_url + "/v1/models/swap").json()["model_version_status"]
    assert [s["version"] for s in status] == ["4", "3", "2", "1"]
    assert [s["state"] for s in status] == ["AVAILABLE", "END", "END", "END"]


def test_corrupt_version_keeps_previous_serving(server, model_dirs, helpers):
    staging = os.path.join(model_dirs["root"], "corrupt-2")
    shutil.copytree(os.path.join(model_dirs["staged"], "2"), staging)
    pb = os.path.join(staging, "saved_model.pb")
    with open(pb, "rb") as f:
        data = f.read()
    with open(pb, "wb") as f:
        f.write(data[: len(data) // 2])
    os.rename(staging, os.path.join(model_dirs["corrupt"], "2"))

    def bad_version_status():
        status = requests.get(server.rest_url + "/v1/models/corrupt").json()
        versions = {s["version"]: s for s in status["model_version_status"]}
        return versions if versions.get("2", {}).get("state") == "END" else None

    versions = wait_for(bad_version_status)
    assert versions["2"]["status"]["error_code"] != "OK"
    assert versions["2"]["status"]["error_message"]
    assert versions["1"]["state"] == "AVAILABLE"
    r = requests.post(server.rest_url + "/v1/models/corrupt:predict",
                      data=b'{"instances": [1.0]}', timeout=30)
    assert r.json() == {"predictions": [1.0]}


def test_start_up_fails_naming_the_model(tmp_path, model_dirs):
    base = tmp_path / "broken"
    shutil.copytree(os.path.join(model_dirs["staged"], "1"), base / "1")
    (base / "1" / "saved_model.pb").write_bytes(b"\x08garbage")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "tfbake.model_server", "--model_name=broken_model",
         f"--model_base_path={base}", "--port=0"],
        capture_output=True, text=True, timeout=120, env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert result.returncode != 0
    assert "Error loading model broken_model" in result.stderr
    assert "Running gRPC ModelServer" not in result.stdout
