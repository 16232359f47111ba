"""``--num_workers 2``: two server processes share the gRPC and REST ports, answer
alike, sum their metrics, pick up a new version each, and drain together on SIGTERM.

One server for the module; its batches wait up to 1.5 s for more rows (and never
fill), so the requests of the last test are still in flight when SIGTERM comes.
The last test stops it.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import re
import signal
import threading
import time

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

MODEL = "versioned"
CLIENTS = 24
HOLD_MICROS = 1_500_000
METRICS_PATH = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def workers_server(model_dirs, helpers, tmp_path_factory):
    work = tmp_path_factory.mktemp("workers")
    base = work / MODEL
    base.mkdir()
    helpers.drop_version(os.path.join(model_dirs["staged"], "1"), str(base), 1)
    params = work / "batching.config"
    params.write_text(f"max_batch_size {{ value: {4 * CLIENTS} }}\n"
                      f"batch_timeout_micros {{ value: {HOLD_MICROS} }}\n"
                      "num_batch_threads { value: 1 }\n")
    monitoring = work / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    server = helpers.ServerProcess(
        [f"--model_name={MODEL}", f"--model_base_path={base}", "--num_workers=2", "--port=0",
         f"--rest_api_port={helpers.free_port()}", "--file_system_poll_wait_seconds=0.3",
         "--enable_batching", f"--batching_parameters_file={params}",
         f"--monitoring_config_file={monitoring}", f"--request_log_dir={work / 'log'}"],
        str(work), "workers",
    ).wait_ready()
    server.base_path = str(base)
    server.log_dir = str(work / "log")
    yield server
    server.stop()


def metrics(server) -> tuple[dict[int, float], float]:
    """Requests answered by each process (by pid), and the model's OK request count."""
    page = requests.get(server.rest_url + METRICS_PATH, timeout=30).text
    per_pid = {int(pid): float(value) for pid, value in re.findall(
        r'^:tfbake:serving:worker_request_count\{pid="(\d+)"\} (\S+)$', page, re.M)}
    ok = re.search(rf'^:tensorflow:serving:request_count\{{model_name="{MODEL}",'
                   r'status="OK"\} (\S+)$', page, re.M)
    return per_pid, float(ok.group(1)) if ok else 0.0


def rest_predict(server, _i=0) -> float:
    # No session: each request opens its own connection, which the kernel gives to
    # either process.
    answer = requests.post(f"{server.rest_url}/v1/models/{MODEL}:predict",
                           json={"instances": [1.0]}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"][0]


def own_channel(server) -> grpc.Channel:
    """A channel on its own connection (channels of one process otherwise share one,
    which the kernel gives to one process)."""
    return grpc.insecure_channel(server.grpc_target,
                                 options=[("grpc.use_local_subchannel_pool", 1)])


def grpc_predict(server, _i=0) -> float:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0], tf.float32))
    with own_channel(server) as channel:
        answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=30)
    return answer.outputs["version"].float_val[0]


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


def served_by(server, send) -> tuple[list, dict[int, float]]:
    """Answers of ``CLIENTS`` concurrent ``send`` calls, and the requests each
    process answered meanwhile."""
    before, _ = metrics(server)
    answers = concurrently(send, server)
    after, _ = metrics(server)
    return answers, {pid: after[pid] - before.get(pid, 0) for pid in after}


def concurrently(send, server) -> list:
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda i: send(server, i), range(CLIENTS)))


def test_both_processes_answer_rest_and_grpc_and_metrics_add_up(workers_server):
    per_pid_before, ok_before = metrics(workers_server)
    rest_answers, rest_by_pid = served_by(workers_server, rest_predict)
    grpc_answers, grpc_by_pid = served_by(workers_server, grpc_predict)
    per_pid, ok = metrics(workers_server)

    assert rest_answers == [1.0] * CLIENTS and grpc_answers == [1.0] * CLIENTS
    assert set(per_pid) == children(workers_server.process.pid)
    assert len(per_pid) == 2
    assert all(count > 0 for count in rest_by_pid.values()), rest_by_pid
    assert all(count > 0 for count in grpc_by_pid.values()), grpc_by_pid
    # Any process's page shows the sums over both.
    assert ok - ok_before == 2 * CLIENTS
    assert sum(per_pid.values()) - sum(per_pid_before.values()) == 2 * CLIENTS


