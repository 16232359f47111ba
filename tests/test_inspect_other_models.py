"""``tfbake inspect`` on SavedModels not made by tfbake (a TF1 ``simple_save``, a
``tf.Module`` with int32 and bool inputs, a base64 image model): samples built from the
tensor signatures run as printed against a real ``tfbake serve``. (The command line
itself is run in test_inspect.py; here ``inspect`` is called in-process.)"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import run_sample
from tests.other_saved_models import VERSION
from tfbake import inspection

CLIENTS = {"curl", "python-requests", "python-grpc", "javascript-fetch"}
# What each signature answers for its placeholder row, as text in every client's output
# (REST JSON or the gRPC response proto): [1,1,1].[1,2,3] = 6 and len("text") = 4;
# 1 + 1 + 1 = 3; 1 * 1 = 1; the 2x2 PNG of 128s is 128/255 bright.
ANSWERS = {
    ("tf1_linear", "serving_default"): [r"score\W+(value \{.*)?6\b", r"length\W+(value \{.*)?4\b"],
    ("counter", "serving_default"): [r"total\W+(value \{.*)?3\b", r"flagged"],
    ("counter", "scale"): [r"(scaled|outputs)\W+(value \{.*)?1\b"],
    ("images", "serving_default"): [r"0\.50196"],
}


@pytest.fixture(scope="module")
def descriptions(other_saved_models, other_models_served):
    rest, target = other_models_served
    return {name: inspection.inspect(base, model_name=name, rest_url=rest,
                                  grpc_target=target).to_dict()
            for name, base in other_saved_models.items()}


def test_samples_of_every_tensor_signature_run_as_printed(descriptions, python):
    covered = {(d["model_name"], s["signature"]): set() for d in descriptions.values()
               for s in d["samples"]}
    for d in descriptions.values():
        for s in d["samples"]:
            covered[(d["model_name"], s["signature"])].add(s["client"])
    assert covered == {key: CLIENTS for key in ANSWERS}
    # Every client for each model's default signature; curl for the other ones (each
    # Python gRPC sample imports TensorFlow: seconds apiece).
    runs = [(d["model_name"], s) for d in descriptions.values() for s in d["samples"]
            if s["signature"] == "serving_default" or s["client"] == "curl"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda run: run_sample(run[1], python), runs))
    for (model, sample), result in zip(runs, results):
        assert result.returncode == 0, (sample["title"], result.stdout[-1000:],
                                        result.stderr[-2000:])
        for answer in ANSWERS[(model, sample["signature"])]:
            assert re.search(answer, result.stdout, re.S), (sample["title"], result.stdout)


def test_requests_follow_each_inputs_dtype_and_shape(descriptions):
    inputs = {name: d["example_inputs"] for name, d in descriptions.items()}
    assert inputs["tf1_linear"] == {"serving_default": [{"word": "text", "x": [1.0, 1.0, 1.0]}]}
    assert inputs["counter"] == {"serving_default": [{"count": 1, "pair": [1, 1], "flag": False}],
                                 "scale": [{"values": [1], "factor": 1}]}
    (image,) = inputs["images"]["serving_default"]
    assert set(image) == {"image_bytes"} and set(image["image_bytes"]) == {"b64"}
    curl = {(d["model_name"], s["signature"]): s["text"] for d in descriptions.values()
            for s in d["samples"] if s["client"] == "curl"}
    # A scalar input has no batch dimension: the request carries whole tensors.
    assert '"inputs": {' in curl[("counter", "scale")]
    assert '"instances": [' in curl[("counter", "serving_default")]
    grpc = next(s["text"] for s in descriptions["counter"]["samples"]
                if s["client"] == "python-grpc" and s["signature"] == "serving_default")
    assert "dtype=tf.int32" in grpc and "dtype=tf.bool" in grpc


def test_every_signature_is_listed_and_one_json_cannot_carry_is_explained(other_saved_models):
    text = inspection.format_text(inspection.inspect(other_saved_models["counter"]))
    assert f"model counter, version {VERSION}" in text
    for signature in ("serving_default", "scale", "half"):
        assert f"  {signature}  [tensorflow/serving/predict]" in text
    assert "no sample for half: TF Serving's JSON cannot carry the dtype of x (DT_HALF)" in text
    assert "raw features" not in text  # no contract: nothing pretends to be one
