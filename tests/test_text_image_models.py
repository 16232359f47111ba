"""A text classifier and an image classifier, configured by type and hyperparameters
only, trained on tiny data through the real pipeline (declarative text and image ops,
Beam -> training -> export) and served by a real ``tfbake serve`` process, with the
canned-estimator signatures.

Every served answer is compared with the in-process call of the loaded export.
"""

from __future__ import annotations

import base64
import io
import json
import random
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    prediction_service_pb2_grpc,
)

from tests.conftest import serve, write_config
from tests.trainer.conftest import write_csv
from tests.trainer.test_canned_signatures import (
    BATCH,
    PREDICT,
    _check_tf_serving_rules,
    _classifier_table,
    _io,
    _multi_head_table,
    _multi_label_table,
    _signature_defs,
)
from tfbake import serving_input

TOLERANCE = 1e-5
GOOD = ["great", "superb", "moving", "fun", "delight"]
BAD = ["dull", "awful", "boring", "mess", "tedious"]
FILLER = ["the", "film", "plot", "cast", "story", "a", "was"]
# Each image class is where an 8x8 grayscale image is bright.
IMAGE_CLASSES = ("top", "bottom", "left")
MAX_TOKENS, SIZE = 8, 8


def _reviews(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        fresh = rng.random() < 0.5
        words = rng.sample(FILLER, 3) + rng.sample(GOOD if fresh else BAD, 2)
        rng.shuffle(words)
        label = "fresh" if fresh else "rotten"
        rows.append({"review": " ".join(words).capitalize(), "label": label})
    return rows


def png_bytes(pixels: np.ndarray) -> bytes:
    """A uint8 [H, W] array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _image(kind: str, rng: np.random.Generator) -> bytes:
    pixels = rng.integers(0, 60, size=(8, 8))
    region = {"top": np.s_[:4, :], "bottom": np.s_[4:, :], "left": np.s_[:, :4]}[kind]
    pixels[region] += 180
    return png_bytes(pixels)


def _images(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    kinds = [IMAGE_CLASSES[i % 3] for i in range(n)]
    return [{"picture": _image(kind, rng), "label": kind} for kind in kinds]


def _write_examples(path, rows: list[dict]) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            example = tf.train.Example()
            for key, value in row.items():
                value = value.encode() if isinstance(value, str) else value
                example.features.feature[key].bytes_list.value.append(value)
            writer.write(example.SerializeToString())
    return str(path)


def _config(tmp, name: str, data: dict, features: dict, preprocessing: dict, model: dict):
    return {
        "name": name,
        "artifacts": str(tmp / name),
        "data": data,
        "features": features,
        "label": {"name": "label", "type": "string"},
        "preprocessing": preprocessing,
        "model": {**model, "learning_rate": 0.01},
        "training": {"epochs": 30, "batch_size": 16, "early_stopping": None},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both pipelines run for real (one Beam job each); name -> (config, export, metrics)."""
    from tfbake import stages
    from tfbake.config import load_config

    tmp = tmp_path_factory.mktemp("text_image")
    text_data = {
        "format": "csv",
        "train": write_csv(tmp / "reviews_train.csv", _reviews(80, 0)),
        "eval": write_csv(tmp / "reviews_eval.csv", _reviews(30, 1)),
    }
    image_data = {
        "format": "tfrecord",
        "train": _write_examples(tmp / "images_train.tfrecord", _images(60, 0)),
        "eval": _write_examples(tmp / "images_eval.tfrecord", _images(30, 1)),
    }
    raws = [
        _config(
            tmp, "reviews", text_data, {"review": {"type": "string"}},
            {"review": {"text": {"output": "ids", "max_tokens": MAX_TOKENS}}},
            {"type": "text_classifier", "encoder": "cnn", "embedding_dim": 8, "units": 8,
             "hidden_units": [8]},
        ),
        _config(
            tmp, "shapes", image_data, {"picture": {"type": "string", "media": "image"}},
            {"picture": {"image": {"height": SIZE, "width": SIZE, "channels": 1}}},
            {"type": "image_classifier", "filters": [4], "hidden_units": [8]},
        ),
    ]
    results = {}
    for raw in raws:
        config = load_config(write_config(tmp, raw))
        summary = stages.run_all(config)
        results[raw["name"]] = (config, summary["export"], summary["eval_metrics"])
    return results


@pytest.fixture(scope="module")
def served(runs, python, tmp_path_factory):
    """One real ``tfbake serve`` process serving both exports: ``(rest_url, grpc_target)``."""
    work = tmp_path_factory.mktemp("serve_text_image")
    models = "".join(
        f'config {{ name: "{name}" base_path: "{config.export_dir_base}" '
        f'model_platform: "tensorflow" }}\n'
        for name, (config, _, _) in runs.items()
    )
    (work / "models.config").write_text(f"model_config_list {{\n{models}}}\n")
    with serve(python, [f"--model_config_file={work / 'models.config'}"], work) as urls:
        yield urls


# The requests: the eval rows of each model, as plain values and as tf.Examples.
ROWS = {
    "reviews": [{"review": r["review"]} for r in _reviews(6, 2)] + [{"review": ""}],
    "shapes": [{"picture": r["picture"]} for r in _images(6, 2)],
}


def _examples(name: str) -> list[bytes]:
    spec = {key: tf.io.FixedLenFeature([], tf.string) for key in ROWS[name][0]}
    return serving_input.serialize_examples(ROWS[name], spec)


def _json_row(row: dict) -> dict:
    """A classify example in TF Serving's JSON: bytes as {"b64": ...}."""
    return {
        k: {"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v
        for k, v in row.items()
    }


def _in_process(runs, name: str) -> dict:
    loaded = tf.saved_model.load(runs[name][1])
    answer = loaded.signatures["predict"](examples=tf.constant(_examples(name)))
    return {k: v.numpy() for k, v in answer.items()}


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def test_models_learn_the_tiny_data(runs):
    # Independent reason: the words (the bright region) decide the class exactly.
    for name, (_, _, metrics) in runs.items():
        assert metrics["accuracy"] >= 0.9, (name, metrics)


@pytest.mark.parametrize("name", list(ROWS))
def test_rest_predict_with_base64_examples(name, runs, served):
    rest, _ = served
    expected = _in_process(runs, name)
    body = {
        "signature_name": "predict",
        "instances": [{"b64": base64.b64encode(e).decode()} for e in _examples(name)],
    }
    predictions = _post(f"{rest}/v1/models/{name}:predict", body)["predictions"]
    got = np.array([p["probabilities"] for p in predictions])
    assert np.abs(got - expected["probabilities"]).max() <= TOLERANCE
    assert [p["classes"] for p in predictions] == expected["classes"].astype(str).tolist()


@pytest.mark.parametrize("name", list(ROWS))
def test_rest_classify_with_json_examples(name, runs, served):
    rest, _ = served
    expected = _in_process(runs, name)
    body = {"examples": [_json_row(row) for row in ROWS[name]]}
    results = _post(f"{rest}/v1/models/{name}:classify", body)["results"]
    names = expected["all_classes"][0].astype(str).tolist()
    assert [[c for c, _ in r] for r in results] == [names] * len(ROWS[name])
    scores = np.array([[s for _, s in r] for r in results])
    assert np.abs(scores - expected["probabilities"]).max() <= TOLERANCE


@pytest.mark.parametrize("name", list(ROWS))
def test_grpc_classify(name, runs, served):
    _, target = served
    expected = _in_process(runs, name)
    request = classification_pb2.ClassificationRequest(
        input=input_pb2.Input(
            example_list=input_pb2.ExampleList(
                examples=[tf.train.Example.FromString(e) for e in _examples(name)]
            )
        )
    )
    request.model_spec.name = name
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        result = stub.Classify(request, timeout=60).result
    labels = [[c.label for c in r.classes] for r in result.classifications]
    assert labels == expected["all_classes"].astype(str).tolist()
    scores = np.array([[c.score for c in r.classes] for r in result.classifications])
    assert np.abs(scores - expected["probabilities"]).max() <= TOLERANCE


# The canned-estimator signature table (written from the Estimator sources in
# tests/trainer/test_canned_signatures.py), plus the project's predict_raw and
# transform_features over these models' raw and transformed features.
SIGNATURE_TABLES = {
    "reviews": (
        _classifier_table(2),
        {"review": ("string", BATCH)},
        {"review": ("int64", [-1, MAX_TOKENS])},
    ),
    "shapes": (
        _classifier_table(3),
        {"picture": ("string", BATCH)},
        {"picture": ("float32", [-1, SIZE, SIZE, 1])},
    ),
}


@pytest.mark.parametrize("name", list(SIGNATURE_TABLES))
def test_export_signatures_follow_the_estimator_table(name, runs):
    table, raw, transformed = SIGNATURE_TABLES[name]
    expected = {
        **table,
        "predict_raw": {"method": PREDICT, "inputs": raw, "outputs": table["predict"]["outputs"]},
        "transform_features": {
            "method": PREDICT,
            "inputs": {"examples": ("string", BATCH)},
            "outputs": transformed,
        },
    }
    _assert_signatures(runs[name][1], expected)


def _assert_signatures(export_dir: str, expected: dict) -> None:
    """The export has exactly these signatures, each with its method, inputs and outputs."""
    defs = _signature_defs(export_dir)
    assert sorted(defs) == sorted(expected)
    for key, want in expected.items():
        assert defs[key].method_name == want["method"], key
        assert _io(defs[key].inputs) == want["inputs"], key
        assert _io(defs[key].outputs) == want["outputs"], key
        _check_tf_serving_rules(key, defs[key])


def test_broken_image_is_invalid_argument_naming_the_feature(served):
    rest, target = served
    broken = [{"picture": b"\x89PNG not an image"}]
    with pytest.raises(urllib.error.HTTPError) as rest_error:
        _post(f"{rest}/v1/models/shapes:classify", {"examples": [_json_row(broken[0])]})
    assert rest_error.value.code == 400
    message = json.load(rest_error.value)["error"]
    # The graph's message names the feature (its quotes come escaped from tf.Assert).
    assert "picture" in message and "not a decodable" in message, message

    example = serving_input.encode_example(
        broken[0], {"picture": tf.io.FixedLenFeature([], tf.string)}
    )
    request = classification_pb2.ClassificationRequest(
        input=input_pb2.Input(example_list=input_pb2.ExampleList(examples=[example]))
    )
    request.model_spec.name = "shapes"
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as grpc_error:
            stub.Classify(request, timeout=60)
    assert grpc_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = grpc_error.value.details()
    assert "picture" in details and "not a decodable" in details, details


# An image classifier with two heads from YAML: the image class (softmax) and marks
# (multi-label: which regions are bright), on one convolution body.
MARKS = {"top": ["bright_top"], "left": ["bright_left"], "bottom": []}


def _marked_images(n: int, seed: int) -> list[dict]:
    return [{**row, "marks": [m.encode() for m in MARKS[row["label"]]]}
            for row in _images(n, seed)]


def _write_marked_examples(path, rows: list[dict]) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            example = tf.train.Example()
            for key, value in row.items():
                values = value if isinstance(value, list) else [value]
                example.features.feature[key].bytes_list.value.extend(
                    v.encode() if isinstance(v, str) else v for v in values
                )
            writer.write(example.SerializeToString())
    return str(path)


@pytest.fixture(scope="module")
def multi_head_image_export(tmp_path_factory):
    from tfbake import stages
    from tfbake.config import load_config

    tmp = tmp_path_factory.mktemp("image_heads")
    raw = _config(
        tmp, "shapes_heads",
        {"format": "tfrecord",
         "train": _write_marked_examples(tmp / "train.tfrecord", _marked_images(45, 0)),
         "eval": _write_marked_examples(tmp / "eval.tfrecord", _marked_images(15, 1))},
        {"picture": {"type": "string", "media": "image"}},
        {"picture": {"image": {"height": SIZE, "width": SIZE, "channels": 1}}},
        {"type": "image_classifier", "filters": [4], "hidden_units": [8]},
    )
    raw.pop("label")
    raw["labels"] = [
        {"name": "label", "type": "string"},
        {"name": "marks", "head": "multi_label", "classes": ["bright_top", "bright_left"]},
    ]
    raw["training"]["epochs"] = 3
    config = load_config(write_config(tmp, raw))
    stages.run_transform(config)
    model, metrics = stages.run_training(config)
    return stages.run_export(config, model), metrics


def test_image_classifier_takes_a_softmax_and_a_multi_label_head_from_yaml(
    multi_head_image_export,
):
    export_dir, metrics = multi_head_image_export
    assert set(metrics) == {"loss", "label", "marks"}
    table = _multi_head_table({"label": _classifier_table(3), "marks": _multi_label_table(2)})
    expected = {
        **table,
        "predict_raw": {"method": PREDICT, "inputs": {"picture": ("string", BATCH)},
                        "outputs": table["predict"]["outputs"]},
        "transform_features": {"method": PREDICT, "inputs": {"examples": ("string", BATCH)},
                               "outputs": {"picture": ("float32", [-1, SIZE, SIZE, 1])}},
    }
    _assert_signatures(export_dir, expected)
