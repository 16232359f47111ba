"""REST API of the model server: response bodies as SERVING_API.md documents them.

Expected bodies are written from the contract (y = 0.5 x + 2), not from the server.
"""

from __future__ import annotations

import base64
import json

import pytest

HPT = "/v1/models/hpt"


def post(http, server, path, body):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return http.post(server.rest_url + path, data=data, timeout=30)


def assert_error(response, status, message=None, startswith=None):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    if message is not None:
        assert body["error"] == message
    if startswith is not None:
        assert body["error"].startswith(startswith), body["error"]


def floats_in(text):
    """Every JSON number token of a body, parsed (NaN and Infinity as bare tokens)."""
    return json.loads(text, parse_float=lambda s: ("float", s), parse_int=lambda s: ("int", s))


def test_row_predict(http, server):
    r = post(http, server, f"{HPT}:predict", {"instances": [1.0, 2.0, 5.0]})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"predictions": [2.5, 3.0, 4.5]}
    # Whole floats keep their decimal point ("3.0", never "3").
    assert floats_in(r.text) == {
        "predictions": [("float", "2.5"), ("float", "3.0"), ("float", "4.5")]
    }


def test_columnar_predict(http, server):
    r = post(http, server, f"{HPT}:predict", {"inputs": [1.0, 2.0, 5.0]})
    assert r.status_code == 200 and r.json() == {"outputs": [2.5, 3.0, 4.5]}


def test_integers_are_accepted_for_float_inputs(http, server):
    r = post(http, server, f"{HPT}:predict", {"instances": [2, 4]})
    assert r.json() == {"predictions": [3.0, 4.0]}


def test_multi_output_rows(http, server):
    body = {"signature_name": "multi", "instances": [{"x": 1.0, "k": 2}, {"x": 4.0, "k": 3}]}
    r = post(http, server, f"{HPT}:predict", body)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [
        {"y": 2.5, "k_text": "2", "pair": [1.0, 2.0], "inv": 1.0},
        {"y": 4.0, "k_text": "3", "pair": [4.0, 3.0], "inv": 0.25},
    ]}


def test_multi_output_columnar(http, server):
    body = {"signature_name": "multi", "inputs": {"x": [1.0, 4.0], "k": [2, 3]}}
    r = post(http, server, f"{HPT}:predict", body)
    assert r.json() == {"outputs": {
        "y": [2.5, 4.0], "k_text": ["2", "3"], "pair": [[1.0, 2.0], [4.0, 3.0]], "inv": [1.0, 0.25],
    }}


def test_non_finite_values_are_bare_tokens(http, server):
    body = {"signature_name": "multi", "inputs": {"x": [0.0, NAN], "k": [1, 1]}}
    r = post(http, server, f"{HPT}:predict", json.dumps(body, allow_nan=True))
    assert r.status_code == 200, r.text
    assert '"inv":[Infinity,NaN]' in r.text.replace(" ", "").replace("\n", "")


NAN = float("nan")


def test_b64_in_and_bytes_out(http, server):
    raw = b"\x00\xff\xfeab"
    encoded = base64.b64encode(raw).decode()
    body = {"signature_name": "bytes", "instances": [{"b64": encoded}, "h\u00e9"]}
    r = post(http, server, f"{HPT}:predict", body)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [
        {"echo_bytes": {"b64": encoded}, "size": 5},
        {"echo_bytes": {"b64": base64.b64encode("h\u00e9".encode()).decode()}, "size": 3},
    ]}


def test_web_safe_base64_is_rejected(http, server):
    body = {"signature_name": "bytes", "instances": [{"b64": "-_8="}]}
    assert_error(post(http, server, f"{HPT}:predict", body), 400,
                 "Failed to process element: 0 of 'instances' list. Error: "
                 "INVALID_ARGUMENT: Unable to base64 decode")


def test_classify_without_context(http, server):
    body = {"signature_name": "classify", "examples": [{"x": 1.0}, {"x": 3.0}]}
    r = post(http, server, f"{HPT}:classify", body)
    assert r.status_code == 200, r.text
    assert r.json() == {"results": [[["neg", 2.5], ["pos", 3.5]], [["neg", 3.5], ["pos", 4.5]]]}


def test_classify_with_context_example_wins(http, server):
    body = {"signature_name": "classify", "context": {"x": 3.0},
            "examples": [{}, {"x": 1.0}]}
    r = post(http, server, f"{HPT}:classify", body)
    assert r.json() == {"results": [[["neg", 3.5], ["pos", 4.5]], [["neg", 2.5], ["pos", 3.5]]]}


def test_classify_scores_only_has_empty_labels(http, server):
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert post(http, server, f"{HPT}:classify", body).json() == {"results": [[["", 3.0]]]}


def test_classify_integer_is_int64_feature(http, server):
    # `2` is an int64_list feature, which the graph's float spec cannot parse.
    body = {"signature_name": "classify", "examples": [{"x": 2}]}
    r = post(http, server, f"{HPT}:classify", body)
    assert_error(r, 400)
    assert "x" in r.json()["error"]


def test_regress(http, server):
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}, {"x": 2.0}]}
    r = post(http, server, f"{HPT}:regress", body)
    assert r.status_code == 200 and r.json() == {"results": [2.5, 3.0]}


def test_version_and_label_in_path(http, server):
    for path in (f"{HPT}/versions/123:predict", f"{HPT}/labels/stable:predict",
                 "/V1/MODELS/hpt:predict"):
        assert post(http, server, path, {"instances": [1.0]}).json() == {"predictions": [2.5]}


