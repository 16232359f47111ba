"""The job's lean vocabulary steps (``transform.vocabulary_steps``) write the files and
count the sizes that tf.Transform's own implementation does, for every kind of
vocabulary: plain, ``top_k`` (written as ``Top.Of`` orders it), thresholds leaving it
empty (a dummy token), frequencies, fingerprint order, reserved tokens, numbers,
weights, labels (mutual information), coverage (``key_fn``) and ``tfrecord_gzip``;
across many bundles. Both pipelines run here, one with each implementation."""

from __future__ import annotations

import contextlib
import gzip
import os
import random

import apache_beam as beam
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from tensorflow_transform import analyzer_nodes
from tensorflow_transform.beam import common as tft_common

from tfbake.transform.beam_overhead import cut_overhead
from tfbake.transform.csv_source import arrow_schema, raw_adapter_config
from tfbake.transform.vocabulary_steps import lean_vocabulary_steps

SPEC = {
    "word": tf.io.FixedLenFeature([], tf.string),
    "code": tf.io.FixedLenFeature([], tf.int64),
    "label": tf.io.FixedLenFeature([], tf.int64),
}
# Ties ("a"/"b"), a value tf.Transform leaves out (a newline), non-ASCII, rare ones.
COUNTS = {"b": 30, "a": 30, "c": 12, "Élan": 9, "d": 9, "x\ny": 2, "e": 1, "f": 1}
VOCABULARIES = {
    "plain": {},
    "top_3": {"top_k": 3},
    "none_left": {"frequency_threshold": 1000},
    "top_none_left": {"top_k": 2, "frequency_threshold": 1000},
    "frequencies": {"store_frequency": True},
    "top_frequencies": {"top_k": 4, "store_frequency": True},
    "fingerprints": {"fingerprint_shuffle": True},
    "reserved": {"reserved_tokens": ["<pad>", "b"]},
    "weighted": {"weights": "code", "store_frequency": True},
    "informative": {"labels": "label", "store_frequency": True},
    "coverage": {"top_k": 2, "coverage_top_k": 1, "key_fn": "first_letter"},
    "gzipped": {"file_format": "tfrecord_gzip", "top_k": 5},
    "numbers": {"source": "code"},
}


def _first_letter(token: bytes) -> bytes:
    return token[:1]


def _rows() -> list[dict]:
    rng = random.Random(11)
    words = [w for w, n in COUNTS.items() for _ in range(n)]
    rng.shuffle(words)
    return [{"word": w, "code": rng.choice([3, 1, 2, 7]), "label": rng.randint(0, 1)}
            for w in words]


def _preprocessing_fn(inputs):
    outputs = {}
    batch = tf.shape(inputs["code"])
    for name, options in VOCABULARIES.items():
        options = dict(options)
        source = inputs[options.pop("source", "word")]
        for key in ("weights", "labels"):
            if key in options:
                options[key] = tf.cast(inputs[options[key]], tf.float32 if key == "weights"
                                       else tf.int64)
        if "key_fn" in options:
            options["key_fn"] = _first_letter
        tft.vocabulary(source, vocab_filename=name, **options)
        size = tft.experimental.get_vocabulary_size_by_name(name)
        outputs[f"{name}_size"] = tf.fill(batch, tf.cast(size, tf.int64))
    return outputs


def _analyze(directory: str, lean: bool) -> tuple[dict, dict, list[str]]:
    """The vocabulary files' contents, the sizes the transform_fn gives, and the
    labels of the transforms applied."""
    rows = _rows()
    batches = [
        pa.RecordBatch.from_pydict(
            {name: [[r[name]] for r in rows[i:i + 9]] for name in SPEC},
            schema=arrow_schema(SPEC),
        )
        for i in range(0, len(rows), 9)
    ]
    steps = lean_vocabulary_steps() if lean else contextlib.nullcontext()
    with beam.Pipeline(runner=FnApiRunner()) as pipeline, tft_beam.Context(
        temp_dir=os.path.join(directory, "tmp"), force_tf_compat_v1=True, desired_batch_size=9
    ), steps:
        transform_fn = (
            pipeline | beam.Create(batches, reshuffle=False), raw_adapter_config(SPEC)
        ) | tft_beam.AnalyzeDataset(_preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(directory, "out"))
        labels = [t.full_label for t in _applied(pipeline)]
    output = tft.TFTransformOutput(os.path.join(directory, "out"))
    files = {}
    for name in VOCABULARIES:
        path = output.vocabulary_file_by_name(name)
        if path.endswith(".gz"):
            with gzip.open(path) as f:
                files[name] = f.read()
        else:
            with open(path, "rb") as f:
                files[name] = f.read()
    with tf.Graph().as_default():  # a TF1 transform_fn, as the job writes one here
        features = {name: tf.constant([b"a"] if name == "word" else [1], spec.dtype)
                    for name, spec in SPEC.items()}
        transformed = output.transform_raw_features(features)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.tables_initializer())
            sizes = {name: int(value[0]) for name, value in session.run(transformed).items()}
    temporaries = [f for _, _, names in os.walk(directory) for f in names if ".tmp-" in f]
    assert not temporaries, temporaries
    return files, sizes, labels


def _applied(pipeline: beam.Pipeline) -> list:
    found = []

    class Collect(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            found.append(node)

        def enter_composite_transform(self, node):
            found.append(node)

    pipeline.visit(Collect())
    return found


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> tuple:
    cut_overhead()  # the job's Beam
    base = tmp_path_factory.mktemp("vocabulary_steps")
    return _analyze(str(base / "tft"), lean=False), _analyze(str(base / "lean"), lean=True)


def test_lean_steps_write_tf_transforms_files_and_sizes(both):
    (tft_files, tft_sizes, tft_labels), (lean_files, lean_sizes, lean_labels) = both
    for name in VOCABULARIES:
        assert lean_files[name] == tft_files[name], name
        assert lean_sizes[f"{name}_size"] == tft_sizes[f"{name}_size"], name
    # What the kinds act on, as COUNTS has them (tf.Transform orders ties by their
    # bytes, descending, and leaves out the newline).
    assert tft_files["plain"] == "b\na\nc\nÉlan\nd\nf\ne\n".encode()
    assert tft_files["top_3"] == b"b\na\nc\n"
    assert tft_files["reserved"].startswith(b"<pad>\nb\na\nc\n")
    assert tft_sizes["plain_size"] == 7 and tft_sizes["top_3_size"] == 3
    assert tft_sizes["none_left_size"] == 1  # the dummy token
    # The lean steps did run: tf.Transform's writes and counts did not.
    assert any("WriteToText" in label for label in tft_labels)
    assert not any("WriteToText" in label or "TotalVocabSize" in label for label in lean_labels)
    assert sum(label.endswith("/OrderAndWrite") for label in lean_labels) == len(VOCABULARIES) - 1


def test_tf_transforms_own_steps_again_after_the_job():
    registry = tft_common._PTRANSFORM_BY_OPERATION_DEF_SUBCLASS  # noqa: SLF001
    before = {node: registry[node].get_ptransform(None)
              for node in (analyzer_nodes.VocabularyOrderAndWrite, analyzer_nodes.VocabularyCount)}
    with lean_vocabulary_steps():
        assert all(registry[node].get_ptransform(None) != found for node, found in before.items())
    assert {node: registry[node].get_ptransform(None) for node in before} == before
