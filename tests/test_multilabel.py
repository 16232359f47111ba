"""Multi-label classification and custom models, from configs, on one Beam run; and a
model with a multi-class and a multi-label head on one body (a second Beam run).

The label is a list of tags per tf.Example (a multi-hot vector after the transform);
the canned DNN learns it and ``classify`` answers every tag with its own sigmoid
score. A custom model (a user's package: a registered custom layer, a custom loss, a
postprocessing hook) trains on the same data, and its export serves in a fresh
process where the user's package cannot be imported.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, input_pb2, prediction_service_pb2_grpc

import serving_input
from tests.conftest import serve, write_config
from tests.trainer.test_canned_signatures import (
    BATCH,
    CLASSIFY,
    PREDICT,
    _check_tf_serving_rules,
    _classifier_table,
    _io,
    _multi_head_table,
    _signature_defs,
)
from tfbake import stages
from tfbake.config import load_config

TAGS = ["red", "big", "round"]
SERVING_SPEC = {
    "x1": tf.io.FixedLenFeature([], tf.float32),
    "x2": tf.io.FixedLenFeature([], tf.float32),
    "color": tf.io.FixedLenFeature([], tf.string),
}


def _rows(n: int, seed: int) -> list[dict]:
    """Tags by rule: big when x1 > 0, round when x2 > 0, red when the color is red."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        row = {
            "x1": rng.uniform(-1, 1),
            "x2": rng.uniform(-1, 1),
            "color": rng.choice(["red", "blue", "green"]),
        }
        row["tags"] = [
            tag
            for tag, on in zip(TAGS, (row["color"] == "red", row["x1"] > 0, row["x2"] > 0))
            if on
        ]
        rows.append(row)
    return rows


def _write_tfrecord(path, rows) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            feature = {
                "x1": tf.train.Feature(float_list=tf.train.FloatList(value=[row["x1"]])),
                "x2": tf.train.Feature(float_list=tf.train.FloatList(value=[row["x2"]])),
                "color": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[row["color"].encode()])
                ),
                "tags": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[t.encode() for t in row["tags"]])
                ),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    return str(path)