def test_status(http, server):
    r = http.get(server.rest_url + HPT)
    assert r.status_code == 200
    assert r.json() == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}
    ]}
    assert http.get(server.rest_url + f"{HPT}/versions/123").json() == r.json()


def test_metadata(http, server):
    r = http.get(server.rest_url + f"{HPT}/metadata")
    assert r.status_code == 200
    body = r.json()
    assert body["model_spec"] == {"name": "hpt", "signature_name": "", "version": "123"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "classify", "regress_x_to_y", "multi", "bytes"} <= set(signatures)
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["defaults"] == {}
    x = default["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert x["name"].startswith("serving_default_x")
    assert signatures["classify"]["method_name"] == "tensorflow/serving/classify"
    assert signatures["classify"]["outputs"]["classes"]["tensor_shape"]["dim"][1]["size"] == "2"
    assert signatures["regress_x_to_y"]["method_name"] == "tensorflow/serving/regress"


@pytest.mark.parametrize("method,path,body,status,message", [
    ("POST", "/v1/models/nope:predict", {"instances": [1.0]}, 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", f"{HPT}/versions/7:predict", {"instances": [1.0]}, 404,
     "Servable not found for request: Specific(hpt, 7)"),
    ("POST", f"{HPT}/labels/canary:predict", {"instances": [1.0]}, 400,
     "Unrecognized servable version label: canary"),
    ("POST", f"{HPT}:predict", {"signature_name": "nope", "instances": [1.0]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", f"{HPT}:predict", {"instance": [1.0]}, 400, "Missing 'inputs' or 'instances' key"),
    ("POST", f"{HPT}:explode", {}, 400, "Malformed request: POST /v1/models/hpt:explode"),
    ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
    ("DELETE", HPT, None, 400, f"Malformed request: DELETE {HPT}"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", f"{HPT}/versions/7", None, 404, "Could not find version 7 of model hpt"),
    ("POST", f"{HPT}:predict", {"instances": ["a"]}, 400,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
     'JSON Value: "a" Type: String is not of expected type: float'),
    ("POST", f"{HPT}:predict", {"signature_name": "multi", "instances": [1.0]}, 400,
     "instances is a plain list, but expecting list of objects as multiple input tensors "
     "required as per tensorinfo_map"),
    ("POST", f"{HPT}:predict", {"signature_name": "multi", "inputs": {"x": [1.0]}}, 400,
     "Missing named input: k in 'inputs' object."),
    ("POST", f"{HPT}:classify", {"signature_name": "classify", "examples": []}, 400,
     'JSON Value: {"signature_name":"classify","examples":[]} \'examples\' value is an empty '
     "array"),
    ("POST", f"{HPT}:classify", {"signature_name": "nope", "examples": [{"x": 1.0}]}, 400,
     "No signature was found with the name: nope"),
])
def test_error_classes(http, server, method, path, body, status, message):
    r = http.request(method, server.rest_url + path,
                     data=None if body is None else json.dumps(body), timeout=30)
    assert_error(r, status, message)


def test_json_parse_error(http, server):
    assert_error(post(http, server, f"{HPT}:predict", b'{"instances": [1.0'), 400,
                 startswith="JSON Parse error")


def test_text_that_is_not_unicode_is_a_json_parse_error(http, server):
    # A lone surrogate escape: alone, and after a NaN (read by the second parser).
    assert_error(post(http, server, f"{HPT}:predict",
                      b'{"signature_name": "bytes", "instances": ["\\ud800"]}'), 400,
                 message="JSON Parse error: no low surrogate in string: line 1 column 44 "
                         "(char 43)")
    assert_error(post(http, server, f"{HPT}:predict", b'{"instances": [NaN], "a": "\\udc00"}'),
                 400, message="JSON Parse error: The surrogate pair in string is invalid.")
    assert_error(post(http, server, f"{HPT}:predict", b'{"instances": ["\xff\xfe"]}'), 400,
                 startswith="JSON Parse error")


def test_graph_error_is_invalid_argument(http, server):
    body = {"signature_name": "classify", "examples": [{"x": "not a float"}]}
    assert_error(post(http, server, f"{HPT}:classify", body), 400)


def test_body_over_limit_is_refused(http, server):
    body = b'{"instances": [' + b"1.0," * 300_000 + b"1.0]}"
    r = post(http, server, f"{HPT}:predict", body)
    assert_error(r, 413)
    assert "exceeds the limit of 1000000 bytes" in r.json()["error"]


def test_metrics_count_requests(http, server):
    post(http, server, f"{HPT}:predict", {"instances": [1.0]})
    post(http, server, "/v1/models/hpt:predict", {"instances": ["bad"]})
    page = http.get(server.rest_url + "/monitoring/prometheus/metrics").text
    assert ':tensorflow:serving:request_count{model_name="hpt",status="OK"}' in page
    assert ':tensorflow:serving:request_count{model_name="hpt",status="INVALID_ARGUMENT"}' in page
    assert ':tensorflow:serving:request_latency_bucket{API="predict",entrypoint="REST"' in page


def test_warmup_was_replayed(server):
    assert "Finished reading 1 warmup records for hpt version 123" in server.stderr()


def test_console_prefills_a_tensor_signature_from_the_warmup_requests(http, server):
    # The warm-up file holds a PredictRequest to serving_default with x = [1.0].
    doc = http.get(f"{server.rest_url}/console/api/models/hpt/versions/123", timeout=30).json()
    default = doc["signatures"]["serving_default"]
    assert (default["form"], default["example_row"]) == ("tensors", {"x": 1.0})
    assert default["fields"] == [{"name": "x", "dtype": "float32", "shape": [],
                                  "widget": "number"}]
    assert doc["signatures"]["classify"]["form"] == "features"  # a tf.Example signature
