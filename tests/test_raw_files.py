"""Raw files as they come: ", " separators, " ?" for missing values, stray spaces, eval
labels spelled differently from train, a nullable int that is mostly empty, and a
validation split held out of train. Declared in YAML only (no preprocessing_fn), run
once through the Beam job, training and export, and checked by ``tfbake check``.
"""

from __future__ import annotations

import json
import os
import random
import zlib

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import write_config
from tfbake import check, serving_input, stages, transform
from tfbake.config import load_config

SECTORS = ["Retail", "Tech", "Farm"]
HEADER = "age, sector, hours, children, income_class"


def _line(rng: random.Random, eval_split: bool) -> str:
    age = rng.randint(18, 80)
    # A space after every delimiter; now and then one before it too ("Retail ").
    sector = rng.choice([*SECTORS, "Retail ", "?", "? "])
    hours = rng.choice(["?", str(rng.randint(10, 60))])
    children = str(rng.randint(0, 4)) if rng.random() < 0.1 else "?"  # mostly empty
    label = "high" if age > 45 else "low"
    return f"{age}, {sector}, {hours}, {children}, {label}{'.' if eval_split else ''}"


def _write(directory, name: str, rows: int, seed: int, eval_split: bool) -> tuple[str, list]:
    rng = random.Random(seed)
    lines = [_line(rng, eval_split) for _ in range(rows)]
    path = directory / name
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return str(path), lines


def _raw_config(tmp, train: str, eval_path: str) -> dict:
    return {
        "name": "census",
        "artifacts": str(tmp / "artifacts"),
        "data": {
            "train": train,
            "eval": eval_path,
            "csv": {"skipinitialspace": True},  # na_values: the defaults ("", "NA", "?")
            "validation": {"fraction": 0.25},
        },
        "features": {
            "age": {"type": "int"},
            "sector": {"type": "string", "nullable": True},
            "hours": {"type": "float", "nullable": True},
            "children": {"type": "int", "nullable": True},
        },
        "label": {"name": "income_class", "type": "string",
                  "map": {"high.": "high", "low.": "low"}},
        "cleaning": {"strip": True},
        "preprocessing": {
            "age": {"scale": "z_score"},
            "hours": {"impute": "mean"},
            "children": {"impute": "constant", "impute_value": 0},
        },
        "model": {"type": "dnn_classifier", "hidden_units": [8], "learning_rate": 0.05},
        "training": {"epochs": 4, "batch_size": 32, "early_stopping": {"patience": 2}},
        "export": {"warmup_examples": 3},
    }


@pytest.fixture(scope="module")
def census(tmp_path_factory):
    """The config, its train lines, and the run's stats, metrics and export."""
    tmp = tmp_path_factory.mktemp("census")
    train, train_lines = _write(tmp, "train.csv", 240, 1, eval_split=False)
    eval_path, _ = _write(tmp, "eval.csv", 60, 2, eval_split=True)
    raw = _raw_config(tmp, train, eval_path)
    config = load_config(write_config(tmp, raw))
    stats = stages.run_transform(config)
    model, metrics = stages.run_training(config)
    export_dir = stages.run_export(config, model)
    return config, raw, train_lines, stats, model, metrics, export_dir


def _transformed(export_dir: str, rows: list[dict], spec) -> dict:
    loaded = tf.saved_model.load(export_dir)
    examples = tf.constant(serving_input.serialize_examples(rows, spec))
    return {k: v.numpy() for k, v in loaded.signatures["transform_features"](
        examples=examples).items()}


def test_a_value_sent_without_the_files_spaces_gets_the_training_id(census):
    config, _, _, _, model, _, export_dir = census
    vocabulary = model.tft_output.vocabulary_by_name("sector")
    assert sorted(vocabulary) == sorted(s.encode() for s in SECTORS)  # no " Retail", no "?"
    spec = stages.serving_feature_spec(config)
    rows = [{"age": 50, "sector": s} for s in ("Retail", " Retail", "Retail ", "\tRetail")]
    out = _transformed(export_dir, rows, spec)
    assert out["sector"].tolist() == [vocabulary.index(b"Retail")] * 4
    loaded = tf.saved_model.load(export_dir)
    scores = loaded.signatures["predict"](examples=tf.constant(
        serving_input.serialize_examples(rows, spec)))["probabilities"].numpy()
    np.testing.assert_array_equal(scores, np.repeat(scores[:1], 4, axis=0))


def test_question_marks_after_the_space_are_missing_values(census):
    config, _, _, stats, _, _, export_dir = census
    assert all(counts["rejected"] == 0 for counts in stats.values())
    spec = stages.serving_feature_spec(config)
    missing = _transformed(export_dir, [{"age": 50}], spec)
    # A missing sector has an id of its own, after the vocabulary and its OOV bucket.
    assert missing["sector"].tolist() == [len(SECTORS) + 1]


def test_eval_labels_mapped_to_the_training_classes_train(census):
    _, _, _, _, model, metrics, _ = census
    assert sorted(model.head.label_vocabulary) == ["high", "low"]
    assert metrics["accuracy"] > 0.8  # age > 45 is the label: learnable in 4 epochs


def test_check_compares_every_row_with_a_mostly_empty_nullable_int(census):
    config, _, _, stats, model, _, export_dir = census
    report = check.check(config, export_dir=export_dir, model=model)
    rows = stats["eval"]["written"]
    assert report.rows == rows
    for path in report.paths:
        assert (path.rows, path.skipped_rows, path.error) == (rows, 0, None), path.name
    assert report.ok, check.format_report(report)
    eval_rows = [row for row, _ in check.iter_eval_rows(config)]
    assert sum("children" in row for row in eval_rows) < rows / 3


def test_validation_is_a_deterministic_fraction_of_train(census):
    config, _, train_lines, stats, _, _, _ = census
    held_out = sum(zlib.crc32(line.encode()) < 0.25 * 2**32 for line in train_lines)
    assert stats["validation"] == {"read": held_out, "written": held_out, "rejected": 0}
    assert stats["train"]["read"] == len(train_lines) - held_out
    with open(os.path.join(config.trainer_dir, "report.json")) as f:
        splits = json.load(f)["splits"]
    assert splits == {"learning_curves": ["train", "validation"],
                      "early_stopping": "validation", "evaluation": "eval"}


def test_eval_labels_without_a_map_fail_the_beam_job_naming_them(census, tmp_path):
    _, raw, _, _, _, _, _ = census
    raw = json.loads(json.dumps(raw))
    del raw["label"]["map"], raw["data"]["validation"]
    raw["artifacts"] = str(tmp_path / "artifacts")
    config = load_config(write_config(tmp_path, raw))
    with pytest.raises(transform.TransformError) as error:
        stages.run_transform(config)
    eval_lines = open(config.data.eval).read().splitlines()[1:]
    counts = {v: sum(line.endswith(f", {v}") for line in eval_lines) for v in ("high.", "low.")}
    message = str(error.value)
    assert message.startswith('eval label "income_class" has values that are no class of the '
                              "training data: ")
    for value, count in counts.items():
        assert f'"{value}" ({count} rows)' in message
    assert 'The training classes are ["high", "low"]' in message
    assert 'map: {"' in message  # the fix
