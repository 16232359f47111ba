"""Bad configs fail before any work starts, with one message naming the key."""

from __future__ import annotations

import copy

import pytest

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
