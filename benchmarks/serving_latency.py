"""Serving latency and throughput of model_server against the in-process signature call.

One run measures, on the penguins export (``--export``; a comparable small classifier
is built when it is absent): the in-process ``serving_default`` call (the limit), REST
``:predict`` with b64 tf.Examples and gRPC ``Predict``, at batch 1 and 128, with one
client and with 32 concurrent clients; the HTTP stack's own ceiling (a trivial
endpoint of the same server); and, on a wide DNN built here whose call costs >= 1 ms
at batch 1, 32 concurrent batch-1 clients with batching off and on. Prints one JSON
object: figures (p50/p99 in ms, throughput in requests/s), ratios and their targets.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import glob
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, REPO)

import aiohttp  # noqa: E402
import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

import serving_input  # noqa: E402

CONCURRENCY = 32
WIDE_INPUT = 64
WIDE_UNITS = 2048


def percentiles(samples_s):
    a = np.asarray(samples_s) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 4),
            "p99_ms": round(float(np.percentile(a, 99)), 4)}


def timed(fn, n, warmup=20):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    out = percentiles(samples)
    out["throughput_rps"] = round(n / sum(samples), 1)
    return out


# ------------------------------------------------------------------ models


def build_small_classifier(base: str) -> str:
    """A penguins-like classifier: tf.Examples in, classes/scores out, with predict_raw."""
    spec = {"bill_length_mm": tf.io.VarLenFeature(tf.float32),
            "island": tf.io.VarLenFeature(tf.string), "year": tf.io.VarLenFeature(tf.int64)}

    class Classifier(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.normal([3, 3]))

        def _scores(self, bill, island, year):
            x = tf.stack([bill / 50.0, tf.cast(tf.strings.length(island), tf.float32),
                          tf.cast(year - 2008, tf.float32)], axis=1)
            return tf.nn.softmax(x @ self.w)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def classify(self, inputs):
            f = tf.io.parse_example(inputs, spec)
            dense = {k: tf.sparse.to_dense(v) for k, v in f.items()}
            scores = self._scores(dense["bill_length_mm"][:, 0], dense["island"][:, 0],
                                  dense["year"][:, 0])
            classes = tf.tile(tf.constant([["Adelie", "Chinstrap", "Gentoo"]]),
                              [tf.shape(scores)[0], 1])
            return {"classes": classes, "scores": scores}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32),
                                      tf.TensorSpec([None], tf.string),
                                      tf.TensorSpec([None], tf.int64)])
        def predict_raw(self, bill_length_mm, island, year):
            return {"scores": self._scores(bill_length_mm, island, year)}

    module = Classifier()
    path = os.path.join(base, "1")
    tf.saved_model.save(module, path, signatures={
        "serving_default": module.classify, "predict_raw": module.predict_raw})
    return base


def build_wide_dnn(base: str) -> str:
    """A wide DNN (3 x 2048 units) whose batch-1 call costs well over 1 ms."""
    class Wide(tf.Module):
        def __init__(self):
            super().__init__()
            rng = tf.random.Generator.from_seed(0)
            sizes = [WIDE_INPUT, WIDE_UNITS, WIDE_UNITS, WIDE_UNITS, 8]
            self.ws = [tf.Variable(rng.normal([a, b]) / np.sqrt(a))
                       for a, b in zip(sizes, sizes[1:])]

        @tf.function(input_signature=[tf.TensorSpec([None, WIDE_INPUT], tf.float32)])
        def predict(self, x):
            for w in self.ws[:-1]:
                x = tf.nn.relu(x @ w)
            return {"logits": x @ self.ws[-1]}

    module = Wide()
    tf.saved_model.save(module, os.path.join(base, "1"),
                        signatures={"serving_default": module.predict})
    return base


def example_row(export_version: str) -> bytes:
    """One serialized tf.Example typed by the export's predict_raw signature."""
    raw = tf.saved_model.load(export_version).signatures["predict_raw"]
    spec = {}
    row = {}
    for name, s in raw.structured_input_signature[1].items():
        spec[name] = tf.io.VarLenFeature(s.dtype)
        row[name] = {tf.float32: 40.0, tf.int64: 2008, tf.string: "Biscoe"}[s.dtype]
    csv = os.path.join(REPO, "artifacts", "penguins", "data", "eval.csv")
    if os.path.exists(csv):
        import csv as csv_module

        with open(csv, newline="") as f:
            first = next(csv_module.DictReader(f))
        for name, s in spec.items():
            value = first.get(name)
            if value not in (None, "", "NA"):
                row[name] = value if s.dtype == tf.string else (
                    int(value) if s.dtype == tf.int64 else float(value))
    return serving_input.encode_example(row, spec).SerializeToString()


