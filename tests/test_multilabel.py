"""Multi-label classification and custom models, from configs, on one Beam run.

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

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import write_config
from tfbake import serving_input, stages
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
