"""``data.format: sequence_example`` from YAML: a tiny tagged corpus written here as
TFRecord files of ``tf.SequenceExample`` (the tokens and their tags as feature_lists, a
language as a context feature) goes through the Beam job (malformed records are
rejects naming the feature), a token model and the export, and is served by the
project's server: over gRPC (official stubs) and REST (b64) the tags equal the
in-process model's; a malformed SequenceExample is INVALID_ARGUMENT naming the feature.
"""

from __future__ import annotations

import ast
import base64
import glob
import json
import os
import random
import sys
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc

from tests.conftest import run_pipeline, run_sample, serve_config
from tests.test_sequence_tagging import SENTENCES, _sentence
from tfbake import check, inspection, serving_input
from tfbake.model_server import Client
from tfbake.request_logs import logged_examples
from tfbake.serving_input import signatures as sig
from tfbake.serving_input.export_layout import RAW_FEATURE_SPEC_FILE, WARMUP_FILE

MAX_ITEMS = 12
SPEC = {"tokens": tf.io.VarLenFeature(tf.string), "lang": tf.io.FixedLenFeature([], tf.string),
        "tags": tf.io.VarLenFeature(tf.string)}
FEATURE_LISTS = ["tokens", "tags"]


def _record(tokens, tags, lang="en") -> bytes:
    return serving_input.serialize_row(
        {"tokens": tokens, "tags": tags, "lang": lang}, SPEC, FEATURE_LISTS
    )


