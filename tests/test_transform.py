"""The Beam job on small data made here: rejects, stats, TFRecord input, the limit."""

from __future__ import annotations

import glob
import json
import random

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from tfbake import serving_input, stages, transform
from tfbake.config import config_from_dict

N_GOOD = 190
HEADER = "x,n,c,y"


def _good_rows(rng: random.Random) -> list[str]:
    rows = []
    for i in range(N_GOOD):
        x = "NA" if i % 17 == 0 else f"{rng.gauss(10, 3):.3f}"  # nullable: some missing
        rows.append(f"{x},{rng.randint(0, 9)},{rng.choice('abc')},{rng.choice('pq')}")
    return rows


# 10 corrupted rows among 200 (5 %), each with the reason it must be rejected for.
BAD_ROWS = {
    "1.0,2,a": "expected 4 columns, got 3",
    "1.0,2,a,p,extra": "expected 4 columns, got 5",
    "1.0": "expected 4 columns, got 1",
    "2.0,3,b,q,,": "expected 4 columns, got 6",
    "abc,1,a,p": 'feature "x": expected a finite float',
    "1e,1,a,p": 'feature "x": expected a finite float',
    "nan,1,a,p": 'feature "x": expected a finite float',
    "1.0,1.5,a,p": 'feature "n": expected an int',
    "1.0,two,b,q": 'feature "n": expected an int',
    "1.0,3,NA,p": 'missing value for required feature "c"',
}


def _raw_config(tmp_path, train: str, evaluation: str, fmt: str = "csv", limit: float = 0.06):
    return {
        "name": "small",
        "artifacts": str(tmp_path / "artifacts"),
        "data": {"format": fmt, "train": train, "eval": evaluation, "max_reject_fraction": limit},
        "features": {
            "x": {"type": "float", "nullable": True},
            "n": {"type": "int"},
            "c": {"type": "string"},
        },
        "label": {"name": "y"},
        "preprocessing": {"x": {"impute": "mean", "scale": "z_score"}, "n": {"scale": "min_max"}},
    }


def _read_transformed(transform_dir: str, split: str) -> list[tuple]:
    spec = tft.TFTransformOutput(transform_dir).transformed_feature_spec()
    files = glob.glob(transform.data_pattern(transform_dir, split))
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        parsed = tf.io.parse_single_example(record, spec)
        rows.append(tuple(float(parsed[k].numpy()) for k in sorted(spec)))
    # Float sums depend on batching, so sort on values rounded well above that noise.
    return sorted(rows, key=lambda row: tuple(round(v, 3) for v in row))


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    rng = random.Random(7)
    good = _good_rows(rng)
    lines = good + list(BAD_ROWS)
    rng.shuffle(lines)
    (tmp / "train.csv").write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    (tmp / "eval.csv").write_text(HEADER + "\n" + "\n".join(good[:20]) + "\n")
    return tmp, good


@pytest.fixture(scope="module")
def csv_run(small_data):
    tmp, good = small_data
    config = config_from_dict(
        _raw_config(tmp / "csv", str(tmp / "train.csv"), str(tmp / "eval.csv"))
    )
    return config, stages.run_transform(config)


def test_corrupted_rows_are_rejected_and_counted(csv_run):
    config, stats = csv_run
    assert stats["train"] == {
        "read": N_GOOD + len(BAD_ROWS),
        "written": N_GOOD,
        "rejected": len(BAD_ROWS),
    }
    assert stats["eval"] == {"read": 20, "written": 20, "rejected": 0}
    with open(transform.stats_path(config.transform_dir)) as f:
        assert json.load(f) == stats
    for split in ("train", "eval"):
        counts = stats[split]
        assert counts["read"] == counts["written"] + counts["rejected"]


def test_every_reject_carries_its_line_split_and_reason(csv_run):
    config, _ = csv_run
    rejects = [
        json.loads(line)
        for path in glob.glob(transform.rejects_pattern(config.transform_dir, "train"))
        for line in open(path)
    ]
    assert sorted(r["record"] for r in rejects) == sorted(BAD_ROWS)
    for reject in rejects:
        assert reject["split"] == "train"
        assert reject["source"].endswith("train.csv")
        assert BAD_ROWS[reject["record"]] in reject["reason"]


