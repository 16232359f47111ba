"""A multi-head model (a delayed yes/no head, a delay regression head and a multi-label
head of flight tags, sharing one body: every head type)
from a CSV config, through Beam, training and export; its signature table and
per-head signatures, and TF Serving's Classify and Regress over REST (JSON over HTTP)
and gRPC (the official stubs) on the project's server for it, for a binary classifier
and for a regressor trained on the same transformed data (the multi-class case:
test_serving_penguins.py).
"""

from __future__ import annotations

import json
import random
import sys
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.conftest import serve, write_config
from tests.trainer.conftest import write_csv
from tests.trainer.test_canned_signatures import (
    _check_tf_serving_rules,
    _classifier_table,
    _io,
    _multi_head_table,
    _multi_label_table,
    _regressor_table,
    _signature_defs,
)
from tfbake import serving_input, stages, trainer, transform
from tfbake.config import load_config

CARRIERS = ("AA", "B6", "DL", "UA")
TAGS = ["night", "long_haul", "legacy"]  # the multi-label head's classes


def _rows(n: int, seed: int) -> list[dict]:
    """Flights-like rows: the delay grows with the hour and depends on the carrier."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        hour, carrier = rng.randint(5, 23), rng.choice(CARRIERS)
        delay = 3.0 * (hour - 12) + 10.0 * CARRIERS.index(carrier) + rng.gauss(0, 3)
        distance = round(rng.uniform(100, 2500), 1)
        on = (hour >= 20, distance > 1500, carrier in ("AA", "DL"))
        rows.append(
            {
                "hour": hour,
                "carrier": carrier,
                "distance": distance,
                "dep_delay": round(delay, 2),
                "delayed": "yes" if delay > 15 else "no",
                # A CSV list cell: the tags joined by "|" (none: an empty cell).
                "tags": "|".join(tag for tag, yes in zip(TAGS, on) if yes),
            }
        )
    return rows


FEATURES = ("hour", "carrier", "distance")
SERVING_SPEC = {
    "hour": tf.io.FixedLenFeature([], tf.int64),
    "carrier": tf.io.FixedLenFeature([], tf.string),
    "distance": tf.io.FixedLenFeature([], tf.float32),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One Beam run; the multi-head model from the config, plus a binary classifier and
    a regressor (the Python API) on the same transformed data; each exported."""
    tmp = tmp_path_factory.mktemp("multihead")
    path = write_config(
        tmp,
        {
            "name": "flights_mh",
            "artifacts": str(tmp / "artifacts"),
            "data": {
                "train": write_csv(tmp / "train.csv", _rows(400, 0)),
                "eval": write_csv(tmp / "eval.csv", _rows(100, 1)),
            },
            "features": {
                "hour": {"type": "int"},
                "carrier": {"type": "string"},
                "distance": {"type": "float"},
            },
            "preprocessing": {"hour": {"scale": "z_score"}, "distance": {"scale": "z_score"}},
            "labels": [
                {"name": "delayed", "type": "string"},
                {"name": "dep_delay", "type": "float", "weight": 0.5},
                {"name": "tags", "type": "string", "head": "multi_label", "classes": TAGS},
            ],
            "model": {"type": "dnn", "hidden_units": [16], "learning_rate": 0.05},
            "training": {"epochs": 10, "batch_size": 32, "early_stopping": None},
        },
    )
    config = load_config(path)
    stages.run_transform(config)
    model, metrics = stages.run_training(config)
    exports = {"multihead": stages.run_export(config, model)}
    tft_output = model.tft_output
    receiver = serving_input.build_parsing_serving_input_fn(stages.serving_feature_spec(config))
    for name, model_class, label, other in (
        ("binary", trainer.DNNClassifier, "delayed", "dep_delay"),
        ("regressor", trainer.DNNRegressor, "dep_delay", "delayed"),
    ):
        single = model_class(tft_output, label, hidden_units=[8], exclude=[other, "tags"])
        fn = transform.data_pattern(config.transform_dir, "train")
        single.train(trainer.make_input_fn(fn, tft_output, label, shuffle=True), epochs=3)
        exports[name] = single.export_saved_model(str(tmp / "exports" / name), receiver)
    return config, path, metrics, exports, tmp


@pytest.fixture(scope="module")
def eval_rows() -> list[dict]:
    return [{k: row[k] for k in FEATURES} for row in _rows(6, 7)]


