"""tfbake's vocabularies count each batch's values in the graph (weights of 1, see
``ones_per_value``) and must be the vocabularies tf.Transform's own unweighted
``tft.vocabulary`` computes, byte for byte: order, ties, ``top_k``,
``frequency_threshold``, values it leaves out (empty strings, newlines), for strings
and integers, dense, sparse (a nullable feature's most frequent value, sequence tags)
and ragged (text tokens) inputs, across many batches; a class label's counts are
tf.Transform's, written as floats."""

from __future__ import annotations

import collections
import random

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tfbake.transform.beam_overhead import cut_overhead
from tfbake.transform.csv_source import arrow_schema, raw_adapter_config
from tfbake.transform.labels import FREQUENCY_SUFFIX, transform_label, transform_tags
from tfbake.transform.ops.categories import most_frequent, vocabulary_ids
from tfbake.transform.preprocessing_config import Vocabulary

# How often each value occurs: ties ("a"/"b", "d"/"Élan"), values tf.Transform leaves
# out of a text vocabulary ("" and a newline), a rare one for frequency_threshold.
COUNTS = {"b": 120, "a": 120, "c": 60, "d": 41, "": 10, "x\ny": 5, "Élan": 41, "e": 3}
# Picks of the declared vocabularies, each computed both ways (on the dense words).
PICKS = {
    "all": Vocabulary(),
    "top3": Vocabulary(top_k=3),
    "at_least_40": Vocabulary(frequency_threshold=40),
}


def _rows() -> list[dict]:
    rng = random.Random(7)
    words = [w for w, n in COUNTS.items() for _ in range(n)]
    rng.shuffle(words)
    lists = [w for w, n in COUNTS.items() for _ in range(3 * n)]
    rng.shuffle(lists)
    rows = []
    for i, word in enumerate(words):
        size = min(len(lists), rng.randint(0, 5)) if i < len(words) - 1 else len(lists)
        rows.append({
            "word": word,
            "code": [3, 1, 2, 2, 7][i % 5],
            "maybe": word if i % 4 else None,
            "words": [lists.pop() for _ in range(size)],
        })
    return rows


SPEC = {
    "word": tf.io.FixedLenFeature([], tf.string),
    "code": tf.io.FixedLenFeature([], tf.int64),
    "maybe": tf.io.VarLenFeature(tf.string),
    "words": tf.io.VarLenFeature(tf.string),
}


def _record_batch(rows: list[dict]) -> pa.RecordBatch:
    """Rows as the job's sources decode them: a list per cell, empty where missing."""
    columns = {
        "word": [[r["word"]] for r in rows],
        "code": [[r["code"]] for r in rows],
        "maybe": [[] if r["maybe"] is None else [r["maybe"]] for r in rows],
        "words": [r["words"] for r in rows],
    }
    return pa.RecordBatch.from_pydict(columns, schema=arrow_schema(SPEC))


def _preprocessing_fn(inputs):
    ragged = tf.RaggedTensor.from_sparse(inputs["words"])
    sources = {"word": inputs["word"], "code": inputs["code"], "words": ragged}
    for source, x in sources.items():
        for pick, vocabulary in PICKS.items() if source == "word" else [("all", Vocabulary())]:
            name = f"{source}_{pick}"
            vocabulary_ids(x, vocabulary, f"ours_{name}")
            tft.vocabulary(
                x, top_k=vocabulary.top_k, frequency_threshold=vocabulary.frequency_threshold,
                vocab_filename=f"tft_{name}",
            )
    most_frequent(inputs["maybe"], "ours_maybe")
    tft.vocabulary(inputs["maybe"].values, top_k=1, vocab_filename="tft_maybe_most_frequent")
    transform_tags(inputs["words"], "ours_tags", 5)
    tft.vocabulary(inputs["words"], vocab_filename="tft_tags")
    transform_label(inputs["word"], "ours_label", classification=True)
    tft.vocabulary(inputs["word"], vocab_filename="tft_label_frequency", store_frequency=True)
    return {"word": inputs["word"]}


def test_vocabularies_counted_per_batch_are_tf_transforms_own(tmp_path):
    cut_overhead()  # the job's Beam
    rows = _rows()
    batches = [_record_batch(rows[i:i + 37]) for i in range(0, len(rows), 37)]
    adapter_config = raw_adapter_config(SPEC)
    with beam.Pipeline(runner=FnApiRunner()) as pipeline, tft_beam.Context(
        temp_dir=str(tmp_path / "tmp"), force_tf_compat_v1=True, desired_batch_size=37
    ):
        transform_fn = (
            pipeline | beam.Create(batches, reshuffle=False), adapter_config
        ) | tft_beam.AnalyzeDataset(_preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / "out"))
    output = tft.TFTransformOutput(str(tmp_path / "out"))

    def vocabulary(name: str) -> list[bytes]:
        return list(output.vocabulary_by_name(name))

    for name in [f"word_{pick}" for pick in PICKS] + ["code_all", "words_all"]:
        assert vocabulary(f"ours_{name}") == vocabulary(f"tft_{name}"), name
    assert vocabulary("ours_maybe_most_frequent") == vocabulary("tft_maybe_most_frequent")
    assert vocabulary("ours_tags") == vocabulary("tft_tags")
    # A class label's vocabulary, and its counts (written as floats when weighted).
    assert vocabulary("ours_label") == vocabulary("tft_word_all")
    counted = [line.split(b" ", 1) for line in vocabulary(f"ours_label{FREQUENCY_SUFFIX}")]
    assert [(int(float(count)), token) for count, token in counted] == [
        (int(count), token)
        for count, token in (line.split(b" ", 1) for line in vocabulary("tft_label_frequency"))
    ]
    # What the picks and filters act on, as COUNTS has it: ties (tf.Transform orders
    # them by their bytes, descending), the values left out, a top_k and a threshold.
    expected = [w.encode() for w in ("b", "a", "c", "Élan", "d", "e")]
    assert vocabulary("tft_word_all") == expected
    assert vocabulary("tft_word_at_least_40") == expected[:-1]
    assert len(vocabulary("tft_word_top3")) == 3
    assert collections.Counter(w for r in rows for w in r["words"]) == {
        w: 3 * n for w, n in COUNTS.items()}
