"""Token tagging from YAML only: a tiny BIO-tagged corpus made here goes through the Beam
job (a row whose tags and tokens differ in count is a reject), a token model
(transformer encoder), the export (predict only, warm-up) and the project's server;
over REST and gRPC each sentence gets exactly one tag per token, the in-process
model's argmax over its own tokens, alone or batched with longer sentences.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import random
import sys
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.tools import saved_model_utils
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc

from tests.conftest import run_pipeline, serve_config
from tests.trainer.conftest import write_csv
from tfbake import check, serving_input, trainer
from tfbake.config import ConfigError, config_from_dict
from tfbake.model_server import Client
from tfbake.serving_input import signatures as sig
from tfbake.trainer.sequence_tagging import entities, tagging_report
from tfbake.trainer.warmup import WARMUP_FILE

PERSONS = [["john", "smith"], ["mary"], ["ann", "lee"], ["bob"], ["li", "wei"]]
PLACES = [["paris"], ["new", "york"], ["tokyo"], ["rio"], ["cape", "town"]]
FILLER = ["visited", "met", "saw", "in", "the", "and", "today", "with", "from", "went"]
MAX_TOKENS = 12


def _sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    words, tags = [], []
    for _ in range(rng.randint(1, 5)):
        kind = rng.choice(["PER", "LOC", "O", "O"])
        if kind == "O":
            words.append(rng.choice(FILLER))
            tags.append("O")
            continue
        span = rng.choice(PERSONS if kind == "PER" else PLACES)
        words += span
        tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(span) - 1)
    return words, tags


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    # A CSV list cell: the tags joined by "|".
    return [{"sentence": " ".join(w), "tags": "|".join(t)} for w, t in
            (_sentence(rng) for _ in range(n))]


def _raw_config(tmp) -> dict:
    train = _rows(300, 0)
    train[3]["tags"] += "|O"  # one tag more than tokens: a reject
    train.append({"sentence": "", "tags": "O"})  # a required value missing: a reject too
    return {
        "name": "tagger",
        "artifacts": str(tmp / "artifacts"),
        "data": {
            "train": write_csv(tmp / "train.csv", train),
            "eval": write_csv(tmp / "eval.csv", _rows(60, 1)),
        },
        "features": {"sentence": {"type": "string"}},
        "label": {"name": "tags", "head": "sequence_tagging", "tokens": "sentence"},
        "preprocessing": {"sentence": {"text": {"output": "ids", "max_tokens": MAX_TOKENS}}},
        "model": {"type": "token_tagger", "encoder": "transformer", "embedding_dim": 16,
                  "units": 16, "learning_rate": 0.02},
        "training": {"epochs": 6, "batch_size": 32, "early_stopping": None},
        "beam": {"direct_num_workers": 1, "direct_running_mode": "in_memory"},
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One Beam run, training and export of the YAML config."""
    tmp = tmp_path_factory.mktemp("tagging")
    done = run_pipeline(tmp, _raw_config(tmp))
    return done.config, done.config_path, done.stats, done.model, done.export_dir, tmp


@pytest.fixture(scope="module")
def urls(run):
    _, path, _, _, _, tmp = run
    with serve_config(sys.executable, path, tmp) as both:
        yield both


SENTENCES = [
    "mary visited paris",
    "john smith met ann lee in new york today",
    "bob",
    "the li wei and cape town from tokyo with mary saw rio",
]


def _in_process_tags(model, sentences: list[str]) -> list[list[str]]:
    """The trained tf_keras model's argmax over each sentence's own tokens (counted by
    splitting at spaces), through the Beam job's transform graph: not the export."""
    transformed = model.tft_output.transform_features_layer()(
        {"sentence": tf.constant(sentences)}
    )
    logits = model.keras_model({"sentence": transformed["sentence"]}).numpy()
    tags = model.tft_output.vocabulary_by_name("tags")
    return [
        [tags[i].decode() for i in np.argmax(row[: len(s.split()), 1:], axis=1)]
        for row, s in zip(logits, sentences)
    ]