def test_request_log_counters_are_summed_once_over_processes(workers_server):
    served_by(workers_server, rest_predict)
    written = rf'^:tfbake:serving:request_log_written_total\{{model_name="{MODEL}"\}} (\S+)$'
    deadline = time.monotonic() + 30
    while True:  # The log is written off the request path: wait for the writers.
        page = requests.get(workers_server.rest_url + METRICS_PATH, timeout=30).text
        samples = [float(v) for v in re.findall(written, page, re.M)]
        _, ok = metrics(workers_server)
        if samples == [ok] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # One sample (the sum over both processes, not one per process beside it), equal to
    # every answered request, each written to its own process's files.
    assert samples == [ok], (samples, ok)
    pids = {name.split("-")[-2] for name in os.listdir(workers_server.log_dir)}
    assert pids == {str(pid) for pid in children(workers_server.process.pid)}


def test_model_status_is_the_same_from_either_process(workers_server):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL

    def status(server, _i):
        with own_channel(server) as channel:
            answer = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                request, timeout=30)
        return [(s.version, s.state) for s in answer.model_version_status]

    answers, _ = served_by(workers_server, status)
    assert answers == [[(1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]] * CLIENTS


def test_config_reload_is_refused_naming_the_process_count(workers_server):
    from tensorflow_serving.apis import model_management_pb2

    with grpc.insecure_channel(workers_server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                model_management_pb2.ReloadConfigRequest(), timeout=30)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "one of the 2 server processes (--num_workers)" in refused.value.details()


def test_new_version_reaches_every_process(workers_server, model_dirs, helpers):
    helpers.drop_version(os.path.join(model_dirs["staged"], "2"), workers_server.base_path, 2)
    deadline = time.monotonic() + 60
    while True:
        # Each process finds the version on its own poll: until both have, some
        # fresh connections still get version 1.
        answers, by_pid = served_by(workers_server, rest_predict)
        if answers == [2.0] * CLIENTS or time.monotonic() > deadline:
            break
    assert answers == [2.0] * CLIENTS
    assert len(by_pid) == 2 and all(count > 0 for count in by_pid.values()), by_pid


def test_sigterm_answers_requests_in_flight_in_every_process_then_exits_0(workers_server):
    pids = children(workers_server.process.pid)
    host, port = workers_server.rest_url.split("//")[1].split(":")
    body = json.dumps({"instances": [1.0]}).encode()
    sent = threading.Barrier(CLIENTS + 1)
    signalled = threading.Event()

    def one(_i):
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request("POST", f"/v1/models/{MODEL}:predict", body,
                           {"Content-Type": "application/json"})
        sent.wait()
        response = connection.getresponse()
        return response.status, signalled.is_set()

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(one, i) for i in range(CLIENTS)]
        sent.wait()
        workers_server.process.send_signal(signal.SIGTERM)
        signalled.set()
        results = [f.result() for f in futures]
    assert workers_server.process.wait(timeout=60) == 0
    # Every request was waiting in a batch when the signal came, and was answered.
    assert results == [(200, True)] * CLIENTS
    assert len(pids) == 2 and not any(os.path.exists(f"/proc/{pid}") for pid in pids)


def test_num_workers_below_one_is_refused_naming_the_flag():
    from model_server.config import ConfigError, parse_flags

    with pytest.raises(ConfigError, match="--num_workers must be >= 1, got 0"):
        parse_flags(["--model_base_path=/m", "--num_workers=0"])