def test_written_data_holds_every_good_row_with_missing_values_imputed(csv_run, small_data):
    config, _ = csv_run
    _, good = small_data
    raw = [None if r.startswith("NA") else float(r.split(",")[0]) for r in good]
    present = np.array([v for v in raw if v is not None])
    # impute: mean, then scale: z_score over the imputed column (as sklearn's pipeline).
    imputed = np.array([present.mean() if v is None else v for v in raw])
    expected = sorted((imputed - imputed.mean()) / imputed.std())
    rows = _read_transformed(config.transform_dir, "train")
    assert len(rows) == N_GOOD
    x = sorted(r[sorted(["x", "n", "c", "y"]).index("x")] for r in rows)
    np.testing.assert_allclose(x, expected, atol=1e-4)
    # A missing x became the mean (z-score 0), not a coerced 0.0 input.
    assert sum(abs(v) < 1e-5 for v in x) == raw.count(None)


def test_too_many_rejects_fail_the_job_with_a_clear_message(small_data, tmp_path):
    tmp, _ = small_data
    config = config_from_dict(
        _raw_config(tmp_path, str(tmp / "train.csv"), str(tmp / "eval.csv"), limit=0.01)
    )
    with pytest.raises(transform.TransformError) as err:
        stages.run_transform(config)
    message = str(err.value)
    assert "train: 10 of 200 rows (5.0%) were rejected" in message
    assert "max_reject_fraction 1.0%" in message and "rejects" in message


def test_tfrecord_input_matches_csv_input_and_rejects_bad_records(csv_run, small_data, tmp_path):
    csv_config, _ = csv_run
    tmp, good = small_data
    spec = csv_config.raw_feature_spec()
    decoder = transform.CsvRowDecoder(spec, HEADER.split(","), transform.CsvFormat())
    for split, lines in (("train", good), ("eval", good[:20])):
        with tf.io.TFRecordWriter(str(tmp_path / f"{split}.tfrecord")) as writer:
            for line in lines:
                writer.write(
                    serving_input.encode_example(
                        decoder.decode_dict(line), spec
                    ).SerializeToString()
                )
            if split == "train":
                bad = tf.train.Example()
                bad.features.feature["x"].bytes_list.value.append(b"1.0")  # a string, not float
                writer.write(bad.SerializeToString())
                writer.write(b"\x00not a proto")
    config = config_from_dict(
        _raw_config(
            tmp_path,
            str(tmp_path / "train.tfrecord"),
            str(tmp_path / "eval.tfrecord"),
            fmt="tfrecord",
        )
    )
    stats = stages.run_transform(config)
    assert stats["train"] == {"read": N_GOOD + 2, "written": N_GOOD, "rejected": 2}
    reasons = sorted(
        json.loads(line)["reason"]
        for path in glob.glob(transform.rejects_pattern(config.transform_dir, "train"))
        for line in open(path)
    )
    assert reasons[0].startswith('feature "x": expected float_list, got bytes_list')
    assert reasons[1].startswith("not a tf.Example")
    np.testing.assert_allclose(
        _read_transformed(config.transform_dir, "train"),
        _read_transformed(csv_config.transform_dir, "train"),
        atol=1e-5,
    )


def test_an_eval_class_unseen_in_training_stops_the_beam_job_naming_it(small_data, tmp_path):
    tmp, good = small_data
    (tmp_path / "eval.csv").write_text(HEADER + "\n" + "1.0,1,a,zebra\n" + "\n".join(good[:5]))
    raw = _raw_config(tmp_path, str(tmp / "train.csv"), str(tmp_path / "eval.csv"))
    config = config_from_dict(raw)
    with pytest.raises(transform.TransformError) as err:
        stages.run_transform(config)
    assert str(err.value).startswith(
        'eval label "y" has values that are no class of the training data: "zebra" (1 row). '
    )