@pytest.fixture(scope="module")
def reference(run, eval_rows) -> dict:
    """The multi-head export's merged ``predict`` signature, in process."""
    config, _, _, exports, _ = run
    loaded = tf.saved_model.load(exports["multihead"])
    examples = serving_input.serialize_examples(eval_rows, SERVING_SPEC)
    answer = loaded.signatures["predict"](examples=tf.constant(examples))
    return {k: v.numpy() for k, v in answer.items()}


@pytest.fixture(scope="module")
def server(run):
    """One ``tfbake serve`` process serving the three exports (a model config file)."""
    _, _, _, exports, tmp = run
    models = "".join(
        f'config {{ name: "{name}" base_path: "{str(tmp / "exports" / name)}" '
        f'model_platform: "tensorflow" }}\n'
        for name in exports
        if name != "multihead"
    )
    models += (
        f'config {{ name: "multihead" base_path: "{exports["multihead"].rsplit("/", 1)[0]}" '
        'model_platform: "tensorflow" }\n'
    )
    config_file = tmp / "models.config"
    config_file.write_text(f"model_config_list {{\n{models}}}\n")
    with serve(sys.executable, [f"--model_config_file={config_file}"], tmp) as urls:
        yield urls


def test_multihead_metrics_json_has_one_section_per_head(run):
    config, _, metrics, _, _ = run
    written = json.loads(open(f"{config.trainer_dir}/metrics.json").read())
    assert written == metrics
    assert set(written) == {"loss", "delayed", "dep_delay", "tags"}
    assert set(written["delayed"]) == {"loss", "accuracy", "auc"}
    assert set(written["dep_delay"]) == {"loss", "mae", "rmse"}
    assert written["tags"]["auc"] > 0.9  # each tag is a rule of the features
    # Learned, not guessed: the delayed share of the eval rows is about 45%.
    assert written["delayed"]["accuracy"] > 0.8
    assert written["dep_delay"]["mae"] < 12  # the delay's spread is about 30 minutes


def test_multihead_report_has_a_section_per_head(run):
    config, *_ = run
    report = json.loads(open(f"{config.trainer_dir}/report.json").read())
    assert report["kind"] == "multi_head"
    assert report["heads"]["delayed"]["classes"] == ["no", "yes"] or report["heads"][
        "delayed"
    ]["classes"] == ["yes", "no"]
    assert report["heads"]["dep_delay"]["kind"] == "regression"
    assert {"delayed_confusion_matrix.png", "dep_delay_predicted_vs_actual.png"} <= set(
        report["images"]
    )


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _example_input(rows) -> input_pb2.Input:
    examples = [serving_input.encode_example(row, SERVING_SPEC) for row in rows]
    return input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples))


def _rest_examples(rows) -> list[dict]:
    # Classify's JSON: a float needs a decimal point, an int none (TF Serving's JSON).
    return [{"hour": r["hour"], "carrier": r["carrier"], "distance": float(r["distance"])}
            for r in rows]


def test_multihead_export_follows_the_estimator_table(run):
    """The canned-estimator multi-head signatures over a binary, a regression and a
    multi-label head."""
    _, _, _, exports, _ = run
    table = _multi_head_table({
        "delayed": _classifier_table(2),
        "dep_delay": _regressor_table(),
        "tags": _multi_label_table(len(TAGS)),
    })
    defs = _signature_defs(exports["multihead"])
    assert sorted(defs) == sorted([*table, "predict_raw", "transform_features"])
    for key, want in table.items():
        assert defs[key].method_name == want["method"], key
        assert _io(defs[key].inputs) == want["inputs"], key
        assert _io(defs[key].outputs) == want["outputs"], key
        _check_tf_serving_rules(key, defs[key])


