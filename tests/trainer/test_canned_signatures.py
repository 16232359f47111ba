"""Every canned model, with every head type it has, exports the canned-estimator
signature set (tf.estimator's head/*.py and canned/prediction_keys.py), and TF
Serving's Classify/Regress rules hold for its classify and regress signatures.

The expected tables are written here from the Estimator sources, not from the code's
constants.
The models are exported untrained: the signatures do not depend on the weights.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tfbake import serving_input, trainer, transform
from tfbake.transform.preprocessing import FeaturePreprocessing, Vocabulary

# Raw features; "animal" (3 classes), "size" (2 classes) and "y" (float) are labels.
RAW_FEATURE_SPEC = {
    "x": tf.io.FixedLenFeature([], tf.float32),
    "color": tf.io.FixedLenFeature([], tf.string),
    "count": tf.io.FixedLenFeature([], tf.int64),
    "animal": tf.io.FixedLenFeature([], tf.string),
    "size": tf.io.FixedLenFeature([], tf.string),
    "y": tf.io.FixedLenFeature([], tf.float32),
}
LABELS = ("animal", "size", "y")
SERVING_FEATURE_SPEC = serving_input.without(RAW_FEATURE_SPEC, LABELS)

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
PREDICT = "tensorflow/serving/predict"
BATCH = [-1]  # a serving batch of any size


def _classifier_table(k: int) -> dict:
    """Canned estimators: binary (k=2) and multi-class classifier signatures."""
    classify = {
        "method": CLASSIFY,
        "inputs": {"inputs": ("string", BATCH)},
        "outputs": {"classes": ("string", [-1, k]), "scores": ("float32", [-1, k])},
    }
    predict = {
        "logits": ("float32", [-1, 1 if k == 2 else k]),
        "probabilities": ("float32", [-1, k]),
        "class_ids": ("int64", [-1, 1]),
        "classes": ("string", [-1, 1]),
        "all_class_ids": ("int32", [-1, k]),
        "all_classes": ("string", [-1, k]),
    }
    table = {"serving_default": classify, "classification": classify}
    if k == 2:
        predict["logistic"] = ("float32", [-1, 1])
        table["regression"] = {
            "method": REGRESS,
            "inputs": {"inputs": ("string", BATCH)},
            "outputs": {"outputs": ("float32", [-1, 1])},
        }
    table["predict"] = {
        "method": PREDICT,
        "inputs": {"examples": ("string", BATCH)},
        "outputs": predict,
    }
    return table


def _regressor_table() -> dict:
    """Canned estimators: regressor signatures."""
    regression = {
        "method": REGRESS,
        "inputs": {"inputs": ("string", BATCH)},
        "outputs": {"outputs": ("float32", [-1, 1])},
    }
    return {
        "serving_default": regression,
        "regression": regression,
        "predict": {
            "method": PREDICT,
            "inputs": {"examples": ("string", BATCH)},
            "outputs": {"predictions": ("float32", [-1, 1])},
        },
    }


def _multi_label_table(k: int) -> dict:
    """docs/models.md: a multi-label head classifies with every label and its own
    sigmoid score; its predict has no class_ids/classes but a 0/1 ``predicted``."""
    classify = {
        "method": CLASSIFY,
        "inputs": {"inputs": ("string", BATCH)},
        "outputs": {"classes": ("string", [-1, k]), "scores": ("float32", [-1, k])},
    }
    predict = {
        "logits": ("float32", [-1, k]),
        "probabilities": ("float32", [-1, k]),
        "predicted": ("int64", [-1, k]),
        "all_class_ids": ("int32", [-1, k]),
        "all_classes": ("string", [-1, k]),
    }
    return {
        "serving_default": classify,
        "classification": classify,
        "predict": {"method": PREDICT, "inputs": {"examples": ("string", BATCH)},
                    "outputs": predict},
    }


def _multi_head_table(heads: dict[str, dict]) -> dict:
    """Canned estimators, multi-head: serving_default = the first head's default; per head
    <head> (its default) and <head>/<signature>; a merged predict, keys <head>/<key>."""
    table, merged = {}, {}
    for name, own in heads.items():
        table[name] = own["serving_default"]
        for key, signature in own.items():
            if key != "serving_default":
                table[f"{name}/{key}"] = signature
        merged.update({f"{name}/{k}": v for k, v in own["predict"]["outputs"].items()})
    table["serving_default"] = table[next(iter(heads))]
    table["predict"] = {
        "method": PREDICT,
        "inputs": {"examples": ("string", BATCH)},
        "outputs": merged,
    }
    return table


def _with_project_signatures(table: dict) -> dict:
    """Every export also has predict_raw (named raw features) and
    transform_features (serialized examples -> transformed features)."""
    raw_inputs = {"x": ("float32", BATCH), "color": ("string", BATCH), "count": ("int64", BATCH)}
    transformed = {"x": ("float32", BATCH), "color": ("int64", BATCH), "count": ("float32", BATCH)}
    return {
        **table,
        "predict_raw": {
            "method": PREDICT,
            "inputs": raw_inputs,
            "outputs": table["predict"]["outputs"],
        },
        "transform_features": {
            "method": PREDICT,
            "inputs": {"examples": ("string", BATCH)},
            "outputs": transformed,
        },
    }


CASES = {
    # id: (model class, label, expected signature table)
    "linear_classifier-binary": (trainer.LinearClassifier, "size", _classifier_table(2)),
    "linear_classifier-multiclass": (trainer.LinearClassifier, "animal", _classifier_table(3)),
    "dnn_classifier-binary": (trainer.DNNClassifier, "size", _classifier_table(2)),
    "dnn_classifier-multiclass": (trainer.DNNClassifier, "animal", _classifier_table(3)),
    "wide_deep_classifier-binary": (
        trainer.DNNLinearCombinedClassifier,
        "size",
        _classifier_table(2),
    ),
    "wide_deep_classifier-multiclass": (
        trainer.DNNLinearCombinedClassifier,
        "animal",
        _classifier_table(3),
    ),
    "linear_regressor": (trainer.LinearRegressor, "y", _regressor_table()),
    "dnn_regressor": (trainer.DNNRegressor, "y", _regressor_table()),
    "wide_deep_regressor": (trainer.DNNLinearCombinedRegressor, "y", _regressor_table()),
    # One body, three heads (multi-class, binary, regression), as Estimator's MultiHead.
    "dnn-multi_head": (
        trainer.DNNClassifier,
        LABELS,
        _multi_head_table(
            {"animal": _classifier_table(3), "size": _classifier_table(2), "y": _regressor_table()}
        ),
    ),
    "wide_deep-multi_head": (
        trainer.DNNLinearCombinedClassifier,
        ("size", "y"),
        _multi_head_table({"size": _classifier_table(2), "y": _regressor_table()}),
    ),
}


HEADS = {
    "animal": lambda tft: trainer.ClassificationHead(tft.vocabulary_by_name("animal")),
    "size": lambda tft: trainer.ClassificationHead(tft.vocabulary_by_name("size")),
    "y": lambda tft: trainer.RegressionHead(),
}


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "x": round(rng.uniform(-1, 1), 3),
            "color": rng.choice(["red", "green", "blue"]),
            "count": rng.randint(0, 9),
            "animal": rng.choice(["cat", "dog", "bird"]),
            "size": rng.choice(["small", "large"]),
            "y": round(rng.gauss(5, 2), 3),
        }
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def tft_output(beam_transform, tmp_path_factory):
    """One Beam run for the module: every feature and all three labels transformed."""
    tmp = tmp_path_factory.mktemp("canned_signatures")
    no_oov = FeaturePreprocessing(vocabulary=Vocabulary(num_oov_buckets=0))
    # `count` is an int without a vocabulary: a number (float32 after the transform);
    # so is the label y.
    preprocessing_fn = transform.build_preprocessing_fn(
        RAW_FEATURE_SPEC, {"animal": no_oov, "size": no_oov}
    )
    return beam_transform(tmp, RAW_FEATURE_SPEC, preprocessing_fn, _rows(40, 0), _rows(10, 1))


@pytest.fixture(scope="module")
def examples() -> list[bytes]:
    rows = [{k: v for k, v in row.items() if k not in LABELS} for row in _rows(3, 2)]
    return serving_input.serialize_examples(rows, SERVING_FEATURE_SPEC)


def _signature_defs(export_dir: str) -> dict:
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    defs = dict(saved_model.meta_graphs[0].signature_def)
    defs.pop("__saved_model_init_op", None)  # the SavedModel's table initializer, not an API
    return defs


def _io(tensor_infos) -> dict:
    return {
        name: (tf.dtypes.as_dtype(info.dtype).name, [d.size for d in info.tensor_shape.dim])
        for name, info in tensor_infos.items()
    }


def _check_tf_serving_rules(key: str, signature_def) -> None:
    """The signatures TF Serving checks before it classifies or regresses."""
    inputs, outputs = signature_def.inputs, signature_def.outputs
    if signature_def.method_name in (CLASSIFY, REGRESS):
        assert list(inputs) == ["inputs"], key
        assert inputs["inputs"].dtype == tf.string.as_datatype_enum, key
    if signature_def.method_name == CLASSIFY:
        assert set(outputs) & {"classes", "scores"} and set(outputs) <= {"classes", "scores"}
        dims = {}
        for name, dtype in (("classes", tf.string), ("scores", tf.float32)):
            if name in outputs:
                assert outputs[name].dtype == dtype.as_datatype_enum, (key, name)
                assert len(outputs[name].tensor_shape.dim) == 2, (key, name)
                dims[name] = outputs[name].tensor_shape.dim[1].size
        assert len(set(dims.values())) == 1, (key, dims)  # same K
    if signature_def.method_name == REGRESS:
        assert list(outputs) == ["outputs"], key
        assert outputs["outputs"].dtype == tf.float32.as_datatype_enum, key
        shape = [d.size for d in outputs["outputs"].tensor_shape.dim]
        assert shape in ([-1], [-1, 1]), (key, shape)


@pytest.mark.parametrize("case", list(CASES))
def test_export_signatures_follow_the_estimator_table(case, tft_output, examples, tmp_path):
    model_class, label, table = CASES[case]
    kwargs = (
        {}
        if model_class in (trainer.LinearClassifier, trainer.LinearRegressor)
        else {"hidden_units": [4]}
    )
    if isinstance(label, tuple):  # a multi-head model: one head per label
        kwargs["head"] = trainer.MultiHead({key: HEADS[key](tft_output) for key in label})
        label = list(label)
    labels = label if isinstance(label, list) else [label]
    model = model_class(tft_output, label, exclude=[k for k in LABELS if k not in labels], **kwargs)
    export_dir = model.export_saved_model(
        str(tmp_path),
        serving_input.build_parsing_serving_input_fn(SERVING_FEATURE_SPEC),
        version=1,
    )

    expected = _with_project_signatures(table)
    defs = _signature_defs(export_dir)
    assert sorted(defs) == sorted(expected)
    for key, want in expected.items():
        got = defs[key]
        assert got.method_name == want["method"], key
        assert _io(got.inputs) == want["inputs"], key
        assert _io(got.outputs) == want["outputs"], key
        _check_tf_serving_rules(key, got)

    # The shapes hold at run time too, for a batch of 3 real examples.
    loaded = tf.saved_model.load(export_dir)
    for key, want in expected.items():
        (input_key,) = [k for k in want["inputs"] if k in ("inputs", "examples")] or [None]
        if input_key is None:  # predict_raw: covered by the declared shapes above
            continue
        answer = loaded.signatures[key](**{input_key: tf.constant(examples)})
        for name, (dtype, shape) in want["outputs"].items():
            value = answer[name].numpy()
            assert value.shape == (3, *shape[1:]), (key, name, value.shape)
            assert value.dtype == (object if dtype == "string" else np.dtype(dtype)), (key, name)
    if "classification" in expected and isinstance(label, str):
        classes = loaded.signatures["classification"](inputs=tf.constant(examples))["classes"]
        names = {"animal": ["bird", "cat", "dog"], "size": ["large", "small"]}[label]
        assert sorted(classes.numpy()[0].astype(str)) == names  # label names, not ids
