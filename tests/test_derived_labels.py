"""A label derived by a ``preprocessing_fn`` from two raw columns: trained, then served
without those columns and without running the label's code; and an export that would
not serve, stopped before it is published.

The ``preprocessing_fn`` modules live beside the config, as users put them.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from tests.conftest import write_config
from tfbake import cli, serving_input, stages
from tfbake.config import load_config
from tfbake.model_server import export_contract
from tfbake.serving_input.feature_spec import read_raw_feature_spec

# tf.strings.to_number fails on "", the filler tf.Transform gives a raw column that a
# serving request does not carry: the label's code must not run at serving.
DERIVED = '''
import tensorflow as tf

def preprocessing_fn(inputs):
    income = tf.strings.to_number(inputs["income"])
    hours = tf.strings.to_number(inputs["hours"])
    return {"rich": tf.where(income / hours > 900.0, "yes", "no")}
'''
# A feature whose code fails when its nullable raw value is absent (never, in the data).
FAILS_WHEN_ABSENT = '''
import tensorflow as tf

def preprocessing_fn(inputs):
    code = inputs["code"]
    dense = tf.sparse.to_dense(
        tf.SparseTensor(code.indices, code.values, [code.dense_shape[0], 1]), default_value=""
    )[:, 0]
    return {"code_number": tf.strings.to_number(dense)}
'''


def _write_data(directory, rows: int, seed: int) -> str:
    rng = random.Random(seed)
    lines = ["x,color,code,income,hours,y"]
    for _ in range(rows):
        hours = rng.randint(20, 60)
        income = rng.randint(10_000, 80_000)
        x = income / hours / 1000 + rng.random() * 0.2
        lines.append(f"{x:.3f},{rng.choice('rgb')},{rng.randint(1, 9)},{income},{hours},"
                     f"{rng.choice('pq')}")
    path = directory / f"data-{seed}.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _config(directory, module: str, source: str, label: dict, features: dict) -> dict:
    (directory / f"{module}.py").write_text(textwrap.dedent(source))
    return {
        "name": module,
        "artifacts": str(directory / "artifacts"),
        "data": {"train": _write_data(directory, 120, 1), "eval": _write_data(directory, 30, 2)},
        "features": {"x": {"type": "float"}, "color": {"type": "string"}, **features},
        "label": label,
        "preprocessing_fn": f"{module}:preprocessing_fn",
        "preprocessing": {"x": {"scale": "z_score"}, "color": {"vocabulary": {}}},
        "model": {"type": "dnn_classifier", "hidden_units": [4]},
        "training": {"epochs": 2, "early_stopping": None},
        "export": {"warmup_examples": 3},
    }


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("derived")
    raw = _config(
        tmp, "rich_label", DERIVED, {"name": "rich", "type": "string", "derived": True},
        {"income": {"type": "string", "serving": False},
         "hours": {"type": "string", "serving": False}},
    )
    config = load_config(write_config(tmp, raw))
    stages.run_transform(config)
    model, metrics = stages.run_training(config)
    return config, model, metrics, stages.run_export(config, model)


def test_a_derived_label_trains_on_its_own_classes(derived):
    _, model, metrics, _ = derived
    assert sorted(model.head.label_vocabulary) == ["no", "yes"]
    assert "accuracy" in metrics


def test_its_source_columns_are_not_part_of_the_served_contract(derived):
    _, _, _, export_dir = derived
    contract = read_raw_feature_spec(export_dir)
    assert list(contract) == ["x", "color"]
    loaded = tf.saved_model.load(export_dir)
    assert set(loaded.signatures["predict_raw"].structured_input_signature[1]) == {"x", "color"}
    for example in export_contract.read_warmup_examples(export_dir):
        assert set(example.features.feature) == {"x", "color"}
    from tfbake import inspection

    description = inspection.inspect(export_dir)
    assert [f.name for f in description.raw_features] == ["x", "color"]


def test_the_export_serves_without_the_labels_columns_in_the_tf1_loader(derived):
    config, _, _, export_dir = derived
    spec = stages.serving_feature_spec(config)
    examples = serving_input.serialize_examples([{"x": 1.5, "color": "g"}], spec)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
        predict = meta_graph.signature_def["predict"]
        classes = session.run(predict.outputs["all_classes"].name,
                              {predict.inputs["examples"].name: examples})
    assert sorted(classes[0].tolist()) == [b"no", b"yes"]


def test_the_configs_folder_is_importable_by_the_processes_it_starts(derived):
    config, _, _, _ = derived
    module = config.preprocessing_fn.partition(":")[0]
    script = f"import importlib.util; print(importlib.util.find_spec({module!r}))"
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert module in found.stdout, found.stderr[-1000:]


def test_an_export_that_fails_at_serving_is_not_published(tmp_path, capsys):
    raw = _config(
        tmp_path, "absent_code", FAILS_WHEN_ABSENT, {"name": "y", "type": "string"},
        {"code": {"type": "string", "nullable": True}},
    )
    raw["training"]["epochs"] = 1
    path = write_config(tmp_path, raw)
    assert cli.main(["run", str(path)]) == 1
    message = capsys.readouterr().err
    assert message.startswith("tfbake run: the export would not serve, so it was not published")
    assert ('signature "classification" fails on the warm-up examples with every nullable '
            'feature absent (5) (it fails when feature "code" is absent), computing '
            'transformed feature "code_number" (from raw code), in op StringToNumber') in message
    assert "Traceback" not in message
    export_base = load_config(path).export_dir_base
    assert os.listdir(export_base) == []  # no version folder, no half-written one