@pytest.mark.parametrize(
    "head, signature",
    [("delayed", "delayed"), ("delayed", "delayed/classification"),
     ("tags", "tags"), ("tags", "tags/classification")],
)
def test_multihead_classify_per_head_over_rest_and_grpc(
    server, reference, eval_rows, head, signature
):
    rest, target = server
    probabilities = reference[f"{head}/probabilities"]
    names = [c.decode() for c in reference[f"{head}/all_classes"][0]]
    body = {"signature_name": signature, "examples": _rest_examples(eval_rows)}
    results = _post(f"{rest}/v1/models/multihead:classify", body)["results"]
    for row, want in zip(results, probabilities):
        assert [label for label, _ in row] == names
        np.testing.assert_allclose([score for _, score in row], want, rtol=1e-5, atol=1e-6)

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    request = classification_pb2.ClassificationRequest(input=_example_input(eval_rows))
    request.model_spec.name = "multihead"
    request.model_spec.signature_name = signature
    response = stub.Classify(request, timeout=60)
    assert response.model_spec.signature_name == signature
    for result, want in zip(response.result.classifications, probabilities):
        assert [c.label for c in result.classes] == names
        np.testing.assert_allclose([c.score for c in result.classes], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "signature, output",
    [
        ("dep_delay", "dep_delay/predictions"),
        ("dep_delay/regression", "dep_delay/predictions"),
        ("delayed/regression", "delayed/logistic"),
    ],
)
def test_multihead_regress_per_head_over_rest_and_grpc(
    server, reference, eval_rows, signature, output
):
    rest, target = server
    want = reference[output].reshape(-1)
    body = {"signature_name": signature, "examples": _rest_examples(eval_rows)}
    results = _post(f"{rest}/v1/models/multihead:regress", body)["results"]
    np.testing.assert_allclose(results, want, rtol=1e-5, atol=1e-5)

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    request = regression_pb2.RegressionRequest(input=_example_input(eval_rows))
    request.model_spec.name = "multihead"
    request.model_spec.signature_name = signature
    response = stub.Regress(request, timeout=60)
    np.testing.assert_allclose(
        [r.value for r in response.result.regressions], want, rtol=1e-5, atol=1e-5
    )


def _local(export_dir: str, signature: str, rows) -> dict:
    loaded = tf.saved_model.load(export_dir)
    examples = serving_input.serialize_examples(rows, SERVING_SPEC)
    fn = loaded.signatures[signature]
    (key,) = fn.structured_input_signature[1]
    return {k: v.numpy() for k, v in fn(**{key: tf.constant(examples)}).items()}


def test_binary_classifier_classify_and_regress_on_the_server(run, server, eval_rows):
    _, _, _, exports, _ = run
    rest, target = server
    local = _local(exports["binary"], "predict", eval_rows)
    # Default signature (classification): both classes with their probabilities.
    results = _post(f"{rest}/v1/models/binary:classify", {"examples": _rest_examples(eval_rows)})
    for row, probabilities in zip(results["results"], local["probabilities"]):
        np.testing.assert_allclose([s for _, s in row], probabilities, rtol=1e-5, atol=1e-6)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    request = regression_pb2.RegressionRequest(input=_example_input(eval_rows))
    request.model_spec.name = "binary"
    request.model_spec.signature_name = "regression"  # the logistic, as Estimator's
    response = stub.Regress(request, timeout=60)
    np.testing.assert_allclose(
        [r.value for r in response.result.regressions],
        local["logistic"].reshape(-1),
        rtol=1e-5,
        atol=1e-6,
    )
    request = classification_pb2.ClassificationRequest(input=_example_input(eval_rows))
    request.model_spec.name = "binary"
    response = stub.Classify(request, timeout=60)
    assert [len(r.classes) for r in response.result.classifications] == [2] * len(eval_rows)


def test_regressor_regress_over_rest_and_grpc(run, server, eval_rows):
    _, _, _, exports, _ = run
    rest, target = server
    want = _local(exports["regressor"], "predict", eval_rows)["predictions"].reshape(-1)
    results = _post(f"{rest}/v1/models/regressor:regress", {"examples": _rest_examples(eval_rows)})
    np.testing.assert_allclose(results["results"], want, rtol=1e-5, atol=1e-5)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    request = regression_pb2.RegressionRequest(input=_example_input(eval_rows))
    request.model_spec.name = "regressor"
    response = stub.Regress(request, timeout=60)
    np.testing.assert_allclose(
        [r.value for r in response.result.regressions], want, rtol=1e-5, atol=1e-5
    )


def test_balanced_class_weights_come_from_the_beam_jobs_label_counts(run):
    config, *_ = run
    train = _rows(400, 0)  # the rows the fixture wrote
    counts = {name: sum(row["delayed"] == name for row in train) for name in ("no", "yes")}
    tft_output = trainer.model.as_tft_output(config.transform_dir)
    vocabulary = [v.decode() for v in tft_output.vocabulary_by_name("delayed")]
    weights = trainer.class_weights(tft_output, "delayed", "balanced")
    assert weights == pytest.approx([400 / (2 * counts[name]) for name in vocabulary])
    assert trainer.class_weights(tft_output, "delayed", {"yes": 3.0}) == [
        3.0 if name == "yes" else 1.0 for name in vocabulary
    ]
    with pytest.raises(ValueError, match=r"\['maybe'\] are not classes of label \"delayed\""):
        trainer.class_weights(tft_output, "delayed", {"maybe": 2.0})
