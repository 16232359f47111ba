"""The web console's JSON API and page, on the real penguins server (``served``), and
``--no-console`` on a second real server process."""

from __future__ import annotations

import json
import os

import requests

from tfbake import model_server
from tfbake.model_server.config import parse_flags
from tfbake.serving_input.export_layout import RAW_FEATURE_SPEC_FILE

SPECIES = {"Adelie", "Chinstrap", "Gentoo"}


def _version(penguins_run) -> int:
    return int(os.path.basename(penguins_run.export_dir))


def test_page_and_assets_are_served_from_the_package(served):
    rest, _ = served
    page = requests.get(rest + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    for asset in ("console.js", "console.css"):
        assert f"/console/static/{asset}" in page.text  # no CDN: every asset is ours
        response = requests.get(f"{rest}/console/static/{asset}", timeout=10)
        assert response.status_code == 200 and len(response.content) < 32_000


def test_models_list_states_and_labels(served, penguins_run):
    rest, _ = served
    models = requests.get(rest + "/console/api/models", timeout=10).json()["models"]
    assert [m["name"] for m in models] == ["penguins"]
    assert models[0]["versions"] == [{"version": _version(penguins_run), "state": "AVAILABLE",
                                      "error_code": "OK", "error_message": ""}]
    assert models[0]["labels"] == {}


def test_version_shows_the_exported_contract_and_signatures(served, penguins_run):
    rest, _ = served
    doc = requests.get(f"{rest}/console/api/models/penguins/versions/{_version(penguins_run)}",
                       timeout=30).json()
    contract_file = os.path.join(penguins_run.export_dir, RAW_FEATURE_SPEC_FILE)
    with open(contract_file) as f:
        assert doc["contract"] == json.load(f)
    assert [f["name"] for f in doc["raw_features"]] == list(doc["contract"])
    metadata = requests.get(f"{rest}/v1/models/penguins/metadata", timeout=10).json()
    served_signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert set(doc["signatures"]) == {n for n in served_signatures if not n.startswith("__")}
    assert doc["signatures"]["serving_default"]["method_name"] == "tensorflow/serving/classify"
    assert doc["default_signature"] == "serving_default"
    assert doc["example_rows"] and set(doc["example_rows"][0]) <= set(doc["contract"])


def test_generated_request_answers_with_species_on_the_rest_api(served, penguins_run):
    rest, _ = served
    version = _version(penguins_run)
    row = {"island": "Biscoe", "bill_length_mm": "47.5", "bill_depth_mm": "14.2",
           "flipper_length_mm": "217", "body_mass_g": "4900", "sex": "male", "year": "2008"}
    for signature in ("serving_default", "predict"):
        built = requests.post(
            f"{rest}/console/api/models/penguins/versions/{version}/request",
            json={"signature_name": signature, "rows": [row]}, timeout=30).json()
        assert built["path"] == (f"/v1/models/penguins/versions/{version}:"
                                 f"{'classify' if signature == 'serving_default' else 'predict'}")
        assert {s["client"] for s in built["samples"]} == {
            "curl", "python-requests", "python-grpc", "javascript-fetch"}
        answer = requests.post(rest + built["path"], data=built["body"], timeout=30)
        assert answer.status_code == 200, answer.text
        assert SPECIES & set(json.dumps(answer.json()).replace('"', " ").split())


def test_a_value_of_the_wrong_type_is_refused_naming_the_feature(served, penguins_run):
    rest, _ = served
    response = requests.post(
        f"{rest}/console/api/models/penguins/versions/{_version(penguins_run)}/request",
        json={"signature_name": "serving_default", "rows": [{"year": "two thousand"}]},
        timeout=30)
    assert response.status_code == 400
    assert 'feature "year"' in response.json()["error"]


def test_rows_that_are_not_objects_are_refused(served, penguins_run):
    rest, _ = served
    response = requests.post(
        f"{rest}/console/api/models/penguins/versions/{_version(penguins_run)}/request",
        json={"signature_name": "serving_default", "rows": ["Biscoe"]}, timeout=30)
    assert response.status_code == 400 and '"rows"' in response.json()["error"]


def test_unknown_version_is_the_servers_not_found(served):
    rest, _ = served
    response = requests.get(f"{rest}/console/api/models/penguins/versions/1", timeout=10)
    assert response.status_code == 404
    assert "Servable not found" in response.json()["error"]


def test_no_console_serves_only_the_api(penguins_run):
    export_base = os.path.dirname(penguins_run.export_dir)
    with model_server.serve(export_base, model_name="penguins", console=False) as server:
        assert requests.get(server.rest_url + "/", timeout=10).status_code == 404
        assert requests.get(server.rest_url + "/console/api/models", timeout=10).status_code == 404
        status = requests.get(server.rest_url + "/v1/models/penguins", timeout=10).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"


def test_no_console_is_a_server_flag():
    assert parse_flags(["--model_base_path=/m"]).console is True
    assert parse_flags(["--model_base_path=/m", "--no-console"]).console is False
