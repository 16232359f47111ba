"""Token-tagging latency per sentence: the in-process ``predict`` call of the export (the
baseline) against the project's server over REST (``:predict``, b64 tf.Examples, each
sentence's tags cut to its length by the JSON writer) and gRPC (``Predict``, padded tags
beside ``token_count``), at batch 1 and 128.

The export is the shipped POS example (``configs/pos_tagging.yaml``) trained briefly on
a sample of its corpus (its latency does not depend on how well it tags), or
``--export`` (a folder of versions). Prints one JSON object: per batch size and path the
median ms per request and per sentence over ``--repeats`` calls, and each path's ratio
to the in-process call.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import sys
import tempfile
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "examples"))

import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

import tfbake.serving_input as serving_input  # noqa: E402
from benchmarks.serving_latency import Server, timed  # noqa: E402

BATCHES = (1, 128)


def build_export(work: str, sentences: int) -> tuple[str, list[str]]:
    """The POS example on its first ``sentences`` tagged sentences, one epoch; returns
    the export base path and eval sentences."""
    import pos_data

    from tfbake import stages
    from tfbake.config import config_from_dict

    lines = pos_data.corpus_lines(os.path.join(work, "downloads"))
    counts = pos_data.split(lines[:sentences], os.path.join(work, "data"))
    with open(os.path.join(REPO, "configs", "pos_tagging.yaml")) as f:
        raw = yaml.safe_load(f)
    raw["data"].update(train=os.path.join(work, "data", "train.csv"),
                       eval=os.path.join(work, "data", "eval.csv"))
    raw["artifacts"] = os.path.join(work, "artifacts")
    raw["training"].update(epochs=1, early_stopping=None)
    config = config_from_dict(raw)
    stages.run_all(config)
    with open(os.path.join(work, "data", "eval.csv")) as f:
        eval_sentences = [row["sentence"] for row in csv.DictReader(f)]
    print(f"built on {counts}", file=sys.stderr)
    return config.export_dir_base, eval_sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--export", help="an export base path (default: build one)")
    parser.add_argument("--sentences", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="tagging_latency-")
    base, sentences = (args.export, None) if args.export else build_export(work, args.sentences)
    if sentences is None:
        sentences = ["The quick brown fox jumps over the lazy dog ."] * 128
    spec = {"sentence": tf.io.FixedLenFeature([], tf.string)}
    examples = serving_input.serialize_examples([{"sentence": s} for s in sentences[:128]],
                                                spec)
    version = max(int(v) for v in os.listdir(base) if v.isdigit())
    predict = tf.saved_model.load(os.path.join(base, str(version))).signatures["predict"]
    config = os.path.join(work, "models.config")
    with open(config, "w") as f:
        f.write(f'model_config_list {{ config {{ name: "tagger" base_path: "{base}" '
                'model_platform: "tensorflow" } }\n')
    server = Server(config, [], work)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    figures = {}
    try:
        for n in BATCHES:
            batch = examples[:n]
            tensor = tf.constant(batch)
            body = json.dumps({"signature_name": "predict", "instances": [
                {"b64": base64.b64encode(e).decode()} for e in batch]}).encode()
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "tagger"
            request.model_spec.signature_name = "predict"
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto(batch))
            url = f"http://127.0.0.1:{server.rest_port}/v1/models/tagger:predict"

            def rest(body=body, url=url):
                with urllib.request.urlopen(urllib.request.Request(url, body), timeout=60) as r:
                    r.read()

            paths = {
                "in_process": lambda tensor=tensor: predict(examples=tensor),
                "rest": rest,
                "grpc": lambda request=request: stub.Predict(request, timeout=60),
            }
            measured = {
                name: timed(fn, args.repeats, warmup=3)["p50_ms"] for name, fn in paths.items()
            }
            figures[f"batch_{n}"] = {
                name: {"ms_per_request": round(ms, 3), "ms_per_sentence": round(ms / n, 4),
                       "ratio_to_in_process": round(ms / measured["in_process"], 2)}
                for name, ms in measured.items()
            }
    finally:
        channel.close()
        server.stop()
    print(json.dumps({
        "benchmark": "tagging_latency",
        "model": "configs/pos_tagging.yaml (bi-LSTM), max_tokens 64",
        "baseline": "in_process (the export's predict signature, tf.saved_model.load)",
        "median_of": args.repeats,
        "figures": figures,
    }))


if __name__ == "__main__":
    main()
