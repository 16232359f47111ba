"""Warm-up: the export's ``tf_serving_warmup_requests`` is
replayed by a real ``tfbake serve`` at load, which takes the model's one-time cost out
of the first request. How the first request compares with steady state is a figure of
``benchmarks/warmup_first_request.py``: at ~2 ms, it moves with the machine's load."""

from __future__ import annotations

import json
import re
import shutil
import signal
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tfbake.model_server import export_contract, listening_address
from tfbake.serving_input.export_layout import WARMUP_FILE

MODEL = "penguins"
STEADY_REQUESTS = 20
WARMUP_METRIC = ":tfbake:serving:warmup_request_count"


@pytest.fixture(scope="module")
def export_base(penguins_run, tmp_path_factory) -> Path:
    """A copy of the penguins export (version folder under a fresh base)."""
    base = tmp_path_factory.mktemp("warmup") / "export"
    version = Path(penguins_run.export_dir)
    shutil.copytree(version, base / version.name)
    (base.parent / "monitoring.config").write_text(
        'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'
    )
    return base


class _Server:
    def __init__(self, python: str, base: Path, *flags: str):
        self.log = base.parent / f"server{len(list(base.parent.glob('server*.err')))}.err"
        with open(self.log, "w") as err:
            self.process = subprocess.Popen(
                [
                    python,
                    "-m",
                    "tfbake",
                    "serve",
                    f"--model_name={MODEL}",
                    f"--model_base_path={base}",
                    "--port=0",
                    "--rest_api_port=-1",
                    f"--monitoring_config_file={base.parent / 'monitoring.config'}",
                    *flags,
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.rest = None
        for line in self.process.stdout:  # printed once the models are AVAILABLE
            kind, address = listening_address(line) or (None, None)
            if kind == "rest":
                self.rest = address
                break
        assert self.rest, f"server exited {self.process.poll()}: {self.log.read_text()[-2000:]}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) == 0

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.rest + path, timeout=60) as response:
            return response.read().decode()

    def classify(self, body: bytes) -> float:
        """Seconds for one REST ``:classify``."""
        request = urllib.request.Request(
            f"{self.rest}/v1/models/{MODEL}:classify", body, {"Content-Type": "application/json"}
        )
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            assert "results" in json.load(response)
        return time.perf_counter() - start


def _body(export_base: Path) -> bytes:
    (version,) = export_base.iterdir()
    example = export_contract.read_warmup_examples(str(version), limit=1)[0]
    row = export_contract.example_to_row(example)
    return json.dumps({"examples": [row]}).encode()


def _measure(python: str, export_base: Path, *flags: str) -> dict:
    """A fresh server: the first ``:classify`` after its status says AVAILABLE, the
    median of the next STEADY_REQUESTS (seconds), then the metrics page and the log."""
    server = _Server(python, export_base, *flags)
    try:
        body = _body(export_base)
        # A client learns that the model is AVAILABLE from its status, as here; that
        # request also opens the client's HTTP path, which is not the model's cost.
        assert '"AVAILABLE"' in server.get(f"/v1/models/{MODEL}")
        first = server.classify(body)
        steady = statistics.median(server.classify(body) for _ in range(STEADY_REQUESTS))
        page = server.get("/monitoring/prometheus/metrics")
    finally:
        server.stop()
    return {"first": first, "steady": steady, "page": page, "log": server.log.read_text()}


@pytest.fixture(scope="module")
def warm(python, export_base) -> dict:
    return _measure(python, export_base)


@pytest.fixture(scope="module")
def cold(python, export_base) -> dict:
    return _measure(python, export_base, "--enable_model_warmup=false")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def test_the_warmup_file_holds_valid_prediction_logs(export_base):
    (version,) = export_base.iterdir()
    records = list(tf.data.TFRecordDataset(str(version / WARMUP_FILE)).as_numpy_iterator())
    assert records
    kinds = {prediction_log_pb2.PredictionLog.FromString(r).WhichOneof("log_type") for r in records}
    assert kinds <= {"predict_log", "classify_log", "regress_log", "multi_inference_log"}


def test_the_server_replays_the_warmup_file(export_base, warm, cold):
    (version,) = export_base.iterdir()
    expected = sum(1 for _ in tf.data.TFRecordDataset(str(version / WARMUP_FILE)))
    pattern = (
        re.escape(WARMUP_METRIC)
        + r'\{model_name="penguins",version="'
        + version.name
        + r'"\} (\S+)'
    )
    match = re.search(pattern, warm["page"])
    assert match, warm["page"]
    assert float(match.group(1)) == expected
    assert f"Finished reading {expected} warmup records" in warm["log"]
    assert WARMUP_METRIC not in cold["page"]  # --enable_model_warmup=false


def test_warmup_takes_the_model_cost_out_of_the_first_request(warm, cold):
    print(
        f"\nwarm-up on:  first {_ms(warm['first'])}, steady median {_ms(warm['steady'])}"
        f"\nwarm-up off: first {_ms(cold['first'])}, steady median {_ms(cold['steady'])}"
    )
    assert warm["first"] * 3 < cold["first"]
