"""How fast the server refuses a request that asks for a huge tensor, and what it costs
its memory.

A 30-byte gRPC ``PredictRequest`` with ``tensor_shape [2**28]`` and one ``float_val``
would become a 1 GiB float tensor if decoded. A real ``python -m tfbake.model_server`` (default
limits: ``--max_request_tensor_bytes`` = the 64 MiB body limit) on a small y = 0.5 x + 2
model refuses it; the figure is the median time of that refusal over ``--rounds``
calls, the baseline the median of a well-formed one-value ``Predict`` on the same
channel in the same run. Also reported: the server's peak RSS growth across the
amplifying calls, against the limit. Prints one JSON object; the target is a refusal
under 100 ms with less memory growth than the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, REPO)

import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.framework import tensor_shape_pb2, types_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from tfbake.model_server import listening_address  # noqa: E402
from tfbake.model_server.config import ServerOptions  # noqa: E402

TARGET_MS = 100.0


class HalfPlusTwo(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def predict(self, x):
        return {"y": 0.5 * x + 2.0}


def peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def timed_ms(call, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="amplifying-")
    module = HalfPlusTwo()
    tf.saved_model.save(module, os.path.join(work, "1"),
                        signatures={"serving_default": module.predict})
    process = subprocess.Popen(
        [sys.executable, "-m", "tfbake.model_server", "--model_name=m", f"--model_base_path={work}",
         "--port=0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    try:
        target = next(address for kind, address in
                      (listening_address(line) or (None, None) for line in process.stdout)
                      if kind == "grpc")
        channel = grpc.insecure_channel(target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        good = predict_pb2.PredictRequest()
        good.model_spec.name = "m"
        good.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
        amplifying = predict_pb2.PredictRequest()
        amplifying.model_spec.name = "m"
        tensor = amplifying.inputs["x"]
        tensor.dtype = types_pb2.DT_FLOAT
        tensor.tensor_shape.dim.append(tensor_shape_pb2.TensorShapeProto.Dim(size=2**28))
        tensor.float_val.append(1.0)

        def refused():
            try:
                stub.Predict(amplifying, timeout=60)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
                return
            raise AssertionError("the amplifying request was answered")

        for _ in range(5):  # warm the channel and the model
            stub.Predict(good, timeout=60)
        baseline_ms = timed_ms(lambda: stub.Predict(good, timeout=60), args.rounds)
        peak_before = peak_rss_bytes(process.pid)
        refusal_ms = timed_ms(refused, args.rounds)
        growth = peak_rss_bytes(process.pid) - peak_before
        limit = ServerOptions().tensor_limit()
        print(json.dumps({
            "request_bytes": amplifying.ByteSize(),
            "would_decode_to_bytes": 4 * 2**28,
            "refusal_p50_ms": round(refusal_ms, 3),
            "baseline_predict_p50_ms": round(baseline_ms, 3),
            "ratio": round(refusal_ms / baseline_ms, 3),
            "target_ms": TARGET_MS,
            "peak_rss_growth_bytes": growth,
            "tensor_limit_bytes": limit,
            "within_target": refusal_ms < TARGET_MS and growth < limit,
        }))
        channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


if __name__ == "__main__":
    main()
