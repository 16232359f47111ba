"""The end of the penguins demo: raw eval rows in, species names out.

1. In process: a few eval rows, encoded as serialized ``tf.Example``s with the raw
   feature spec (what a TF Serving client sends), through the export's
   ``classification`` signature; then the eval accuracy measured by the trainer.
2. Over the wire: ``tfbake serve --num_workers 2`` on the export folder (two real server
   processes on the same ports, the same REST and gRPC API as
   tensorflow_model_server), the same rows sent as base64
   ``tf.Example``s to REST ``:predict``, as JSON ``examples`` to REST ``:classify``, and
   through gRPC ``Classify`` and ``Predict`` with the tensorflow-serving-api stubs.
"""

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

import model_server
import serving_input
import trainer
import transform
from tfbake import stages
from tfbake.config import load_config


def eval_rows(config, count: int) -> tuple[list[dict], list[str]]:
    """``count`` eval rows spread over the file (it is sorted by species), and labels."""
    decoder = transform.CsvRowDecoder(
        config.raw_feature_spec(),
        transform.column_names(config.data.eval, config.data.csv),
        config.data.csv,
    )
    with open(config.data.eval) as f:
        lines = f.read().splitlines()[1:]
    rows = [decoder.decode_dict(line) for line in lines[:: max(1, len(lines) // count)][:count]]
    return rows, [row.pop(config.label.name) for row in rows]


def show(title: str, rows, labels, answers) -> None:
    """One line per row: a few raw features -> the best class (the true one) [scores]."""
    print(f"\n{title}")
    for row, label, ranked in zip(rows, labels, answers):
        best = max(ranked, key=lambda pair: pair[1])[0]
        scores = ", ".join(f"{name} {score:.3f}" for name, score in ranked)
        shown = {k: v for k, v in row.items() if k in ("island", "bill_length_mm", "sex")}
        print(f"  {shown} -> {best} (true: {label}) [{scores}]")


def in_process(config, export_dir, rows, labels, examples) -> None:
    classify = tf.saved_model.load(export_dir).signatures["classification"]
    answer = classify(inputs=tf.constant(examples))
    ranked = [
        list(zip([c.decode() for c in classes], scores.tolist()))
        for classes, scores in zip(answer["classes"].numpy(), answer["scores"].numpy())
    ]
    show(f"in process: {export_dir}, signature 'classification'", rows, labels, ranked)
    with open(os.path.join(config.trainer_dir, "metrics.json")) as f:
        print(f"eval accuracy: {json.load(f)['accuracy']:.4f}")


# Server processes sharing the ports: each new connection goes to one of them.
NUM_WORKERS = 2


def start_server(config_path: str) -> tuple[subprocess.Popen, str, str]:
    """``tfbake serve --config`` on free ports; returns the process, REST URL, gRPC target."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfbake",
            "serve",
            "--config",
            config_path,
            "--port=0",
            "--rest_api_port=-1",
            f"--num_workers={NUM_WORKERS}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    addresses = {}
    for line in process.stdout:
        kind_and_address = model_server.listening_address(line)
        if kind_and_address:
            addresses.update([kind_and_address])
        if len(addresses) == 2:
            return process, addresses["rest"], addresses["grpc"]
    raise RuntimeError(f"the server exited with {process.wait()}")


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def over_the_wire(config, config_path, rows, labels, examples) -> None:
    process, rest, target = start_server(config_path)
    model = f"{rest}/v1/models/{config.name}"
    try:
        print(f"\nserver ({NUM_WORKERS} processes): REST {rest}, gRPC {target}, "
              f"model {config.name!r}")
        b64 = [{"b64": base64.b64encode(e).decode()} for e in examples]
        predictions = post(f"{model}:predict", {"instances": b64})["predictions"]
        show(
            "REST :predict, base64 tf.Examples (serving_default)",
            rows,
            labels,
            [list(zip(p["classes"], p["scores"])) for p in predictions],
        )
        results = post(f"{model}:classify", {"examples": rows})["results"]
        show("REST :classify, JSON examples", rows, labels, results)

        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
        request = classification_pb2.ClassificationRequest(
            input=input_pb2.Input(
                example_list=input_pb2.ExampleList(
                    examples=[tf.train.Example.FromString(e) for e in examples]
                )
            )
        )
        request.model_spec.name = config.name
        result = stub.Classify(request, timeout=60).result
        show(
            "gRPC Classify",
            rows,
            labels,
            [[(c.label, c.score) for c in row.classes] for row in result.classifications],
        )
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = config.name, "predict"
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples))
        outputs = stub.Predict(request, timeout=60).outputs
        classes = tf.make_ndarray(outputs["all_classes"]).astype(str)
        probabilities = tf.make_ndarray(outputs["probabilities"])
        show(
            "gRPC Predict, signature 'predict'",
            rows,
            labels,
            [list(zip(c, p.tolist())) for c, p in zip(classes, probabilities)],
        )
        with urllib.request.urlopen(f"{rest}/console/api/models", timeout=60) as response:
            models = json.load(response)["models"]
        states = ", ".join(
            f"{m['name']} v{v['version']} {v['state']}" for m in models for v in m["versions"]
        )
        print(f"\nweb console: open {rest}/ in a browser ({states})")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        print(f"\nserver stopped (exit {code})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--rows", type=int, default=5)
    args = parser.parse_args()
    config = load_config(args.config)
    export_dir = trainer.latest_export(config.export_dir_base)
    rows, labels = eval_rows(config, args.rows)
    examples = serving_input.serialize_examples(rows, stages.serving_feature_spec(config))
    in_process(config, export_dir, rows, labels, examples)
    started = time.monotonic()
    over_the_wire(config, args.config, rows, labels, examples)
    print(f"(serving round trip, start to stop: {time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