# The user's package: a registered custom layer, a custom loss, a postprocessing hook.
USER_PACKAGE = '''
import tensorflow as tf
import tf_keras


@tf_keras.saving.register_keras_serializable(package="usermodels")
class Scale(tf_keras.layers.Layer):
    """A learned per-unit scale: a layer the export must carry without this code."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=input_shape[-1:], initializer="ones")

    def call(self, x):
        return x * self.scale


def build(transformed_feature_spec, tft_output):
    names = sorted(k for k in transformed_feature_spec if k != "tags")
    inputs = {k: tf_keras.Input(shape=(), name=k, dtype=transformed_feature_spec[k].dtype)
              for k in names}
    x = tf_keras.layers.Concatenate()(
        [tf_keras.layers.Reshape((1,))(tf.cast(inputs[k], tf.float32)) for k in names])
    x = Scale()(tf_keras.layers.Dense(16, activation="relu")(x))
    return tf_keras.Model(inputs, tf_keras.layers.Dense(3)(x))


def focal_loss(y_true, logits):
    """Training only: the export never needs it."""
    p = tf.sigmoid(logits)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=logits)
    p_t = y_true * p + (1 - y_true) * (1 - p)
    return tf.reduce_mean(ce * (1 - p_t) ** 2, axis=-1)


def top_tag(predictions):
    """Postprocessing baked into the export: the most likely tag's name."""
    best = tf.argmax(predictions["probabilities"], axis=1)
    return {**predictions,
            "top_tag": tf.gather(predictions["all_classes"], best, batch_dims=1)}
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One Beam run; the canned multi-label model and the custom model trained on it."""
    tmp = tmp_path_factory.mktemp("multilabel")
    package = tmp / "userpkg" / "usermodels"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(textwrap.dedent(USER_PACKAGE))
    sys.path.insert(0, str(tmp / "userpkg"))
    raw = {
        "name": "tags",
        "artifacts": str(tmp / "artifacts"),
        "data": {
            "format": "tfrecord",
            "train": _write_tfrecord(tmp / "train.tfrecord", _rows(300, 0)),
            "eval": _write_tfrecord(tmp / "eval.tfrecord", _rows(80, 1)),
        },
        "features": {"x1": {"type": "float"}, "x2": {"type": "float"}, "color": {"type": "string"}},
        "label": {"name": "tags", "head": "multi_label", "classes": TAGS, "threshold": 0.5},
        "model": {"type": "dnn_classifier", "hidden_units": [16], "learning_rate": 0.03},
        "training": {"epochs": 12, "early_stopping": {"monitor": "val_auc", "patience": 20}},
        "export": {"dir": str(tmp / "export" / "canned")},
    }
    canned = load_config(write_config(tmp, raw))
    stages.run_transform(canned)
    canned_model, canned_metrics = stages.run_training(canned)
    # Exported before the custom model trains: both use the same artifacts folder.
    canned_export = stages.run_export(canned, canned_model)
    canned_report = json.loads(open(os.path.join(canned.trainer_dir, "report.json")).read())
    custom = load_config(
        write_config(
            tmp,
            {
                **raw,
                "name": "tags_custom",
                "model": {
                    "type": "custom",
                    "build": "usermodels.nets:build",
                    "loss": "usermodels.nets:focal_loss",
                    "postprocess": "usermodels.nets:top_tag",
                    "learning_rate": 0.03,
                },
                "export": {"dir": str(tmp / "export" / "custom")},
            },
        )
    )
    custom_model, custom_metrics = stages.run_training(custom)
    yield {
        "canned": (canned, canned_metrics, canned_export),
        "canned_report": canned_report,
        "custom": (custom, custom_metrics, stages.run_export(custom, custom_model)),
        "tmp": tmp,
    }
    sys.path.remove(str(tmp / "userpkg"))


@pytest.fixture(scope="module")
def examples() -> tuple[list[dict], list[bytes]]:
    rows = _rows(40, 2)
    features = [{k: row[k] for k in SERVING_SPEC} for row in rows]
    return rows, serving_input.serialize_examples(features, SERVING_SPEC)


def test_classify_returns_every_tag_with_its_own_sigmoid_score(runs, examples):
    _, _, export_dir = runs["canned"]
    rows, serialized = examples
    loaded = tf.saved_model.load(export_dir)
    answer = loaded.signatures["classification"](inputs=tf.constant(serialized))
    classes, scores = answer["classes"].numpy(), answer["scores"].numpy()
    assert classes.shape == scores.shape == (len(rows), len(TAGS))
    assert [c.decode() for c in classes[0]] == TAGS  # every tag, in the declared order
    logits = loaded.signatures["predict"](examples=tf.constant(serialized))["logits"].numpy()
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
    # Independent sigmoids: several tags can be likely at once (no softmax).
    truth = np.array([[tag in row["tags"] for tag in TAGS] for row in rows])
    assert ((scores > 0.5) == truth).mean() > 0.9
    assert (scores > 0.5).sum(axis=1).max() >= 2


def test_multilabel_export_follows_the_estimator_table(runs):
    _, _, export_dir = runs["canned"]
    loaded = tf.saved_model.load(export_dir)
    methods = _methods(export_dir)
    assert methods["serving_default"] == methods["classification"] == (
        "tensorflow/serving/classify"
    )
    assert "regression" not in methods  # a multi-label head has no regress signature
    predict = loaded.signatures["predict"].structured_outputs
    k = len(TAGS)
    assert {name: (t.dtype.name, t.shape.as_list()) for name, t in predict.items()} == {
        "logits": ("float32", [None, k]),
        "probabilities": ("float32", [None, k]),
        "predicted": ("int64", [None, k]),
        "all_class_ids": ("int32", [None, k]),
        "all_classes": ("string", [None, k]),
    }
    classify = loaded.signatures["classification"]
    assert list(classify.structured_input_signature[1]) == ["inputs"]


def _methods(export_dir: str) -> dict:
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    return {k: v.method_name for k, v in saved_model.meta_graphs[0].signature_def.items()}


def test_multilabel_metrics_and_report(runs):
    _, metrics, _ = runs["canned"]
    assert metrics["auc"] > 0.9
    report = runs["canned_report"]
    assert report["kind"] == "multi_label" and report["classes"] == TAGS


def test_custom_model_export_serves_without_the_user_code(runs, examples):
    config, metrics, export_dir = runs["custom"]
    rows, serialized = examples
    assert metrics["auc"] > 0.85  # the custom loss trained it
    loaded = tf.saved_model.load(export_dir)
    local = loaded.signatures["predict"](examples=tf.constant(serialized))
    best = local["probabilities"].numpy().argmax(axis=1)
    assert [t.decode() for t in local["top_tag"].numpy()] == [TAGS[i] for i in best]

    script = textwrap.dedent(
        f"""
        import importlib.util, json, sys
        import tensorflow as tf
        assert importlib.util.find_spec("usermodels") is None, "user code is importable"
        loaded = tf.saved_model.load({export_dir!r})
        examples = tf.constant([bytes.fromhex(h) for h in json.load(sys.stdin)])
        out = loaded.signatures["predict"](examples=examples)
        print(json.dumps({{"top_tag": [t.decode() for t in out["top_tag"].numpy()],
                          "probabilities": out["probabilities"].numpy().tolist()}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps([e.hex() for e in serialized]),
        capture_output=True,
        text=True,
        cwd=str(runs["tmp"]),
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    assert fresh["top_tag"] == [t.decode() for t in local["top_tag"].numpy()]
    np.testing.assert_allclose(fresh["probabilities"], local["probabilities"].numpy(), rtol=1e-6)


# Issue 5's reference shape (weather: softmax over classes + ground: sigmoid tags, one
# body): here "color" (3 classes) and "tags" (multi-label) as two heads of a dnn.
MULTILABEL_TABLE = {
    "serving_default": {
        "method": CLASSIFY,
        "inputs": {"inputs": ("string", BATCH)},
        "outputs": {"classes": ("string", [-1, 3]), "scores": ("float32", [-1, 3])},
    },
    "predict": {
        "method": PREDICT,
        "inputs": {"examples": ("string", BATCH)},
        "outputs": {
            "logits": ("float32", [-1, 3]),
            "probabilities": ("float32", [-1, 3]),
            "predicted": ("int64", [-1, 3]),
            "all_class_ids": ("int32", [-1, 3]),
            "all_classes": ("string", [-1, 3]),
        },
    },
}
MULTILABEL_TABLE["classification"] = MULTILABEL_TABLE["serving_default"]
SKY_FEATURES = ("x1", "x2")


@pytest.fixture(scope="module")
def sky(runs, python):
    """The multi-class + multi-label model from a config (its own Beam run: two label
    transforms) on the module's data, served by a real ``tfbake serve``."""
    tmp = runs["tmp"]
    config = load_config(
        write_config(
            tmp,
            {
                "name": "sky",
                "artifacts": str(tmp / "sky"),
                "data": {
                    "format": "tfrecord",
                    "train": str(tmp / "train.tfrecord"),
                    "eval": str(tmp / "eval.tfrecord"),
                },
                "features": {name: {"type": "float"} for name in SKY_FEATURES},
                "labels": [
                    {"name": "color", "type": "string"},
                    {"name": "tags", "head": "multi_label", "classes": TAGS},
                ],
                "model": {"type": "dnn", "hidden_units": [16], "learning_rate": 0.03},
                "training": {"epochs": 3, "early_stopping": None},
            },
        )
    )
    export_dir = stages.run_all(config)["export"]
    with serve(python, ["--model_name=sky", f"--model_base_path={config.export_dir_base}"],
               tmp) as urls:
        yield export_dir, urls


def _sky_examples(rows) -> list[bytes]:
    spec = {name: SERVING_SPEC[name] for name in SKY_FEATURES}
    return serving_input.serialize_examples([{k: r[k] for k in spec} for r in rows], spec)


def test_multiclass_and_multilabel_heads_export_the_multi_head_table(sky):
    export_dir, _ = sky
    table = _multi_head_table({"color": _classifier_table(3), "tags": MULTILABEL_TABLE})
    defs = _signature_defs(export_dir)
    assert sorted(defs) == sorted([*table, "predict_raw", "transform_features"])
    for key, want in table.items():
        assert defs[key].method_name == want["method"], key
        assert _io(defs[key].inputs) == want["inputs"], key
        assert _io(defs[key].outputs) == want["outputs"], key
        _check_tf_serving_rules(key, defs[key])


def test_each_head_classifies_over_rest_and_grpc(sky):
    export_dir, (rest, target) = sky
    rows = _rows(5, 3)
    examples = _sky_examples(rows)
    local = tf.saved_model.load(export_dir).signatures["predict"](examples=tf.constant(examples))
    json_rows = [{k: r[k] for k in SKY_FEATURES} for r in rows]
    for head in ("color", "tags"):
        names = [c.decode() for c in local[f"{head}/all_classes"].numpy()[0]]
        want = local[f"{head}/probabilities"].numpy()
        body = {"signature_name": f"{head}/classification", "examples": json_rows}
        request = urllib.request.Request(f"{rest}/v1/models/sky:classify",
                                         json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            results = json.load(response)["results"]
        assert [[label for label, _ in r] for r in results] == [names] * len(rows)
        np.testing.assert_allclose([[s for _, s in r] for r in results], want, atol=1e-6)

        grpc_request = classification_pb2.ClassificationRequest(
            input=input_pb2.Input(example_list=input_pb2.ExampleList(
                examples=[tf.train.Example.FromString(e) for e in examples])))
        grpc_request.model_spec.name = "sky"
        grpc_request.model_spec.signature_name = head  # the head's default: classification
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            result = stub.Classify(grpc_request, timeout=60).result
        assert [[c.label for c in r.classes] for r in result.classifications] == (
            [names] * len(rows))
        np.testing.assert_allclose(
            [[c.score for c in r.classes] for r in result.classifications], want, atol=1e-6)