def _records(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [_record(*_sentence(rng), lang=rng.choice(["en", "de"])) for _ in range(n)]


def _write(path, records) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def _broken_records() -> list[bytes]:
    """One record per way a SequenceExample can be wrong."""
    two_values = tf.train.SequenceExample.FromString(_record(["mary", "met", "bob"], ["B-PER"] * 3))
    two_values.feature_lists.feature_list["tokens"].feature[1].bytes_list.value.append(b"x")
    lang_as_list = tf.train.SequenceExample.FromString(_record(["bob"], ["B-PER"]))
    del lang_as_list.context.feature["lang"]
    lang_as_list.feature_lists.feature_list["lang"].feature.add().bytes_list.value.append(b"en")
    return [
        two_values.SerializeToString(),
        lang_as_list.SerializeToString(),
        _record(["mary", "met"], ["B-PER", "O", "O"]),  # one tag too many
        b"\x0bnot a record",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One Beam run, training and export of a sequence_example config."""
    tmp = tmp_path_factory.mktemp("sequence_example")
    raw = {
        "name": "seqtagger",
        "artifacts": str(tmp / "artifacts"),
        "data": {
            "format": "sequence_example",
            "train": _write(tmp / "train.tfrecord", _records(200, 0) + _broken_records()),
            "eval": _write(tmp / "eval.tfrecord", _records(40, 1)),
        },
        "features": {"tokens": {"type": "string", "list": True}, "lang": {"type": "string"}},
        "label": {"name": "tags", "head": "sequence_tagging", "tokens": "tokens"},
        "preprocessing": {"tokens": {"vocabulary": {"num_oov_buckets": 1}, "output": "ids",
                                     "max_items": MAX_ITEMS}},
        "model": {"type": "token_tagger", "encoder": "transformer", "embedding_dim": 16,
                  "units": 16, "learning_rate": 0.02},
        "training": {"epochs": 4, "batch_size": 32, "early_stopping": None},
        "beam": {"direct_num_workers": 1, "direct_running_mode": "in_memory"},
    }
    done = run_pipeline(tmp, raw)
    return done.config, done.config_path, done.stats, done.model, done.export_dir, tmp


@pytest.fixture(scope="module")
def urls(run):
    _, path, _, _, _, tmp = run
    with serve_config(sys.executable, path, tmp) as both:
        yield both


ROWS = [{"tokens": s.split(), "lang": "en"} for s in SENTENCES]
SERVED = {name: SPEC[name] for name in ("tokens", "lang")}


def _in_process_tags(model, rows) -> list[list[str]]:
    """The trained tf_keras model's argmax over each row's own tokens, through the Beam
    job's transform graph on raw tensors: neither the export nor a SequenceExample."""
    tokens = tf.ragged.constant([row["tokens"] for row in rows]).to_sparse()
    transformed = model.tft_output.transform_features_layer()(
        {"tokens": tokens, "lang": tf.constant([row["lang"] for row in rows])}
    )
    logits = model.keras_model({"tokens": transformed["tokens"]}).numpy()
    tags = model.tft_output.vocabulary_by_name("tags")
    return [[tags[i].decode() for i in np.argmax(row[: len(r["tokens"]), 1:], axis=1)]
            for row, r in zip(logits, rows)]


def _grpc_predict(target: str, examples: list[bytes]) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "seqtagger"
    request.inputs[serving_input.EXAMPLES_KEY].CopyFrom(tf.make_tensor_proto(examples))
    with grpc.insecure_channel(target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=60
        )


def _rest_predict(url: str, examples: list[bytes]) -> list[dict]:
    body = {"signature_name": sig.PREDICT,
            "instances": [{"b64": base64.b64encode(e).decode()} for e in examples]}
    request = urllib.request.Request(f"{url}/v1/models/seqtagger:predict",
                                     json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["predictions"]


def test_malformed_sequence_examples_are_rejects_naming_the_feature(run):
    config, _, stats, *_ = run
    assert stats["train"] == {"read": 204, "written": 200, "rejected": 4}
    lines = [line for f in glob.glob(f"{config.transform_dir}/rejects/train-*") for line in open(f)]
    reasons = sorted(json.loads(line)["reason"] for line in lines)
    assert reasons == [
        'feature "lang" is a context feature, found in feature_lists',
        'feature_list "tokens": step 1 has 2 values; a feature_list holds one value per step',
        'label "tags" has 3 tags but feature "tokens" has 2 tokens: a sequence-tagging label '
        "needs one tag per token",
        reasons[3],
    ]
    assert reasons[3].startswith("not a tf.SequenceExample")


def test_served_sequence_examples_get_the_in_process_models_tags(run, urls):
    *_, model, export_dir, _ = run
    expected = _in_process_tags(model, ROWS)
    examples = serving_input.serialize_examples(ROWS, SERVED, ["tokens"])

    response = _grpc_predict(urls[1], examples)
    tags = tf.make_ndarray(response.outputs[sig.TAGS])
    counts = tf.make_ndarray(response.outputs[sig.TOKEN_COUNT])
    assert counts.tolist() == [len(r["tokens"]) for r in ROWS]
    assert [[t.decode() for t in row[:n]] for row, n in zip(tags, counts)] == expected

    rows = _rest_predict(urls[0], examples)
    assert [row["tags"] for row in rows] == expected
    assert [row["tokens"] for row in rows] == [r["tokens"] for r in ROWS]

    # The client encodes dict rows as SequenceExamples when told the feature_lists.
    with Client(urls[0], feature_lists=["tokens"]) as client:
        answer = client.predict("seqtagger", ROWS)
    assert [[t.decode() for t in row] for row in answer[sig.TAGS]] == expected


@pytest.mark.parametrize(
    "change, protocol, message",
    [
        ("two_values", "grpc", 'Feature list "tokens": step 1 has 2 values'),
        ("int_step", "rest", 'Expected feature list "tokens" as string, got another type at '
                             "step 0"),
        # A tf.Example (what Classify sends) with the tokens among its features.
        ("tf_example", "grpc", 'Feature "tokens" in example 0 is in the context; it is a '
                               "feature_list"),
        ("no_lang", "rest", 'Feature "lang" is required but missing in example 0'),
    ],
)
def test_malformed_sequence_example_is_invalid_argument_naming_the_feature(
        urls, change, protocol, message):
    record = tf.train.SequenceExample.FromString(
        serving_input.serialize_row(ROWS[0], SERVED, ["tokens"])
    )
    steps = record.feature_lists.feature_list["tokens"].feature
    if change == "two_values":
        steps[1].bytes_list.value.append(b"extra")
        serialized = record.SerializeToString()
    elif change == "int_step":
        steps[0].Clear()
        steps[0].int64_list.value.append(7)
        serialized = record.SerializeToString()
    elif change == "no_lang":
        del record.context.feature["lang"]
        serialized = record.SerializeToString()
    else:
        serialized = serving_input.serialize_row(ROWS[0], SERVED)
    if protocol == "grpc":
        with pytest.raises(grpc.RpcError) as error:
            _grpc_predict(urls[1], [serialized])
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.details(), error.value.details()
    else:
        with pytest.raises(urllib.error.HTTPError) as error:
            _rest_predict(urls[0], [serialized])
        assert error.value.code == 400
        got = json.load(error.value)["error"]
        assert message in got, got


def test_export_marks_the_feature_lists_and_warms_up_with_sequence_examples(run):
    *_, export_dir, _ = run
    contract = json.load(open(os.path.join(export_dir, RAW_FEATURE_SPEC_FILE)))
    assert contract["tokens"]["feature_list"] is True and "feature_list" not in contract["lang"]
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(os.path.join(export_dir, WARMUP_FILE))]
    serialized = [s for log in logs
                  for s in log.predict_log.request.inputs[serving_input.EXAMPLES_KEY].string_val]
    assert serialized
    for record in serialized:
        parsed = tf.train.SequenceExample.FromString(record)
        assert set(parsed.feature_lists.feature_list) == {"tokens"}
        assert set(parsed.context.feature) == {"lang"}


def test_tfbake_check_reads_the_eval_sequence_examples_and_matches_beam(run):
    """``tfbake check`` reads the eval SequenceExamples: each, through the export's
    ``transform_features``, has its Beam twin, and the export's paths agree."""
    config, _, _, model, export_dir, _ = run
    report = check.check(config, export_dir=export_dir, model=model, rows=16)
    assert report.rows == 16 and report.features.unmatched_rows == 0
    for name in (f"saved_model.load {sig.PREDICT_RAW}", check.TF1_SESSION):
        path = report.path(name)
        assert path.error is None and path.rows == 16 and path.differing_rows == 0, name


def test_logged_sequence_examples_are_read_back_with_their_feature_lists():
    """What ``tfbake drift`` reads from the request log of a sequence_example export."""
    record = tf.train.SequenceExample()
    record.context.feature["lang"].bytes_list.value.append(b"de")
    for token in (b"mary", b"met", b"bob"):
        record.feature_lists.feature_list["tokens"].feature.add().bytes_list.value.append(token)
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.inputs["examples"].CopyFrom(
        tf.make_tensor_proto([record.SerializeToString()]))
    served = {"tokens": SPEC["tokens"], "lang": SPEC["lang"]}
    (example,) = logged_examples(log, served, ["tokens"])
    features = example.features.feature
    assert features["tokens"].bytes_list.value == [b"mary", b"met", b"bob"]
    assert features["lang"].bytes_list.value == [b"de"]


def test_inspect_samples_send_sequence_examples_and_get_the_tags(run, urls):
    """The request samples of a sequence_example export (``tfbake inspect``, the
    console) send serialized tf.SequenceExamples through predict, whatever the
    signature's method (TF Serving's classify and regress APIs carry tf.Examples only),
    and each runs against the live server: the tags are the in-process model's."""
    *_, model, export_dir, _ = run
    rest, target = urls
    description = inspection.inspect(export_dir, model_name="seqtagger", rest_url=rest,
                                     grpc_target=target)
    record_samples = [s for s in description.samples if "SequenceExample" in s.title]
    assert {s.signature for s in record_samples} >= {sig.DEFAULT_SERVING, sig.PREDICT}
    assert {s.api for s in record_samples} == {"predict"}
    assert not [s for s in description.samples if "tf.Example" in s.title]
    # One TensorFlow import for the gRPC sample; the other clients, every signature.
    chosen = [s for s in record_samples if s.client != "python-grpc" or (
        s.signature == sig.DEFAULT_SERVING)]
    expected = _in_process_tags(model, description.example_rows)
    for sample in chosen:
        result = run_sample(sample.to_dict(), sys.executable)
        assert result.returncode == 0, (sample.title, result.stderr[-2000:])
        if sample.signature == sig.DEFAULT_SERVING and sample.client == "python-requests":
            answer = ast.literal_eval(result.stdout)["predictions"]  # the sample prints a dict
            assert [row["tags"] for row in answer] == expected
        elif sample.signature == sig.DEFAULT_SERVING:
            for tags in expected:
                assert all(tag in result.stdout for tag in tags), sample.title


def test_console_form_sends_sequence_examples_and_gets_the_tags(run, urls):
    """The console builds the request of its form from rows: for a sequence_example
    export, a predict body of serialized SequenceExamples that the server answers."""
    *_, model, export_dir, _ = run
    rest, _ = urls
    version = os.path.basename(export_dir)
    url = f"{rest}/console/api/models/seqtagger/versions/{version}"
    with urllib.request.urlopen(url, timeout=60) as response:  # what the page labels by
        assert json.loads(response.read())["feature_lists"] == ["tokens"]
    with urllib.request.urlopen(urllib.request.Request(
            f"{rest}/console/api/models/seqtagger/versions/{version}/request",
            json.dumps({"signature_name": sig.DEFAULT_SERVING, "rows": ROWS}).encode()),
            timeout=60) as response:
        built = json.loads(response.read())
    assert built["api"] == "predict"
    body = json.loads(built["body"])
    records = [base64.b64decode(i["b64"]) for i in body["instances"]]
    assert [list(tf.train.SequenceExample.FromString(r).feature_lists.feature_list)
            for r in records] == [["tokens"]] * len(ROWS)
    request = urllib.request.Request(rest + built["path"], built["body"].encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())["predictions"]
    assert [row["tags"] for row in answer] == _in_process_tags(model, ROWS)
