"""gRPC transport cost: grpc.aio server against grpcio's synchronous server (a thread pool).

The same ``PredictionService.Predict`` handler, answering a fixed ``PredictResponse``
without any model work, runs in a server process of each kind; a synchronous grpcio
stub (as in ``serving_latency.py``) times sequential calls (p50/p99), and its 32-client
load (8 connections) measures throughput. The model server runs its
gRPC and REST front ends on one asyncio loop (the batch scheduler lives there); a
synchronous server would add a hop onto that loop and back per call, so it would only
pay if its own per-call cost were lower by more than that hop. Prints one JSON object:
each kind's figures, the synchronous kind as the baseline and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import grpc
import numpy as np
from serving_latency import grpc_throughput
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def _response() -> predict_pb2.PredictResponse:
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "m"
    response.model_spec.version.value = 1
    scores = response.outputs["scores"]
    scores.dtype = 1  # DT_FLOAT
    scores.tensor_shape.dim.add(size=1)
    scores.tensor_shape.dim.add(size=3)
    scores.float_val.extend([0.1, 0.2, 0.7])
    return response


def _request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    examples = request.inputs["inputs"]
    examples.dtype = 7  # DT_STRING
    examples.tensor_shape.dim.add(size=1)
    examples.string_val.append(b"\n" + b"x" * 120)
    return request


class _Sync(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self):
        self.response = _response()

    def Predict(self, request, context):  # noqa: N802 - generated API name
        return self.response


class _Aio(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self):
        self.response = _response()

    async def Predict(self, request, context):  # noqa: N802
        return self.response


def serve(kind: str) -> None:
    """Runs one server of ``kind`` on a free port, prints the port, serves until killed."""
    if kind == "sync":
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(os.cpu_count() * 4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Sync(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        print(port, flush=True)
        server.wait_for_termination()
        return

    async def main():
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Aio(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def sequential(port: int, n: int) -> dict:
    request = _request()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(50):
            stub.Predict(request)
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            stub.Predict(request)
            samples.append(time.perf_counter() - t)
    a = np.asarray(samples) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 4),
            "p99_ms": round(float(np.percentile(a, 99)), 4)}


def measure(kind: str, n: int, seconds: float) -> dict:
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind],
                               stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        figures = sequential(port, n)
        figures["throughput_32_clients_rps"] = grpc_throughput(port, _request(), seconds)
        return figures
    finally:
        process.kill()
        process.wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--serve", choices=("aio", "sync"), help=argparse.SUPPRESS)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3, help="runs of each kind (medians)")
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    runs = {"aio": [], "sync": []}
    for _ in range(args.repeats):
        for kind in runs:  # interleaved, so that both see the same machine load
            runs[kind].append(measure(kind, args.requests, args.seconds))
    figures = {kind: {key: round(float(np.median([r[key] for r in rs])), 4) for key in rs[0]}
               for kind, rs in runs.items()}
    result = {
        "machine": {"cpus": os.cpu_count()},
        "repeats": args.repeats,
        "figures": figures,
        "baseline": "sync",
        "ratios": {
            "aio_p50_over_sync_p50": round(figures["aio"]["p50_ms"] / figures["sync"]["p50_ms"], 3),
            "aio_throughput_over_sync_throughput": round(
                figures["aio"]["throughput_32_clients_rps"]
                / figures["sync"]["throughput_32_clients_rps"], 3),
        },
        "runs": runs,
        "notes": ["A fixed answer, no model work: the transport's own per-call cost; "
                  "client and server share the machine's cores."],
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
