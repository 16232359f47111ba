"""Server-side batching merges concurrent requests; SIGTERM finishes in-flight work."""

from __future__ import annotations

import re
import threading
import time

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


def test_sigterm_lets_in_flight_requests_finish(batching_server):
    # A request waits ~50 ms in the batch queue; SIGTERM arrives meanwhile.
    url = batching_server.rest_url + "/v1/models/hpt:predict"
    requests.post(url, json={"instances": [1.0]}, timeout=30)  # connection warm
    result = {}

    def in_flight():
        result["response"] = requests.post(url, json={"instances": [4.0]}, timeout=30)

    thread = threading.Thread(target=in_flight)
    thread.start()
    time.sleep(0.02)
    code = batching_server.stop()
    thread.join()
    assert code == 0
    assert result["response"].json() == {"predictions": [4.0]}
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json={"instances": [1.0]}, timeout=5)