# ------------------------------------------------------------------ server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, config: str, extra: list[str], log_dir: str):
        self.rest_port, self.grpc_port = free_port(), free_port()
        env = dict(os.environ, PYTHONPATH=REPO)
        self.out = open(os.path.join(log_dir, f"server-{self.rest_port}.out"), "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "model_server", f"--model_config_file={config}",
             f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}",
             "--file_system_poll_wait_seconds=0", *extra],
            cwd=REPO, env=env, stdout=self.out, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            self.out.seek(0)
            if "Exporting HTTP/REST API" in self.out.read():
                return
            if self.process.poll() is not None:
                raise RuntimeError("server failed to start")
            time.sleep(0.2)
        raise TimeoutError("server did not start")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def rest_poster(port: int, path: str, body: bytes):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}

    def call():
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(data[:200])
        return data
    return call


async def _rest_load(port, method, path, body, seconds, concurrency):
    count = 0
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker():
            nonlocal count
            while time.perf_counter() < stop_at:
                async with session.request(method, f"http://127.0.0.1:{port}{path}",
                                           data=body) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(await r.text())
                count += 1
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return round(count / (time.perf_counter() - start), 1)


def rest_throughput(port, method, path, body, seconds=3.0, concurrency=CONCURRENCY):
    asyncio.run(_rest_load(port, method, path, body, 0.5, concurrency))  # warm
    return asyncio.run(_rest_load(port, method, path, body, seconds, concurrency))


async def _grpc_load(port, request, seconds, concurrency):
    count = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stop_at = time.perf_counter() + seconds

        async def worker():
            nonlocal count
            while time.perf_counter() < stop_at:
                await stub.Predict(request)
                count += 1
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return round(count / (time.perf_counter() - start), 1)


