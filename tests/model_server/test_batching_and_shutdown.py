"""Server-side batching merges concurrent requests; SIGTERM answers every request
received before it, large ones included."""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import os
import re
import signal
import threading

import pytest
import requests

CONCURRENT = 32


@pytest.fixture(scope="module")
def batching_server(model_dirs, helpers, tmp_path_factory):
    work = tmp_path_factory.mktemp("batching")
    params = work / "batching.config"
    params.write_text(
        "max_batch_size { value: 16 }\n"
        "batch_timeout_micros { value: 50000 }\n"
        "max_enqueued_batches { value: 100 }\n"
        "num_batch_threads { value: 2 }\n"
    )
    monitoring = work / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    server = helpers.ServerProcess(
        ["--model_name=hpt", f"--model_base_path={model_dirs['hpt']}", "--port=0",
         f"--rest_api_port={helpers.free_port()}", "--enable_batching",
         f"--batching_parameters_file={params}", f"--monitoring_config_file={monitoring}"],
        str(work), "batching",
    ).wait_ready()
    yield server
    server.stop()


def model_calls(server) -> float:
    page = requests.get(server.rest_url + "/monitoring/prometheus/metrics", timeout=30).text
    match = re.search(r'^:tfbake:serving:model_call_count\{model_name="hpt"\} (\S+)$', page, re.M)
    return float(match.group(1)) if match else 0.0


def test_concurrent_requests_are_merged(batching_server, helpers):
    before = model_calls(batching_server)
    barrier = threading.Barrier(CONCURRENT)
    url = batching_server.rest_url + "/v1/models/hpt:predict"

    def one(i):
        session = requests.Session()
        barrier.wait()
        return session.post(url, data=f'{{"instances": [{float(i)}]}}', timeout=30).json()

    results = helpers.run_threads(CONCURRENT, one)
    assert results == [{"predictions": [0.5 * i + 2]} for i in range(CONCURRENT)]
    calls = model_calls(batching_server) - before
    assert 1 <= calls < CONCURRENT


def test_batching_serves_classify_too(batching_server, helpers):
    url = batching_server.rest_url + "/v1/models/hpt:classify"

    def one(i):
        body = {"signature_name": "classify", "examples": [{"x": float(i)}] * (i % 3 + 1)}
        return requests.post(url, json=body, timeout=30).json()

    results = helpers.run_threads(8, one)
    for i, result in enumerate(results):
        y = 0.5 * i + 2
        assert result == {"results": [[["neg", y], ["pos", y + 1]]] * (i % 3 + 1)}


def test_request_larger_than_max_batch_is_refused(batching_server):
    r = requests.post(batching_server.rest_url + "/v1/models/hpt:predict",
                      json={"instances": [1.0] * 17}, timeout=30)
    assert r.status_code == 400
    assert r.json() == {"error": "Task size 17 is larger than maximum input batch size 16"}


IN_FLIGHT = 40
LARGE_BODY_BYTES = 1_200_000
HOLD_MICROS = 3_000_000


@pytest.fixture
def holding_server(model_dirs, helpers, tmp_path):
    """A server whose batches wait 3 s for more rows (and never fill), so requests
    stay in flight."""
    params = tmp_path / "batching.config"
    params.write_text(
        f"max_batch_size {{ value: {2 * IN_FLIGHT} }}\n"
        f"batch_timeout_micros {{ value: {HOLD_MICROS} }}\n"
        "num_batch_threads { value: 1 }\n"
    )
    server = helpers.ServerProcess(
        ["--model_name=hpt", f"--model_base_path={model_dirs['hpt']}", "--port=0",
         f"--rest_api_port={helpers.free_port()}", "--enable_batching",
         f"--batching_parameters_file={params}", "--rest_api_max_body_bytes=2000000",
         "--shutdown_grace_period_in_ms=60000"],
        str(tmp_path), "holding",
    ).wait_ready()
    yield server
    server.stop()


def test_sigterm_answers_every_large_request_received(holding_server, helpers):
    # 40 bodies of 1.2 MB, each sent whole (http.client returns from request() once
    # every byte is written), then SIGTERM at once: some are still in the kernel's
    # buffers, the rest wait in the batch. Every one is answered, then exit 0.
    host, port = holding_server.rest_url.split("//")[1].split(":")
    payload = os.urandom(LARGE_BODY_BYTES * 3 // 4)
    body = json.dumps({"signature_name": "bytes", "instances": [
        {"b64": base64.b64encode(payload).decode()}]}).encode()
    assert len(body) >= LARGE_BODY_BYTES
    sent = threading.Barrier(IN_FLIGHT + 1)
    signalled = threading.Event()

    def one(i):
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        connection.request("POST", "/v1/models/hpt:predict", body,
                           {"Content-Type": "application/json"})
        sent.wait()
        response = connection.getresponse()
        answered_after_signal = signalled.is_set()
        return response.status, json.loads(response.read()), answered_after_signal

    threads = concurrent.futures.ThreadPoolExecutor(IN_FLIGHT)
    futures = [threads.submit(one, i) for i in range(IN_FLIGHT)]
    sent.wait()
    holding_server.process.send_signal(signal.SIGTERM)
    signalled.set()
    results = [f.result() for f in futures]
    threads.shutdown()
    assert holding_server.process.wait(timeout=90) == 0
    for status, answer, after_signal in results:
        assert status == 200, answer
        assert answer["predictions"][0]["size"] == len(payload)
        assert after_signal  # it was in flight when the signal came
    with pytest.raises(requests.ConnectionError):
        requests.post(holding_server.rest_url + "/v1/models/hpt:predict",
                      json={"instances": [1.0]}, timeout=5)