def test_a_row_whose_tags_and_tokens_differ_in_count_is_a_reject_naming_both(run):
    config, _, stats, *_ = run
    # Both kinds of reject counted: every row read is written or rejected.
    assert stats["train"] == {"read": 301, "written": 299, "rejected": 2}
    lines = [line for f in glob.glob(f"{config.transform_dir}/rejects/train-*") for line in open(f)]
    (reject,) = [r for r in map(json.loads, lines) if "tags" in r["reason"]]
    row = _rows(300, 0)[3]
    n = len(row["sentence"].split())
    assert reject["reason"].startswith(
        f'label "tags" has {n + 1} tags but feature "sentence" has {n} tokens'
    )
    assert json.loads(reject["record"])["sentence"] == [row["sentence"]]


def test_tagging_report_has_token_accuracy_per_tag_scores_and_entity_f1(run):
    config, *_ = run
    report = json.load(open(f"{config.trainer_dir}/report.json"))
    assert report["kind"] == "sequence_tagging"
    assert set(report["per_tag"]) == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"}
    # Each word's tag is a rule of the word (and of the word before it).
    assert report["token_accuracy"] > 0.95
    assert report["entity"]["f1"] > 0.9


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_served_sentence_gets_one_tag_per_token_as_the_in_process_model(run, urls, protocol):
    _, _, _, model, _, _ = run
    expected = _in_process_tags(model, SENTENCES)
    with Client(urls[0] if protocol == "rest" else urls[1]) as client:
        batched = client.predict("tagger", [{"sentence": s} for s in SENTENCES])
        alone = client.predict("tagger", [{"sentence": SENTENCES[0]}])
    got = [[t.decode() for t in row] for row in batched[sig.TAGS]]
    assert got == expected
    assert [len(row) for row in got] == [len(s.split()) for s in SENTENCES]
    assert [[t.decode() for t in row] for row in batched[sig.TOKENS]] == [
        s.split() for s in SENTENCES
    ]
    # Alone or beside longer sentences: the same tags (padding changes nothing).
    assert [t.decode() for t in alone[sig.TAGS][0]] == got[0]
    assert batched[sig.TAG_SCORES][0].shape == (3, 5)
    np.testing.assert_allclose(batched[sig.TAG_SCORES][0].sum(axis=1), 1.0, rtol=1e-5)