def grpc_throughput(port, request, seconds=3.0, concurrency=CONCURRENCY):
    asyncio.run(_grpc_load(port, request, 0.5, concurrency))
    return asyncio.run(_grpc_load(port, request, seconds, concurrency))


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--export", default=os.path.join(REPO, "artifacts", "penguins", "export"))
    p.add_argument("--requests", type=int, default=400, help="sequential requests per figure")
    p.add_argument("--seconds", type=float, default=3.0, help="per concurrent-load figure")
    args = p.parse_args(argv)

    work = tempfile.mkdtemp(prefix="serving_latency-")
    export = os.path.abspath(args.export)
    built = False
    if not glob.glob(os.path.join(export, "[0-9]*", "saved_model.pb")):
        export, built = build_small_classifier(os.path.join(work, "classifier")), True
    version_dir = max(glob.glob(os.path.join(export, "[0-9]*")),
                      key=lambda d: int(os.path.basename(d)))
    wide = build_wide_dnn(os.path.join(work, "wide"))

    serialized = example_row(version_dir)
    result = {"export": export, "export_built_for_benchmark": built,
              "machine": {"cpus": os.cpu_count()}, "figures": {}}
    figures = result["figures"]

    # In-process: the limit.
    signature = tf.saved_model.load(version_dir).signatures["serving_default"]
    input_name = list(signature.structured_input_signature[1])[0]
    for batch in (1, 128):
        examples = np.array([serialized] * batch, dtype=object)
        figures[f"in_process_batch{batch}"] = timed(
            lambda e=examples: signature(**{input_name: e}), args.requests)
    wide_fn = tf.saved_model.load(os.path.join(wide, "1")).signatures["serving_default"]
    x1 = np.random.default_rng(0).normal(size=(1, WIDE_INPUT)).astype(np.float32)
    figures["wide_dnn_in_process_batch1"] = timed(lambda: wide_fn(x=x1), 200)

    config = os.path.join(work, "models.config")
    with open(config, "w") as f:
        f.write(f'model_config_list {{ config {{ name: "penguins" base_path: "{export}" '
                f'model_platform: "tensorflow" }} config {{ name: "wide" base_path: "{wide}" '
                'model_platform: "tensorflow" } }\n')
    batching = os.path.join(work, "batching.config")
    with open(batching, "w") as f:
        f.write("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 2000 }\n"
                "max_enqueued_batches { value: 1000 }\nnum_batch_threads { value: 2 }\n")

    b64 = base64.b64encode(serialized).decode()
    server = Server(config, [], work)
    try:
        for batch in (1, 128):
            body = json.dumps({"instances": [{"b64": b64}] * batch}).encode()
            figures[f"rest_predict_batch{batch}"] = timed(
                rest_poster(server.rest_port, "/v1/models/penguins:predict", body), args.requests)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "penguins"
            request.inputs[input_name].CopyFrom(
                tf.make_tensor_proto(np.array([serialized] * batch, dtype=object)))
            channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            figures[f"grpc_predict_batch{batch}"] = timed(
                lambda r=request, s=stub: s.Predict(r), args.requests)
            channel.close()
        body1 = json.dumps({"instances": [{"b64": b64}]}).encode()
        figures["rest_predict_batch1_32_clients_rps"] = rest_throughput(
            server.rest_port, "POST", "/v1/models/penguins:predict", body1, args.seconds)
        figures["http_trivial_endpoint_32_clients_rps"] = rest_throughput(
            server.rest_port, "GET", "/healthz", None, args.seconds)
        request1 = predict_pb2.PredictRequest()
        request1.model_spec.name = "penguins"
        request1.inputs[input_name].CopyFrom(
            tf.make_tensor_proto(np.array([serialized], dtype=object)))
        figures["grpc_predict_batch1_32_clients_rps"] = grpc_throughput(
            server.grpc_port, request1, args.seconds)
        wide_body = json.dumps({"instances": x1.tolist()}).encode()
        figures["wide_dnn_rest_batch1_32_clients_batching_off_rps"] = rest_throughput(
            server.rest_port, "POST", "/v1/models/wide:predict", wide_body, args.seconds)
    finally:
        server.stop()
    server = Server(config, ["--enable_batching", f"--batching_parameters_file={batching}"], work)
    try:
        figures["wide_dnn_rest_batch1_32_clients_batching_on_rps"] = rest_throughput(
            server.rest_port, "POST", "/v1/models/wide:predict", wide_body, args.seconds)
        figures["rest_predict_batch1_32_clients_batching_on_rps"] = rest_throughput(
            server.rest_port, "POST", "/v1/models/penguins:predict", body1, args.seconds)
        figures["http_trivial_endpoint_32_clients_batching_server_rps"] = rest_throughput(
            server.rest_port, "GET", "/healthz", None, args.seconds)
    finally:
        server.stop()

    f = figures
    result["ratios"] = {
        "rest_p50_minus_in_process_p50_batch1_ms": {
            "value": round(f["rest_predict_batch1"]["p50_ms"]
                           - f["in_process_batch1"]["p50_ms"], 4),
            "target": "<= 0.6"},
        "grpc_p50_minus_in_process_p50_batch1_ms": {
            "value": round(f["grpc_predict_batch1"]["p50_ms"]
                           - f["in_process_batch1"]["p50_ms"], 4),
            "target": "<= 0.4"},
        "rest_32_clients_over_http_ceiling": {
            "value": round(f["rest_predict_batch1_32_clients_rps"]
                           / f["http_trivial_endpoint_32_clients_rps"], 3),
            "target": ">= 0.6"},
        "rest_32_clients_over_http_ceiling_batching_on": {
            "value": round(f["rest_predict_batch1_32_clients_batching_on_rps"]
                           / f["http_trivial_endpoint_32_clients_batching_server_rps"], 3),
            "target": ">= 0.6"},
        "wide_dnn_batching_on_over_off": {
            "value": round(f["wide_dnn_rest_batch1_32_clients_batching_on_rps"]
                           / f["wide_dnn_rest_batch1_32_clients_batching_off_rps"], 3),
            "target": ">= 3"},
    }
    result["notes"] = [
        "2 CPUs shared by the load generator (this process) and the server process.",
        "Batching off, 32-client REST throughput is bounded by the model call itself: "
        "1000 / in_process_batch1 p50 ms requests/s at best, against an HTTP ceiling "
        "of several thousand; with batching on the calls are merged.",
        "Latency differences include the Python client's own cost (http.client for REST, "
        "the synchronous grpcio stub for gRPC).",
    ]
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
