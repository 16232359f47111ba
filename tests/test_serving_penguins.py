"""The penguins export behind a real ``tfbake serve`` process: REST and gRPC answer
exactly what the in-process signature answers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfbake import model_server, serving_input, stages, transform

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def requests_and_answers(penguins_run):
    """Eval rows as dicts and serialized tf.Examples, and the in-process answers."""
    config = penguins_run.config
    decoder = transform.CsvRowDecoder(
        config.raw_feature_spec(), transform.read_header(config.data.eval, ","), config.data.csv
    )
    with open(config.data.eval) as f:
        rows = [decoder.decode_dict(line) for line in f.read().splitlines()[1:]]
    for row in rows:
        row.pop(config.label.name)
    examples = serving_input.serialize_examples(rows, stages.serving_feature_spec(config))
    loaded = tf.saved_model.load(penguins_run.export_dir)
    predict = loaded.signatures["predict"](examples=tf.constant(examples))
    return rows, examples, {k: v.numpy() for k, v in predict.items()}


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def test_rest_predict_with_base64_examples(served, penguins_run, requests_and_answers):
    rest, _ = served
    _, examples, expected = requests_and_answers
    body = {
        "signature_name": "predict",
        "instances": [{"b64": base64.b64encode(e).decode()} for e in examples],
    }
    predictions = _post(f"{rest}/v1/models/penguins:predict", body)["predictions"]
    probabilities = np.array([p["probabilities"] for p in predictions])
    assert np.abs(probabilities - expected["probabilities"]).max() <= TOLERANCE
    assert [p["classes"] for p in predictions] == expected["classes"].astype(str).tolist()


def test_rest_classify_with_json_examples(served, requests_and_answers):
    rest, _ = served
    rows, _, expected = requests_and_answers
    results = _post(f"{rest}/v1/models/penguins:classify", {"examples": rows})["results"]
    names = expected["all_classes"][0].astype(str).tolist()
    assert [[c for c, _ in r] for r in results] == [names] * len(rows)
    scores = np.array([[s for _, s in r] for r in results])
    assert np.abs(scores - expected["probabilities"]).max() <= TOLERANCE


def test_grpc_predict_and_classify(served, penguins_run, requests_and_answers):
    _, target = served
    _, examples, expected = requests_and_answers
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "penguins", "predict"
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples))
    response = stub.Predict(request, timeout=60)
    assert response.model_spec.version.value == int(os.path.basename(penguins_run.export_dir))
    got = tf.make_ndarray(response.outputs["probabilities"])
    assert np.abs(got - expected["probabilities"]).max() <= TOLERANCE

    request = classification_pb2.ClassificationRequest(
        input=input_pb2.Input(
            example_list=input_pb2.ExampleList(
                examples=[tf.train.Example.FromString(e) for e in examples]
            )
        )
    )
    request.model_spec.name = "penguins"
    result = stub.Classify(request, timeout=60).result
    scores = np.array([[c.score for c in r.classes] for r in result.classifications])
    assert np.abs(scores - expected["probabilities"]).max() <= TOLERANCE


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_client_classifies_plain_dicts(served, requests_and_answers, protocol):
    rest, target = served
    rows, _, expected = requests_and_answers
    with model_server.Client(rest if protocol == "rest" else target, protocol) as client:
        results = client.classify("penguins", rows)
    scores = np.array([[s for _, s in r] for r in results])
    assert np.abs(scores - expected["probabilities"]).max() <= TOLERANCE


def test_tfbake_predict_streams_a_csv_to_jsonl(
    served, penguins_run, requests_and_answers, venv_bin, tmp_path
):
    rest, _ = served
    _, _, expected = requests_and_answers
    out = tmp_path / "results.jsonl"
    result = subprocess.run(
        [
            os.path.join(venv_bin, "tfbake"),
            "predict",
            "--server",
            rest,
            "--model",
            "penguins",
            "--input",
            penguins_run.config.data.eval,
            "--output",
            str(out),
            "--batch_size",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(expected["probabilities"])  # every eval row, in order
    scores = np.array([r["scores"] for r in records])
    assert np.abs(scores - expected["probabilities"]).max() <= TOLERANCE



# A required feature missing from the second example: one sentence, over every API.
MISSING_YEAR = 'Feature "year" (int) is required but missing in example 1'


@pytest.fixture(scope="module")
def missing_year(requests_and_answers) -> list[tf.train.Example]:
    _, examples, _ = requests_and_answers
    second = tf.train.Example.FromString(examples[1])
    del second.features.feature["year"]
    return [tf.train.Example.FromString(examples[0]), second]


def _rest_error(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=60)
    return error.value.code, json.load(error.value)


def test_a_missing_required_feature_is_one_sentence_over_rest(
    served, missing_year, requests_and_answers
):
    rest, _ = served
    b64 = [{"b64": base64.b64encode(e.SerializeToString()).decode()} for e in missing_year]
    predict = {"signature_name": "predict", "instances": b64}
    assert _rest_error(f"{rest}/v1/models/penguins:predict", predict) == (
        400, {"error": MISSING_YEAR})
    rows, _, _ = requests_and_answers
    examples = [rows[0], {k: v for k, v in rows[1].items() if k != "year"}]
    assert _rest_error(f"{rest}/v1/models/penguins:classify", {"examples": examples}) == (
        400, {"error": MISSING_YEAR})


def test_a_missing_required_feature_is_one_sentence_over_grpc(served, missing_year):
    _, target = served
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "penguins", "predict"
    request.inputs["examples"].CopyFrom(
        tf.make_tensor_proto([e.SerializeToString() for e in missing_year])
    )
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=60)
    assert (error.value.code(), error.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, MISSING_YEAR)
    request = classification_pb2.ClassificationRequest(
        input=input_pb2.Input(example_list=input_pb2.ExampleList(examples=missing_year))
    )
    request.model_spec.name = "penguins"
    with pytest.raises(grpc.RpcError) as error:
        stub.Classify(request, timeout=60)
    assert (error.value.code(), error.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, MISSING_YEAR)


def test_a_value_of_the_wrong_type_is_one_sentence(served, requests_and_answers):
    rest, _ = served
    rows, _, _ = requests_and_answers
    examples = [rows[0], {**rows[1], "year": 2008.5}]  # a JSON float: a float_list feature
    assert _rest_error(f"{rest}/v1/models/penguins:classify", {"examples": examples}) == (
        400, {"error": 'Expected feature "year" as int, got float in example 1'})
    # A JSON integer is an int64_list feature, as in TF Serving: for a nullable float
    # feature (parsed as a VarLenFeature, whose message TensorFlow words otherwise).
    examples = [rows[0], rows[1], {**rows[2], "body_mass_g": 4200}]
    assert _rest_error(f"{rest}/v1/models/penguins:classify", {"examples": examples}) == (
        400, {"error": 'Expected feature "body_mass_g" as float, got int in example 2'})