def test_rest_json_has_a_list_per_sentence_of_its_own_length(run, urls):
    examples = serving_input.serialize_examples(
        [{"sentence": s} for s in SENTENCES], {"sentence": tf.io.FixedLenFeature([], tf.string)}
    )
    body = {"signature_name": sig.PREDICT,
            "instances": [{"b64": base64.b64encode(e).decode()} for e in examples]}
    request = urllib.request.Request(f"{urls[0]}/v1/models/tagger:predict",
                                     json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        rows = json.loads(response.read())["predictions"]
    assert [len(row["tags"]) for row in rows] == [len(s.split()) for s in SENTENCES]
    assert [row["tokens"] for row in rows] == [s.split() for s in SENTENCES]
    assert [row["token_count"] for row in rows] == [len(s.split()) for s in SENTENCES]
    assert all(len(row["tag_ids"]) == len(row["tag_scores"]) == len(row["tags"])
               for row in rows)


def test_grpc_answers_tags_padded_beside_token_count_as_tf_serving_would(run, urls):
    """The wire form (what tensorflow_model_server answers for this export too): padded
    [N, L] tensors and token_count [N]; no padding position carries a tag."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tagger"
    examples = serving_input.serialize_examples(
        [{"sentence": s} for s in SENTENCES[:2]],
        {"sentence": tf.io.FixedLenFeature([], tf.string)},
    )
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples))
    with grpc.insecure_channel(urls[1]) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=60
        )
    tags = tf.make_ndarray(response.outputs[sig.TAGS])
    counts = tf.make_ndarray(response.outputs[sig.TOKEN_COUNT])
    assert tags.shape == (2, MAX_TOKENS)
    assert counts.tolist() == [3, 9]
    assert (tags[0, 3:] == b"").all() and (tags[1, :9] != b"").all()
    assert (tf.make_ndarray(response.outputs[sig.TAG_IDS])[0, 3:] == -1).all()


def test_a_sentence_longer_than_max_tokens_gets_tags_for_the_tokens_the_model_saw(urls):
    words = ("mary met bob " * 6).split()
    with Client(urls[1]) as client:
        answer = client.predict("tagger", [{"sentence": " ".join(words)}])
    assert len(answer[sig.TAGS][0]) == len(answer[sig.TOKENS][0]) == MAX_TOKENS
    assert [t.decode() for t in answer[sig.TOKENS][0]] == words[:MAX_TOKENS]


def test_tagging_export_serves_predict_only_and_warms_up_with_it(run):
    *_, export_dir, _ = run
    defs = dict(saved_model_utils.get_meta_graph_def(export_dir, "serve").signature_def)
    defs.pop("__saved_model_init_op")
    # Classify answers one class list per example: no per-token form, so no such signature.
    assert set(defs) == {sig.DEFAULT_SERVING, sig.PREDICT, sig.PREDICT_RAW,
                         sig.TRANSFORM_FEATURES}
    assert {d.method_name for d in defs.values()} == {sig.PREDICT_METHOD}
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(os.path.join(export_dir, WARMUP_FILE))]
    assert logs and all(log.WhichOneof("log_type") == "predict_log" for log in logs)


def test_tfbake_check_compares_each_sentence_over_its_own_tokens(run, urls):
    """Per-token outputs come padded past each sentence's tokens (cut at its count by the
    client, counted from the features by the trained model's head): check compares the
    tokens each sentence has, over every path, a serving_default that predicts included."""
    config, _, _, model, _, _ = run
    rest, target = urls
    report = check.check(config, server=rest, grpc_target=target, model=model, batch_size=7)
    assert report.ok, check.format_report(report)
    assert [p.name for p in report.paths] == [
        "trained model on Beam features", "saved_model.load predict",
        "saved_model.load serving_default", "saved_model.load predict_raw",
        "TF1 session predict", "REST :predict", "REST :predict serving_default",
        "gRPC :predict", "gRPC :predict serving_default",
    ]
    for path in report.paths:
        assert path.rows == report.rows == 60, path.name
        assert set(path.max_abs_diff) >= {sig.TAGS, sig.TAG_SCORES, sig.TOKEN_COUNT}, path.name


def test_bilstm_token_model_tags_each_token(run):
    """The other encoder, on the same transformed data (not exported: the transformer
    export above covers the export path)."""
    config, _, _, model, _, _ = run
    tagger = trainer.TokenTagger(model.tft_output, "tags", head=model.head, encoder="bilstm",
                                 embedding_dim=8, units=8)
    fn = trainer.make_input_fn(f"{config.transform_dir}/data/eval-*", model.tft_output, "tags",
                               batch_size=64)
    predictions = tagger.predict(fn)
    counts = predictions[sig.TOKEN_COUNT]
    assert counts.max() <= MAX_TOKENS and (counts > 0).all()
    assert all((row[:c] != b"").all() and (row[c:] == b"").all()
               for row, c in zip(predictions[sig.TAGS], counts))


def test_entities_are_bio_spans_and_f1_counts_exact_spans_only():
    assert entities(["B-PER", "I-PER", "O", "B-LOC", "I-PER", "I-PER"]) == {
        ("PER", 0, 2), ("LOC", 3, 4), ("PER", 4, 6)
    }
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC"]]
    # One exact entity of three found; a partial span does not count.
    predicted = [["B-PER", "O", "O", "B-LOC"], ["O", "O"]]
    report = tagging_report(true, predicted)
    assert report["entity"]["precision"] == pytest.approx(1 / 2)
    assert report["entity"]["recall"] == pytest.approx(1 / 3)
    assert report["token_accuracy"] == pytest.approx(4 / 6)
    assert report["per_tag"]["I-PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                          "support": 1}
    with pytest.raises(ValueError, match="sentence 1: 2 true tags but 1 predicted"):
        tagging_report(true, [predicted[0], ["O"]])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"label": {"name": "tags", "head": "sequence_tagging"}}, "tokens .* is required by"),
        ({"model": {"type": "dnn"}}, "head sequence_tagging needs model.type token_tagger"),
        ({"preprocessing": {"sentence": {"text": {"output": "ids", "max_tokens": 4,
                                                  "ngrams": [1, 2]}}}}, "may not use ngrams"),
        ({"preprocessing": {"sentence": {"text": {"output": "bag_of_words",
                                                  "vocabulary": {"top_k": 9}}}}},
         "needs output: ids"),
    ],
)
def test_config_refuses_tags_that_cannot_line_up_with_tokens(tmp_path, change, message):
    raw = {**_raw_config(tmp_path), **change}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw, check_files=False)
