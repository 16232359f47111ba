"""Every declarative op (and a user's own preprocessing_fn beside them): the Beam job's
transformed output equals the export's ``transform_features`` signature applied to the
same raw rows as serialized tf.Examples, rows with missing values, empty lists, unseen
categories and tokens included. One Beam run (TFRecord input) for the module.

Broken images: a reject with its reason in the Beam job, an InvalidArgumentError
naming the feature at serving time.
"""

from __future__ import annotations

import glob
import io
import json
import random

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from PIL import Image as PilImage

import serving_input
import trainer
import transform
from tfbake import stages
from tfbake.config import config_from_dict
from transform.ops.text import Text, tokens

COLORS = ["red", "red", "red", "blue", "blue", "green"]
WORDS = "the cat sat on a mat and the dog ran".split()
TAGS = ["new", "sale", "eco", "gift", "rare"]

FEATURES = {
    "rid": {"type": "int"},  # pairs Beam rows with served rows
    "num": {"type": "float", "nullable": True},
    "med": {"type": "float", "nullable": True},
    "const": {"type": "float", "nullable": True},
    "plain": {"type": "float"},
    "dropped": {"type": "float"},
    "color": {"type": "string", "nullable": True},
    "code": {"type": "int"},
    "shop": {"type": "int", "nullable": True},
    "city": {"type": "string"},
    "tags": {"type": "string", "list": True},
    "codes": {"type": "int", "list": True},
    "items": {"type": "string", "list": True},
    "review": {"type": "string"},
    "title": {"type": "string", "nullable": True},
    "note": {"type": "string"},
    "photo": {"type": "string", "media": "image"},
}
PREPROCESSING = {
    "rid": {"passthrough": True},
    "num": {
        "impute": "mean",
        "clip": {"min": 0, "max": 80},
        "log1p": True,
        "scale": "z_score",
        "is_missing": True,
    },
    "med": {"impute": "median", "bucketize": {"num_buckets": 3}, "scale": "min_max"},
    "const": {"impute": "constant", "impute_value": 5.0, "passthrough": True},
    "plain": {"passthrough": True},
    "dropped": {"drop": True},
    "color": {"vocabulary": {"top_k": 2, "num_oov_buckets": 1}, "is_missing": True},
    "code": {"vocabulary": {"num_oov_buckets": 1}},  # an int used as a category
    "shop": {"hash_buckets": 7},
    "city": {"hash_buckets": 5},
    "tags": {"vocabulary": {"top_k": 4, "num_oov_buckets": 1}, "output": "multi_hot"},
    "codes": {"hash_buckets": 6, "output": "ids", "max_items": 3},
    "items": {"vocabulary": {"num_oov_buckets": 0}, "output": "ids", "max_items": 2},
    "review": {
        "text": {
            "ngrams": [1, 2],
            "vocabulary": {"top_k": 20},
            "output": "ids",
            "max_tokens": 5,
        }
    },
    "title": {
        "text": {"split": {"regex": "[^a-z]+"}, "vocabulary": {"top_k": 6}, "output": "tfidf"}
    },
    "note": {
        "text": {
            "lowercase": False,
            "vocabulary": {"top_k": 6, "num_oov_buckets": 0},
            "output": "bag_of_words",
        }
    },
    "photo": {"image": {"height": 4, "width": 5, "channels": 1}},
    "color_x_code": {"cross": ["color", "code"], "hash_buckets": 11},
}
IMAGE_FORMATS = [("PNG", "RGB"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"), ("PNG", "L")]


def _image(fmt: str, mode: str, rng: random.Random) -> bytes:
    pixels = np.array([[rng.randrange(256) for _ in range(8 * 3)] for _ in range(6)], np.uint8)
    image = PilImage.fromarray(pixels.reshape(6, 8, 3), "RGB")
    image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def _rows(n: int, seed: int, unseen: bool) -> list[dict]:
    """Rows with gaps; ``unseen`` adds values and tokens the training data never had."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):

        def maybe(value, every, i=i):
            return None if i % every == 0 else value

        words = rng.sample(WORDS, rng.randrange(0, 6)) + (["zebra"] if unseen and i % 2 else [])
        row = {
            "rid": seed * 1000 + i,
            "num": maybe(rng.uniform(-5, 100), 4),
            "med": maybe(rng.gauss(50, 10), 5),
            "const": maybe(rng.uniform(0, 1), 3),
            "plain": rng.uniform(-1, 1),
            "dropped": 1.0,
            "color": maybe("purple" if unseen and i % 3 == 1 else rng.choice(COLORS), 6),
            "code": 99 if unseen and i % 4 == 1 else rng.choice([7, 7, 8, 9]),
            "shop": maybe(rng.randrange(100), 5),
            "city": rng.choice(["oslo", "rome", "lima"]) + ("x" if unseen else ""),
            "tags": rng.sample(TAGS + (["unseen"] if unseen else []), rng.randrange(0, 4)),
            "codes": [rng.randrange(50) for _ in range(rng.randrange(0, 5))],
            "items": rng.sample(["a", "b", "c"] + (["new"] if unseen else []), rng.randrange(0, 4)),
            "review": " ".join(words).upper() if i % 3 == 0 else " ".join(words),
            "title": maybe("-".join(rng.sample(WORDS, 3)) + ("!zebra" if unseen else ""), 5),
            "note": " ".join(rng.sample(WORDS + ["The", "Cat"], 4)),
            "photo": _image(*IMAGE_FORMATS[i % len(IMAGE_FORMATS)], rng),
            "y": rng.choice(["p", "q"]),
        }
        rows.append(row)
    return rows


TRUNCATED_PNG_ROW = 3  # in train: a PNG cut short
GARBAGE_ROW = 2  # in eval: bytes of no image format


def _write(path, rows, spec):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            writer.write(serving_input.encode_example(row, spec).SerializeToString())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feature_ops")
    train, evaluation = _rows(40, 1, unseen=False), _rows(14, 2, unseen=True)
    train[TRUNCATED_PNG_ROW]["photo"] = _image("PNG", "RGB", random.Random(0))[:-20]
    evaluation[GARBAGE_ROW]["photo"] = b"GIF89a, or so it says"[::-1]
    config = config_from_dict(
        {
            "name": "ops",
            "artifacts": str(tmp / "artifacts"),
            "data": {
                "format": "tfrecord",
                "train": str(tmp / "train.tfrecord"),
                "eval": str(tmp / "eval.tfrecord"),
                "max_reject_fraction": 0.1,
            },
            "features": FEATURES,
            "label": {"name": "y"},
            "preprocessing": PREPROCESSING,
            "preprocessing_fn": "tests.custom_preprocessing.features:preprocessing_fn",
        },
        check_files=False,
    )
    spec = config.raw_feature_spec()
    _write(tmp / "train.tfrecord", train, spec)
    _write(tmp / "eval.tfrecord", evaluation, spec)
    stats = stages.run_transform(config)
    export_dir = _export(config, tmp / "export")
    return config, stats, {"train": train, "eval": evaluation}, export_dir


def _export(config, export_dir_base) -> str:
    """A real export whose model reads one scalar feature: the signature under test
    (transform_features) runs the whole transform layer all the same."""
    output = tft.TFTransformOutput(config.transform_dir)
    inputs = {"plain": tf_keras.Input(shape=(), name="plain")}
    logits = tf_keras.layers.Dense(2)(tf_keras.layers.Reshape((1,))(inputs["plain"]))
    head = trainer.ClassificationHead(output.vocabulary_by_name("y"))
    model = trainer.Model(tf_keras.Model(inputs, logits), head, output, "y")
    return model.export_saved_model(
        str(export_dir_base),
        serving_input.build_parsing_serving_input_fn(
            stages.serving_feature_spec(config), list_features=config.list_features()
        ),
        feature_annotations=config.feature_annotations(),
    )


def _beam_output(config, split) -> dict[str, np.ndarray]:
    output = tft.TFTransformOutput(config.transform_dir)
    files = glob.glob(transform.data_pattern(config.transform_dir, split))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1000)
    (batch,) = [tf.io.parse_example(b, output.transformed_feature_spec()) for b in dataset]
    return {k: v.numpy() for k, v in batch.items() if k != "y"}


def _served(export_dir, config, rows) -> dict[str, np.ndarray]:
    spec = stages.serving_feature_spec(config)
    examples = [
        serving_input.encode_example({k: v for k, v in row.items() if k != "y"}, spec)
        for row in rows
    ]
    signature = tf.saved_model.load(export_dir).signatures["transform_features"]
    out = signature(examples=tf.constant([e.SerializeToString() for e in examples]))
    return {k: v.numpy() for k, v in out.items()}


def _by_row_id(out: dict) -> dict[int, dict]:
    return {int(rid): {k: v[i] for k, v in out.items()} for i, rid in enumerate(out["rid"])}


@pytest.mark.parametrize("split", ["train", "eval"])
def test_beam_output_equals_the_exports_transform_features(run, split):
    config, _, rows, export_dir = run
    bad = TRUNCATED_PNG_ROW if split == "train" else GARBAGE_ROW
    good_rows = [r for i, r in enumerate(rows[split]) if i != bad]
    beam = _by_row_id(_beam_output(config, split))
    served = _by_row_id(_served(export_dir, config, good_rows))
    assert sorted(beam) == sorted(served) == sorted(r["rid"] for r in good_rows)
    keys = set(next(iter(beam.values())))
    assert keys == set(next(iter(served.values())))
    expected = {  # every op's output, the indicators, the cross and the user's
        *(k for k in PREPROCESSING if k != "dropped"),
        "num_is_missing",
        "color_is_missing",
        "med_bucketized",
        "custom_plain_squared_z",
        "custom_city_id",
        "custom_words",
    }
    assert keys == expected
    for rid, want in beam.items():
        got = served[rid]
        for key in sorted(keys):
            if want[key].dtype.kind == "f":
                np.testing.assert_allclose(got[key], want[key], atol=1e-6, err_msg=key)
            else:
                np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_outputs_follow_the_transformed_feature_contract(run):
    config, _, _, _ = run
    spec = tft.TFTransformOutput(config.transform_dir).transformed_feature_spec()
    shapes = {k: (list(v.shape), v.dtype) for k, v in spec.items()}
    assert shapes["num"] == ([], tf.float32)
    assert shapes["num_is_missing"] == ([], tf.float32)
    assert shapes["med_bucketized"] == ([], tf.int64)
    assert shapes["color_x_code"] == ([], tf.int64)
    assert shapes["tags"] == ([4 + 1], tf.float32)  # top_k + OOV bucket
    assert shapes["codes"] == ([3], tf.int64)
    assert shapes["review"] == ([5], tf.int64)
    assert shapes["title"] == ([6 + 1], tf.float32)
    assert shapes["note"] == ([6], tf.float32)
    assert shapes["photo"] == ([4, 5, 1], tf.float32)
    assert "dropped" not in shapes


def test_op_semantics_on_unseen_and_missing_values(run):
    config, _, rows, export_dir = run
    output = tft.TFTransformOutput(config.transform_dir)
    eval_rows = [r for i, r in enumerate(rows["eval"]) if i != GARBAGE_ROW]
    out = _served(export_dir, config, eval_rows)
    for i, row in enumerate(eval_rows):
        # an unseen color falls in the one OOV bucket (id 2, after the top 2 colors);
        # a missing one gets an id of its own (3) and the indicator.
        if row["color"] is None:
            assert out["color"][i] == 3 and out["color_is_missing"][i] == 1.0
        elif row["color"] == "purple":
            assert out["color"][i] == 2
        # an empty list is all zeros (multi_hot) / all padding (ids).
        if not row["tags"]:
            assert not out["tags"][i].any()
        if not row["items"]:
            assert not out["items"][i].any()
        # no OOV bucket: an unseen item is left out, the others keep their order.
        known = [item for item in row["items"] if item != "new"]
        assert np.count_nonzero(out["items"][i]) == min(len(known), 2)
        # int as a category: the unseen 99 is the OOV id, not a number.
        if row["code"] == 99:
            assert out["code"][i] == len(output.vocabulary_by_name("code"))
        # text ids: 0 pads, real ids are 1..V; a review of no words is all padding.
        if not row["review"]:
            assert not out["review"][i].any()
        # impute: constant fills the gap with the declared value.
        if row["const"] is None:
            assert out["const"][i] == 5.0
    vocabulary = output.vocabulary_by_name("review")
    assert b"zebra" not in vocabulary and b"the cat" in vocabulary or b"the" in vocabulary
    zebra_rows = [i for i, r in enumerate(eval_rows) if "zebra" in r["review"].split()]
    size = len(vocabulary) + 1
    assert any(size in out["review"][i] for i in zebra_rows)  # OOV: the last id, shifted
    assert out["photo"].min() >= 0.0 and out["photo"].max() <= 1.0


def test_a_regex_that_leaves_whitespace_to_the_split_gives_the_same_tokens():
    """docs/preprocessing.md: "[^a-z0-9'\\s]+" tokenizes as "[^a-z0-9']+" does."""
    texts = tf.constant([
        "It's a GREAT film -- really!", "tabs\tand\nnew lines\x0bvertical", "  lead/trail  ",
        "caf\u00e9 na\u00efve \u00a0nbsp", "", "!!!", "don't stop-me now...42",
    ])
    split = {
        r: tokens(texts, Text(split={"regex": r}, max_tokens=8))
        for r in ("[^a-z0-9']+", "[^a-z0-9'\\s]+")
    }
    first, second = split.values()
    assert first.to_list() == second.to_list()
    assert first[0].numpy().tolist() == [b"it's", b"a", b"great", b"film", b"really"]


def test_image_decoding_against_pillow(run):
    """A grayscale PNG of one gray level stays that level / 255 whatever the resize."""
    config, _, _, export_dir = run
    image = PilImage.new("L", (8, 6), color=51)
    out = io.BytesIO()
    image.save(out, format="PNG")
    row = dict(_rows(1, 5, unseen=False)[0], photo=out.getvalue())
    photo = _served(export_dir, config, [row])["photo"][0]
    np.testing.assert_allclose(photo, np.full((4, 5, 1), 51 / 255), atol=1e-6)


def test_broken_images_are_rejects_with_their_reason(run):
    config, stats, rows, _ = run
    assert stats["train"] == {"read": 40, "written": 39, "rejected": 1}
    assert stats["eval"] == {"read": 14, "written": 13, "rejected": 1}
    with open(transform.stats_path(config.transform_dir)) as f:
        assert json.load(f) == stats
    for split in ("train", "eval"):
        (path,) = glob.glob(transform.rejects_pattern(config.transform_dir, split))
        with open(path) as f:
            (reject,) = [json.loads(line) for line in f]
        assert reject["reason"].startswith('feature "photo": not a decodable PNG/JPEG/GIF/BMP')


def test_broken_image_at_serving_is_invalid_argument_naming_the_feature(run):
    config, _, _, export_dir = run
    row = dict(_rows(1, 6, unseen=False)[0], photo=b"\x89PNG\r\n\x1a\n and then nothing")
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _served(export_dir, config, [row])
    # The assertion op prints its message C-escaped (feature \"photo\").
    assert 'feature \\"photo\\": not a decodable PNG/JPEG/GIF/BMP image' in error.value.message


def test_export_annotates_lists_and_images(run):
    _, _, _, export_dir = run
    with open(f"{export_dir}/assets.extra/raw_feature_spec.json") as f:
        contract = json.load(f)
    assert contract["tags"]["list"] is True and contract["codes"]["list"] is True
    assert contract["photo"]["media"] == "image"
    assert "list" not in contract["num"]


def test_predict_raw_takes_lists_of_any_length_with_their_counts(run):
    """predict_raw's list inputs ([N, n] values and a count per row) become what parsing
    the examples gives; nothing is a marker, so an int list may hold -1 and ""."""
    config, _, rows, _ = run
    spec = {k: stages.serving_feature_spec(config)[k] for k in ("tags", "codes")}
    lists = [{"tags": r["tags"], "codes": r["codes"]} for r in rows["train"][:5]]
    lists += [{"tags": ["", "sale"], "codes": [-1, 7, -1]}, {"tags": [], "codes": []}]
    raw = serving_input.build_raw_serving_input_fn(spec, list_features=["tags", "codes"])()
    columns = serving_input.raw_columns(lists, spec, ["tags", "codes"])
    assert columns["codes_count"].tolist() == [len(r["codes"]) for r in lists]
    from_raw = raw.features_fn({k: tf.constant(v) for k, v in columns.items()})
    examples = serving_input.serialize_examples(lists, spec)
    parsed = tf.io.parse_example(tf.constant(examples), spec)
    for key in spec:
        for part in ("indices", "values", "dense_shape"):
            got, want = getattr(from_raw[key], part), getattr(parsed[key], part)
            assert got.numpy().tolist() == want.numpy().tolist(), (key, part)


def test_a_scale_after_an_imputation_equals_numpy_on_the_imputed_column(run):
    """impute: mean -> clip -> log1p -> z_score, computed here with numpy over the
    training rows (the mean of the present values fills the gaps; population std), equals
    the Beam job's output, which derives the z-score in the imputation's own phase."""
    config, _, rows, _ = run
    train = [r for i, r in enumerate(rows["train"]) if i != TRUNCATED_PNG_ROW]
    present = np.array([r["num"] for r in train if r["num"] is not None], np.float64)
    imputed = np.array([present.mean() if r["num"] is None else r["num"] for r in train])
    column = np.log1p(np.clip(imputed, 0, 80))
    expected = dict(zip((r["rid"] for r in train), (column - column.mean()) / column.std()))
    beam = _by_row_id(_beam_output(config, "train"))
    assert sorted(beam) == sorted(expected)
    for rid, want in expected.items():
        np.testing.assert_allclose(beam[rid]["num"], want, atol=1e-5)
