"""``tfbake inspect``: the signatures, the raw feature contract, and request samples
that run as printed against a real ``tfbake serve`` (curl included: needs ``curl``)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import run_sample

SPECIES = ("Adelie", "Chinstrap", "Gentoo")
SIGNATURES = {"serving_default", "classification", "predict", "predict_raw", "transform_features"}


def _inspect(venv_bin, *args) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(venv_bin, "tfbake"), "inspect", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def description(penguins_run, served, venv_bin):
    rest, target = served
    result = _inspect(venv_bin, penguins_run.export_dir, "--model", "penguins",
                      "--rest_url", rest, "--grpc_target", target, "--format", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_every_generated_sample_runs_against_a_live_server(description, python):
    assert shutil.which("curl"), "the curl samples need curl on the PATH"
    samples = description["samples"]
    assert {(s["signature"], s["client"]) for s in samples} == {
        (name, client) for name in SIGNATURES
        for client in ("curl", "python-requests", "python-grpc", "javascript-fetch")
    }
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda s: run_sample(s, python), samples))
    for sample, result in zip(samples, results):
        assert result.returncode == 0, (sample["title"], result.stdout[-1000:],
                                        result.stderr[-2000:])
        if sample["signature"] != "transform_features":  # numbers, not classes
            assert any(name in result.stdout for name in SPECIES), (sample["title"],
                                                                    result.stdout[-1000:])


def test_samples_use_the_api_each_signature_is_for(description):
    apis = {s["signature"]: s["api"] for s in description["samples"]}
    assert apis == {"serving_default": "classify", "classification": "classify",
                    "predict": "predict", "predict_raw": "predict",
                    "transform_features": "predict"}
    curl = {s["signature"]: s["text"] for s in description["samples"] if s["client"] == "curl"}
    assert ":classify" in curl["classification"] and '"examples"' in curl["classification"]
    assert ":predict" in curl["predict"] and '"b64"' in curl["predict"]
    assert '"island"' in curl["predict_raw"] and '"b64"' not in curl["predict_raw"]


def test_the_raw_feature_contract_follows_the_config_with_real_example_values(
    description, penguins_run
):
    features = {f["name"]: f for f in description["raw_features"]}
    config = penguins_run.config
    assert list(features) == list(config.features)  # the config's order
    with open(config.data.eval) as f:
        eval_rows = list(csv.DictReader(f))
    for name, declared in config.features.items():
        got = features[name]
        assert (got["type"], got["shape"], got["nullable"]) == (
            declared.type, [], declared.nullable), name
        # The example value is a real eval value (the warm-up requests are eval rows).
        seen = {row[name] for row in eval_rows}
        if declared.type == "float":
            assert any(v != "NA" and abs(float(v) - got["example"]) < 1e-3 for v in seen), name
        else:
            assert str(got["example"]) in seen, name


def test_signatures_show_method_names_dtypes_and_shapes(description):
    signatures = description["signatures"]
    assert set(signatures) == SIGNATURES  # no __saved_model_init_op
    assert signatures["classification"] == {
        "method_name": "tensorflow/serving/classify",
        "inputs": {"inputs": {"dtype": "string", "shape": [-1]}},
        "outputs": {"classes": {"dtype": "string", "shape": [-1, 3]},
                    "scores": {"dtype": "float32", "shape": [-1, 3]}},
    }
    assert signatures["predict_raw"]["inputs"]["year"] == {"dtype": "int64", "shape": [-1]}


def test_text_output_for_people(penguins_run, venv_bin):
    result = _inspect(venv_bin, os.path.dirname(penguins_run.export_dir), "--model", "penguins")
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert "serving_default  [tensorflow/serving/classify]" in text
    assert "bill_length_mm" in text and "nullable" in text
    assert "curl -sS --fail-with-body -X POST http://localhost:8501/v1/models/penguins:classify" \
        in text
    assert "grpc.insecure_channel('localhost:8500')" in text


def test_a_url_is_read_through_the_metadata_api(served, python, tmp_path):
    from tfbake import inspection

    rest, target = served
    for url in (rest, f"grpc://{target}"):
        description = inspection.inspect(url, model_name="penguins", rest_url=rest,
                                      grpc_target=target)
        assert set(description.signature_defs) == SIGNATURES
        nullable = {f.name: f.nullable for f in description.raw_features}
        # predict_raw's inputs say it: a nullable feature comes with a count.
        assert nullable["island"] is False and nullable["bill_length_mm"] is True
        assert not any(name.endswith("_count") for name in nullable)
    # Placeholder rows (a URL has no warm-up examples) still make runnable requests.
    sample = next(s for s in description.samples
                  if s.signature == "serving_default" and s.client == "curl")
    result = run_sample(sample.to_dict(), python)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(name in result.stdout for name in SPECIES)


def test_a_url_without_a_model_name_is_refused(venv_bin):
    result = _inspect(venv_bin, "http://127.0.0.1:9")
    assert result.returncode == 1
    assert "name the model (--model NAME)" in result.stderr
