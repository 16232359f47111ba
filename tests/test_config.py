"""Bad configs fail before any work starts, with one message naming the key."""

from __future__ import annotations

import copy

import pytest

from tests.conftest import write_config
from tfbake.config import ConfigError, config_from_dict, load_config


@pytest.fixture()
def good(tmp_path) -> dict:
    for name in ("train.csv", "eval.csv"):
        (tmp_path / name).write_text("x,c,y\n1.0,a,p\n")
    return {
        "name": "t",
        "data": {"train": str(tmp_path / "train.csv"), "eval": str(tmp_path / "eval.csv")},
        "features": {"x": {"type": "float", "nullable": True}, "c": {"type": "string"}},
        "label": {"name": "y", "type": "string"},
        "preprocessing": {"x": {"impute": "mean", "scale": "z_score"}},
    }


def _error(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    return str(err.value)


def test_good_config_derives_the_raw_feature_spec(good):
    import tensorflow as tf

    spec = config_from_dict(good).raw_feature_spec()
    assert spec == {
        "x": tf.io.VarLenFeature(tf.float32),  # nullable: may be absent
        "c": tf.io.FixedLenFeature([], tf.string),
        "y": tf.io.FixedLenFeature([], tf.string),
    }


def test_unknown_key_is_named(good):
    good["features"]["c"]["nullabel"] = True
    assert "features.c.nullabel: unknown key" in _error(good)


def test_wrong_type_is_named_with_what_was_expected(good):
    good["training"] = {"epochs": "many"}
    message = _error(good)
    assert "training.epochs" in message and "integer" in message and "'many'" in message


def test_unknown_feature_type_lists_the_allowed_ones(good):
    good["features"]["c"]["type"] = "text"
    message = _error(good)
    assert "features.c.type" in message and "'float', 'int' or 'string'" in message


def test_preprocessing_of_an_undeclared_feature(good):
    good["preprocessing"]["z"] = {"scale": "z_score"}
    message = _error(good)
    assert "preprocessing.z" in message and '"z" is not a declared feature' in message


def test_op_that_does_not_fit_the_feature_type(good):
    good["preprocessing"]["x"] = {"impute": "mean", "vocabulary": {}}
    message = _error(good)
    assert "preprocessing.x" in message and "vocabulary" in message and "float" in message


def test_nullable_number_without_impute(good):
    del good["preprocessing"]["x"]
    message = _error(good)
    assert "preprocessing.x" in message and "nullable" in message and "impute" in message


def test_impute_constant_needs_a_value(good):
    good["preprocessing"]["x"] = {"impute": "constant"}
    assert "preprocessing.x" in _error(good) and "impute_value" in _error(good)


def test_missing_required_key(good):
    del good["label"]
    assert "label: required key is missing" in _error(good)


def test_label_listed_as_a_feature(good):
    good["features"]["y"] = {"type": "string"}
    assert 'label "y" is also listed under features' in _error(good)


def test_missing_data_file_is_named(good):
    good["data"]["eval"] = "/nonexistent/eval-*.csv"
    message = _error(good)
    assert "data.eval" in message and "/nonexistent/eval-*.csv" in message


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(path)


def test_beam_section_passes_through_as_pipeline_flags(good):
    raw = copy.deepcopy(good)
    raw["beam"] = {
        "direct_num_workers": 2,
        "direct_running_mode": "multi_processing",
        "save_main_session": True,
        "experiments": ["a", "b"],
    }
    assert config_from_dict(raw).beam_args() == [
        "--direct_num_workers=2",
        "--direct_running_mode=multi_processing",
        "--save_main_session",
        "--experiments=a",
        "--experiments=b",
    ]


def test_headerless_csv_needs_column_names(good):
    good["data"]["csv"] = {"header": False}
    message = _error(good)
    assert "data.csv" in message and "column_names is required" in message


def test_float_label_with_a_classifier(good):
    good["label"]["type"] = "float"
    message = _error(good)
    assert "label.type" in message and "classifier" in message


def test_regressor_needs_a_float_label(good):
    good["model"] = {"type": "linear_regressor"}
    message = _error(good)
    assert "label.type" in message and "linear_regressor needs a float label" in message


STRING, FLOAT = {"type": "string"}, {"type": "float"}
STRING_LIST, IMAGE = {"type": "string", "list": True}, {"type": "string", "media": "image"}


@pytest.mark.parametrize(
    "feature, ops, expected",
    [
        (
            FLOAT,
            {"hash_buckets": 10},
            'hash_buckets needs a string or int feature, but feature "f"',
        ),
        ({"type": "int"}, {"text": {"output": "ids", "max_tokens": 4}}, "text needs a string"),
        (
            STRING,
            {"image": {"height": 2, "width": 2}},
            "image needs an image feature (media: image)",
        ),
        (STRING, {"clip": {"min": 0}}, 'clip needs a number, but feature "f" is a string'),
        (STRING, {"log1p": True}, 'log1p needs a number, but feature "f" is a string'),
        (FLOAT, {"is_missing": True}, 'is_missing needs a nullable feature, but "f" is never'),
        (STRING_LIST, {"vocabulary": {}}, 'feature "f" is a list: declare vocabulary or hash'),
        (STRING, {"hash_buckets": 3, "output": "multi_hot"}, "output needs a list feature"),
        (
            STRING_LIST,
            {"vocabulary": {}, "output": "multi_hot"},
            "multi_hot needs vocabulary.top_k",
        ),
        (IMAGE, {"vocabulary": {}}, 'feature "f" is an image: declare image'),
    ],
)
def test_op_on_a_feature_of_the_wrong_kind_names_feature_and_op(good, feature, ops, expected):
    good["features"]["f"] = feature
    good["preprocessing"]["f"] = ops
    good["data"]["format"] = "tfrecord"
    message = _error(good)
    assert "preprocessing.f" in message and expected in message, message


def test_feature_without_an_entry_that_needs_one(good):
    good["features"]["tags"] = {"type": "string", "list": True}
    message = _error(good)
    assert "preprocessing.tags" in message and 'feature "tags" is a list' in message


def test_cross_of_a_float_is_refused(good):
    good["preprocessing"]["x_c"] = {"cross": ["x", "c"], "hash_buckets": 8}
    message = _error(good)
    assert "preprocessing.x_c.cross" in message and '"x"' in message


def test_cross_needs_hash_buckets(good):
    good["preprocessing"]["c_c"] = {"cross": ["c", "c"]}
    assert "cross needs hash_buckets" in _error(good)


def test_images_come_from_tf_examples(good):
    good["features"]["photo"] = {"type": "string", "media": "image"}
    good["preprocessing"]["photo"] = {"image": {"height": 8, "width": 8}}
    message = _error(good)
    assert "features.photo" in message and "data.format: tfrecord" in message


def test_a_list_is_not_nullable(good):
    good["features"]["tags"] = {"type": "string", "list": True, "nullable": True}
    assert "features.tags" in _error(good) and "nullable does not apply" in _error(good)


def test_lists_and_images_in_the_raw_spec_and_annotations(good):
    import tensorflow as tf

    good["data"]["format"] = "tfrecord"
    good["features"]["tags"] = {"type": "string", "list": True}
    good["features"]["photo"] = {"type": "string", "media": "image"}
    good["preprocessing"]["tags"] = {"hash_buckets": 8, "output": "ids", "max_items": 3}
    good["preprocessing"]["photo"] = {"image": {"height": 8, "width": 8, "channels": 1}}
    config = config_from_dict(good)
    spec = config.raw_feature_spec()
    assert spec["tags"] == tf.io.VarLenFeature(tf.string)
    assert spec["photo"] == tf.io.FixedLenFeature([], tf.string)
    assert config.feature_annotations() == {"tags": {"list": True}, "photo": {"media": "image"}}
    assert config.list_features() == ["tags"] and config.image_features() == {"photo": 1}


def test_training_spans_are_a_list_and_each_must_match_a_file(good, tmp_path):
    (tmp_path / "day2.csv").write_text("x,c,y\n2.0,b,q\n")
    good["data"]["train"] = [str(tmp_path / "train.csv"), str(tmp_path / "day2.csv")]
    assert config_from_dict(good).train_spans == good["data"]["train"]
    good["data"]["train"].append(str(tmp_path / "day3.csv"))
    assert f"data.train: no file matches '{tmp_path / 'day3.csv'}'" in _error(good)
    good["data"]["train"] = []
    assert "data.train" in _error(good)


def test_warm_start_from_a_folder_that_holds_no_model_is_named(good, tmp_path):
    from tfbake import stages

    config = config_from_dict({**good, "training": {"warm_start": str(tmp_path)}})
    with pytest.raises(ConfigError) as err:
        stages.previous_model(config, config.training.warm_start)
    message = str(err.value)
    assert message.startswith("training.warm_start:") and "saved_model.pb" in message
    assert "trainer/model.weights.h5" in message
    # A run's own folder: its transform output is replaced before training starts.
    with pytest.raises(ConfigError, match="this run's own folder; warm-start from its export"):
        stages.previous_model(config, config.artifacts_dir)
def test_a_derived_label_needs_a_preprocessing_fn(good):
    good["label"] = {"name": "rich", "type": "string", "derived": True}
    assert 'label "rich" is derived: a preprocessing_fn must compute it' in _error(good)


def test_a_training_only_column_is_no_model_input(good):
    good["features"]["income"] = {"type": "float", "serving": False}
    good["preprocessing"]["income"] = {"scale": "z_score"}
    assert 'preprocessing.income: "income" is serving: false (training data only)' in (
        _error(good))


def test_a_derived_label_and_training_only_columns_in_the_raw_and_serving_specs(good, tmp_path):
    import tensorflow as tf

    from tfbake import stages

    (tmp_path / "prep_mod.py").write_text("def preprocessing_fn(inputs):\n    return {}\n")
    good["features"]["income"] = {"type": "float", "serving": False}
    good["label"] = {"name": "rich", "type": "string", "derived": True}
    good["preprocessing_fn"] = "prep_mod:preprocessing_fn"
    good["preprocessing"]["c"] = {"vocabulary": {}}
    config = load_config(write_config(tmp_path, good))
    assert set(config.raw_feature_spec()) == {"x", "c", "income"}  # no column "rich"
    assert stages.serving_feature_spec(config) == {
        "x": tf.io.VarLenFeature(tf.float32), "c": tf.io.FixedLenFeature([], tf.string)}


@pytest.mark.parametrize("key, reference", [
    ("preprocessing_fn", "no_such_module_anywhere:preprocessing_fn"),
    ("model.build", "json:no_such_function"),
])
def test_a_reference_that_does_not_import_fails_at_config_load(good, key, reference):
    if key == "model.build":
        good["model"] = {"type": "custom", "build": reference}
    else:
        good[key] = reference
    message = _error(good)
    assert f"{key}" in message and reference in message and "cannot be imported" in message


@pytest.mark.parametrize("entry, expected", [
    ({"x": {"impute": "mean", "strip": True}},
     'preprocessing.x: strip cleans strings, but feature "x" is a float'),
    ({"c": {"case": "lower", "map": {"High.": "high"}}},
     "preprocessing.c: map key 'High.' never matches: values are lower-cased first"),
])
def test_cleaning_that_cannot_work_is_refused(good, entry, expected):
    good["preprocessing"].update(entry)
    assert expected in _error(good)


def test_a_global_map_and_cleaning_a_number_label_are_refused(good):
    good["cleaning"] = {"strip": True, "map": {"a": "b"}}
    assert "cleaning.map: a map belongs to one feature or label" in _error(good)
    del good["cleaning"]
    good["label"] = {"name": "y", "type": "int", "strip": True}
    assert 'label "y": strip, case and map clean strings, but the label is type int' in (
        _error(good))


def test_the_validation_split_is_a_file_or_a_fraction(good):
    good["data"]["validation"] = {"fraction": 1.5}
    assert "data.validation" in _error(good)
    good["data"]["validation"] = "missing-*.csv"
    assert "data.validation: no file matches '" in _error(good)
