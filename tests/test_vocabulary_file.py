"""``vocabulary: {file: PATH}``: a fixed token list instead of a computed vocabulary.

One tiny pipeline (Beam -> training -> export) with a text and a category looked up
in files written by the test; the files are then deleted, and the export must still
load and answer as before in a fresh process (the files travel as assets).
"""

from __future__ import annotations

import json
import os
import random
import subprocess

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import saved_model_pb2

from tests.conftest import write_config
from tests.trainer.conftest import write_csv
from tfbake import serving_input
from tfbake.config import ConfigError, config_from_dict
from tfbake.transform.ops.categories import Vocabulary

# The files' tokens, in line order: a token's id is its index here.
WORDS = ["the", "film", "was", "great", "dull", "fun", "boring", "plot"]
COLORS = ["red", "green", "blue"]
MAX_TOKENS = 6
COLOR_OOV = 2


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        good = rng.random() < 0.5
        words = ["the", "film", "was", rng.choice(["great", "fun"] if good else ["dull", "boring"])]
        rows.append(
            {
                "review": " ".join(words),
                "color": rng.choice(COLORS),
                "tags": "|".join(rng.sample(COLORS, 2)),
                "label": "fresh" if good else "rotten",
            }
        )
    return rows


# Served after the files are gone: known tokens, a word and a color in no file.
REQUESTS = [
    {"review": "the plot was great", "color": "blue", "tags": ["green"]},
    {"review": "dull film", "color": "red", "tags": ["red", "blue"]},
    {"review": "the zebra was fun", "color": "purple", "tags": ["pink"]},
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The pipeline run once; the vocabulary files deleted after the export.

    Returns ``(config, export_dir, answers before the deletion, source paths)``."""
    from tfbake import stages
    from tfbake.config import load_config

    tmp = tmp_path_factory.mktemp("vocabulary_file")
    words, colors = tmp / "words.txt", tmp / "colors.txt"
    words.write_text("\n".join(WORDS) + "\n")
    colors.write_text("\n".join(COLORS))  # no final newline: still 3 tokens
    raw = {
        "name": "vocabulary_file",
        "artifacts": str(tmp / "artifacts"),
        "data": {
            "train": write_csv(tmp / "train.csv", _rows(60, 0)),
            "eval": write_csv(tmp / "eval.csv", _rows(20, 1)),
        },
        "features": {
            "review": {"type": "string"},
            "color": {"type": "string"},
            "tags": {"type": "string", "list": True},
        },
        "label": {"name": "label", "type": "string"},
        "preprocessing": {
            "review": {
                "text": {"vocabulary": {"file": str(words)}, "output": "ids",
                         "max_tokens": MAX_TOKENS},
            },
            "color": {"vocabulary": {"file": str(colors), "num_oov_buckets": COLOR_OOV}},
            "tags": {"vocabulary": {"file": str(colors)}, "output": "multi_hot"},
        },
        "model": {"hidden_units": [8], "learning_rate": 0.05},
        "training": {"epochs": 3, "batch_size": 16, "early_stopping": None},
    }
    config = load_config(write_config(tmp, raw))
    stages.run_transform(config)
    model, _ = stages.run_training(config)
    export_dir = stages.run_export(config, model)
    examples = [bytes.fromhex(e) for e in _examples(config)]
    answer = tf.saved_model.load(export_dir).signatures["predict"](examples=tf.constant(examples))
    before = {k: v.numpy().tolist() for k, v in answer.items() if v.dtype != tf.string}
    words.unlink()
    colors.unlink()
    return config, export_dir, before, (str(words), str(colors))


def _examples(config) -> list[str]:
    from tfbake import stages

    spec = stages.serving_feature_spec(config)
    return [e.hex() for e in serving_input.serialize_examples(REQUESTS, spec)]


# Loads the export with nothing else of the run at hand (only the export folder);
# the answers as the fixture takes them in process.
_PREDICT = """
import json, sys
import tensorflow as tf
export, examples = sys.argv[1], [bytes.fromhex(e) for e in json.loads(sys.argv[2])]
answer = tf.saved_model.load(export).signatures["predict"](examples=tf.constant(examples))
print(json.dumps({k: v.numpy().tolist() for k, v in answer.items() if v.dtype != tf.string}))
"""


def _answers_in_a_fresh_process(python: str, export_dir: str, examples: list[str]) -> dict:
    result = subprocess.run(
        [python, "-c", _PREDICT, export_dir, json.dumps(examples)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_export_serves_after_the_vocabulary_files_are_deleted(run, python):
    config, export_dir, before, _ = run
    after = _answers_in_a_fresh_process(python, export_dir, _examples(config))
    assert after.keys() == before.keys() and after
    for key in before:
        np.testing.assert_array_equal(np.array(after[key]), np.array(before[key]), err_msg=key)


def _attrs_naming(export_dir: str, text: str) -> set[str]:
    """The node attributes of the export's graph and functions whose values hold ``text``."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    graph = saved_model.meta_graphs[0].graph_def
    nodes = [*graph.node, *(n for fn in graph.library.function for n in fn.node_def)]
    return {
        key
        for node in nodes
        for key, value in node.attr.items()
        if text.encode() in value.SerializeToString()
    }


def test_the_export_carries_the_files_as_assets_not_their_source_paths(run):
    _, export_dir, _, sources = run
    for source in sources:
        # A table's shared_name is only a name (made unique when the export loads);
        # no constant or other attribute may hold the path the table would read.
        assert _attrs_naming(export_dir, source) <= {"shared_name"}
    assets = os.listdir(os.path.join(export_dir, "assets"))
    assert {"words.txt", "colors.txt"} <= set(assets)
    carried = open(os.path.join(export_dir, "assets", "words.txt")).read().split()
    assert carried == WORDS


def test_ids_are_the_files_line_numbers_and_unknown_tokens_go_to_oov_buckets(run):
    config = run[0]
    layer = tft.TFTransformOutput(config.transform_dir).transform_features_layer()
    out = layer(
        {
            "review": tf.constant([r["review"] for r in REQUESTS]),
            "color": tf.constant([r["color"] for r in REQUESTS]),
            "tags": tf.ragged.constant([r["tags"] for r in REQUESTS]).to_sparse(),
        }
    )
    colors, reviews = out["color"].numpy().tolist(), out["review"].numpy().tolist()
    # A category's id is its line number from 0; unseen "purple" is in an OOV bucket.
    assert colors[:2] == [COLORS.index("blue"), COLORS.index("red")]
    assert len(COLORS) <= colors[2] < len(COLORS) + COLOR_OOV
    # A token's id is its line number + 1 (0 pads); unseen "zebra" is in the one bucket.
    ids = [WORDS.index(w) + 1 for w in REQUESTS[0]["review"].split()]
    assert reviews[0] == ids + [0] * (MAX_TOKENS - len(ids))
    assert reviews[2][1] == len(WORDS) + 1
    # A list's multi-hot vector: one slot per line, then the OOV bucket ("pink").
    assert out["tags"].numpy().tolist() == [[0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]


def test_the_vocabulary_size_is_known_to_the_model(run):
    config = run[0]
    schema = tft.TFTransformOutput(config.transform_dir).transformed_metadata.schema
    domains = {f.name: (f.int_domain.min, f.int_domain.max) for f in schema.feature}
    assert domains["color"] == (0, len(COLORS) + COLOR_OOV - 1)
    assert domains["review"] == (0, len(WORDS) + 1)  # 0 pads, then the ids and one bucket


def _config_error(tmp_path, vocabulary: dict, feature_type: str = "string") -> str:
    (tmp_path / "d.csv").write_text("c,y\na,p\n")
    raw = {
        "name": "t",
        "data": {"train": str(tmp_path / "d.csv"), "eval": str(tmp_path / "d.csv")},
        "features": {"c": {"type": feature_type}},
        "label": {"name": "y"},
        "preprocessing": {"c": {"vocabulary": vocabulary}},
    }
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    return str(err.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "preprocessing.c: vocabulary.file {path} cannot be read"),
        ("", "preprocessing.c: vocabulary.file {path} is empty"),
        ("a\nb\na\n", "token 'a' is on line 1 and again on line 3"),
        ("a\n\nb\n", "line 2 is blank"),
    ],
)
def test_a_bad_vocabulary_file_is_a_config_error_naming_the_feature(tmp_path, content, expected):
    path = tmp_path / "vocab.txt"
    if content is not None:
        path.write_text(content)
    assert expected.format(path=path) in _config_error(tmp_path, {"file": str(path)})


def test_a_relative_vocabulary_file_is_resolved_when_the_config_loads():
    assert Vocabulary(file="vocab.txt").file == os.path.abspath("vocab.txt")


def test_a_vocabulary_file_contradicted_by_top_k_or_not_ints_for_an_int_feature(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("7\nx\n")
    error = _config_error(tmp_path, {"file": str(path), "top_k": 5, "frequency_threshold": 2})
    assert "preprocessing.c" in error
    assert "top_k, frequency_threshold" in error and "cannot be combined" in error
    error = _config_error(tmp_path, {"file": str(path)}, feature_type="int")
    assert "preprocessing.c: vocabulary.file" in error and "line 2 ('x') is not an int" in error
