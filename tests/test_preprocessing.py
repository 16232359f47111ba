"""Every declarative step: what Beam wrote equals what the transform graph does to the
same rows sent as serialized tf.Examples (the graph the export carries)."""

from __future__ import annotations

import glob
import random

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from tfbake import serving_input, stages, transform
from tfbake.config import config_from_dict

HEADER = ["num", "gappy", "shade", "size", "code", "y"]


def _rows(n: int = 120) -> list[list[str]]:
    rng = random.Random(3)
    rows = []
    for i in range(n):
        rows.append(
            [
                f"{rng.uniform(0, 100):.2f}",
                "" if i % 5 == 0 else f"{rng.gauss(50, 10):.2f}",
                "" if i % 7 == 0 else rng.choice(["red", "red", "red", "blue", "green", "teal"]),
                rng.choice(["S", "M", "L", "XL"]),
                str(rng.choice([7, 7, 8, 9])),
                rng.choice(["p", "q"]),
            ]
        )
    return rows


STEPS = {
    "num": {"bucketize": {"num_buckets": 4}, "scale": "min_max"},
    "gappy": {"impute": "median", "scale": "z_score"},
    "shade": {"impute": "most_frequent", "vocabulary": {"top_k": 2, "num_oov_buckets": 1}},
    "size": {"vocabulary": {"num_oov_buckets": 2}},
    "code": {"vocabulary": {"num_oov_buckets": 1}},
}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("steps")
    rows = _rows()
    for split, part in (("train", rows[:100]), ("eval", rows[100:])):
        text = "\n".join(",".join(r) for r in [HEADER, *part])
        (tmp / f"{split}.csv").write_text(text + "\n")
    config = config_from_dict(
        {
            "name": "steps",
            "artifacts": str(tmp / "artifacts"),
            "data": {
                "train": str(tmp / "train.csv"),
                "eval": str(tmp / "eval.csv"),
                "csv": {"na_values": [""]},
            },
            "features": {
                "num": {"type": "float"},
                "gappy": {"type": "float", "nullable": True},
                "shade": {"type": "string", "nullable": True},
                "size": {"type": "string"},
                "code": {"type": "int"},
            },
            "label": {"name": "y"},
            "preprocessing": STEPS,
        }
    )
    stages.run_transform(config)
    return config, rows


def _beam_output(config, split):
    output = tft.TFTransformOutput(config.transform_dir)
    files = glob.glob(transform.data_pattern(config.transform_dir, split))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1000)
    (batch,) = [tf.io.parse_example(b, output.transformed_feature_spec()) for b in dataset]
    return {k: v.numpy() for k, v in batch.items()}


def _graph_output(config, rows):
    """The transform graph on raw rows sent as serialized tf.Examples (no label)."""
    spec = stages.serving_feature_spec(config)
    decoder = transform.CsvRowDecoder(config.raw_feature_spec(), HEADER, config.data.csv)
    dicts = [decoder.decode_dict(",".join(r)) for r in rows]
    for d in dicts:
        d.pop("y")
    examples = serving_input.serialize_examples(dicts, spec)
    layer = tft.TFTransformOutput(config.transform_dir).transform_features_layer()
    raw = tf.io.parse_example(tf.constant(examples), spec)
    return {k: v.numpy() for k, v in layer(raw).items()}


@pytest.mark.parametrize("split", ["train", "eval"])
def test_beam_and_the_serving_graph_agree_on_every_step(job, split):
    config, rows = job
    part = rows[:100] if split == "train" else rows[100:]
    beam_out = _beam_output(config, split)
    graph_out = _graph_output(config, part)
    assert set(graph_out) == set(beam_out) - {"y"}
    # Beam does not promise row order: pair rows by sorting both tables.
    keys = sorted(graph_out)

    def table(out):
        return sorted(zip(*(out[k].tolist() for k in keys)))

    for a, b in zip(table(graph_out), table(beam_out), strict=True):
        for key, x, y in zip(keys, a, b):
            if isinstance(x, int):
                assert x == y, key
            else:
                assert abs(x - y) <= 1e-6, key


def test_step_semantics(job):
    config, rows = job
    out = _beam_output(config, "train")
    train = rows[:100]
    output = tft.TFTransformOutput(config.transform_dir)
    # top_k: 2 keeps the two most frequent present shades; missing -> the most frequent.
    vocabulary = output.vocabulary_by_name("shade")
    assert len(vocabulary) == 2 and vocabulary[0] == b"red"
    shade_ids = out["shade"]
    assert set(shade_ids.tolist()) <= {0, 1, 2}  # 2 words + 1 OOV bucket
    assert int(np.sum(shade_ids == 0)) == sum(r[2] in ("red", "") for r in train)
    # median imputation, then z-score over the imputed column.
    present = np.array([float(r[1]) for r in train if r[1]])
    missing = [i for i, r in enumerate(train) if not r[1]]
    median = np.median(present)
    column = np.concatenate([present, np.full(len(missing), median)])
    expected_z = (median - column.mean()) / column.std()
    imputed = out["gappy"][missing]
    assert np.ptp(imputed) == 0 and imputed[0] == pytest.approx(expected_z, abs=0.05)
    # bucketize: 4 quantile buckets of about 25 rows each.
    counts = np.bincount(out["num_bucketized"], minlength=4)
    assert len(counts) == 4 and counts.min() >= 15
    # min_max: the scaled range is exactly [0, 1] on the training data.
    assert out["num"].min() == 0.0 and out["num"].max() == pytest.approx(1.0)
    # int categories: ids, not numbers; the most frequent code (7) is id 0.
    assert output.vocabulary_by_name("code")[0] == b"7"
