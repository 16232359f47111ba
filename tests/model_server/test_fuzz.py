"""Fuzz: malformed REST bodies and gRPC requests get TF Serving-shaped client errors."""

from __future__ import annotations

import json

import grpc
import numpy as np
import requests
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

REST_EXAMPLES = 2200
GRPC_EXAMPLES = 300

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=12,
)
not_a_number = st.one_of(st.none(), st.booleans(), st.text(max_size=6),
                         st.dictionaries(st.text(max_size=3), scalars, max_size=2),
                         st.lists(scalars, min_size=1, max_size=2).map(lambda v: [v, 1]))
bad_b64 = st.text(alphabet="-_!*@ ", min_size=1, max_size=12).map(lambda s: {"b64": s})
# Beyond 2**64 JSON integers are doubles (valid floats); 2**63..2**64-1 are refused.
huge_ints = st.integers(min_value=2**63, max_value=2**64 - 1)


def deep(depth):
    return "[" * depth + "1.0" + "]" * depth


# Every body below is malformed for the signature it is sent to.
bad_predict_bodies = st.one_of(
    # not JSON, or not an object
    st.binary(max_size=30).filter(lambda b: not _is_json_object(b)),
    json_values.filter(lambda v: not isinstance(v, dict)).map(json.dumps),
    # missing keys, both keys, wrong container types, empty
    st.dictionaries(st.text(max_size=8).filter(lambda k: k not in ("instances", "inputs")),
                    json_values, max_size=3).map(json.dumps),
    st.builds(lambda a, b: json.dumps({"instances": a, "inputs": b}), json_values, json_values),
    json_values.filter(lambda v: not isinstance(v, list)).map(
        lambda v: json.dumps({"instances": v})),
    st.just(json.dumps({"instances": []})),
    # wrong types for a float input
    st.lists(not_a_number, min_size=1, max_size=4).map(lambda v: json.dumps({"instances": v})),
    st.lists(not_a_number, min_size=1, max_size=4).map(lambda v: json.dumps({"inputs": v})),
    # wrong shapes: ragged rows
    st.integers(1, 4).map(lambda n: json.dumps({"instances": [[1.0] * n, [1.0] * (n + 1)]})),
    # deep nesting
    st.integers(2, 3000).map(lambda d: '{"instances": [' + deep(d) + "]}"),
    # signature name of the wrong type or unknown
    json_values.filter(lambda v: not isinstance(v, str)).map(
        lambda v: json.dumps({"signature_name": v, "instances": [1.0]})),
    st.text(min_size=1, max_size=8).filter(
        lambda s: s not in {"serving_default", "predict_raw", "classify", "classify_x_to_y",
                            "regress_x_to_y", "multi", "bytes"}).map(
        lambda s: json.dumps({"signature_name": s, "instances": [1.0]})),
    # bad base64 to a string input, base64 to a float input
    st.lists(bad_b64, min_size=1, max_size=3).map(
        lambda v: json.dumps({"signature_name": "bytes", "instances": v})),
    st.just(json.dumps({"instances": [{"b64": "AAAA"}]})),
    # huge numbers to an int64 input
    huge_ints.map(lambda k: json.dumps(
        {"signature_name": "multi", "instances": [{"x": 1.0, "k": k}]})),
    # multi-input rows with missing / extra keys
    st.dictionaries(st.sampled_from(["x", "k", "z"]), st.just(1), max_size=3).filter(
        lambda d: set(d) != {"x", "k"}).map(
        lambda d: json.dumps({"signature_name": "multi", "instances": [d]})),
)

bad_feature_values = st.one_of(
    st.none(), st.lists(st.lists(scalars, min_size=1, max_size=2), min_size=1, max_size=2),
    st.dictionaries(st.text(max_size=3).filter(lambda k: k != "b64"), scalars, min_size=1,
                    max_size=2),
    bad_b64, st.text(max_size=5), st.integers(-10, 10), st.just([1, 2.5]), huge_ints,
)
bad_example_bodies = st.one_of(
    st.dictionaries(st.text(max_size=8).filter(lambda k: k != "examples"), json_values,
                    max_size=3),
    json_values.filter(lambda v: not isinstance(v, list)).map(lambda v: {"examples": v}),
    st.just({"examples": []}),
    st.lists(json_values.filter(lambda v: not isinstance(v, dict)), min_size=1, max_size=3).map(
        lambda v: {"examples": v}),
    bad_feature_values.map(lambda v: {"examples": [{"x": v}]}),
    bad_feature_values.map(lambda v: {"context": {"x": v}, "examples": [{}]}),
    json_values.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: {"context": v, "examples": [{"x": 1.0}]}),
)


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


rest_cases = st.one_of(
    bad_predict_bodies.map(lambda b: (":predict", b)),
    bad_example_bodies.map(lambda b: (":classify", json.dumps(dict(b, signature_name="classify")))),
    bad_example_bodies.map(lambda b: (":regress",
                                      json.dumps(dict(b, signature_name="regress_x_to_y")))),
)


def test_malformed_rest_bodies_get_client_errors(server):
    session = requests.Session()
    statuses = set()

    @settings(max_examples=REST_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(rest_cases)
    def check(case):
        verb, body = case
        r = session.post(server.rest_url + "/v1/models/hpt" + verb, data=body, timeout=30)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/json")
        payload = r.json()
        assert list(payload) == ["error"] and isinstance(payload["error"], str), r.text
        statuses.add(r.status_code)

    check()
    assert statuses <= {400}
    good = session.post(server.rest_url + "/v1/models/hpt:predict",
                        data=b'{"instances": [1.0]}', timeout=30)
    assert good.json() == {"predictions": [2.5]}


dtypes = st.sampled_from([types_pb2.DT_FLOAT, types_pb2.DT_INT64, types_pb2.DT_STRING,
                          types_pb2.DT_DOUBLE, types_pb2.DT_INT32, types_pb2.DT_BOOL])


@st.composite
def bad_tensors(draw):
    proto = tensor_pb2.TensorProto(dtype=draw(dtypes))
    dims = draw(st.lists(st.integers(0, 3), max_size=3))
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]))
    choice = draw(st.integers(0, 3))
    if choice == 0:
        proto.tensor_content = draw(st.binary(max_size=17))
    elif choice == 1:
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=5)))
    elif choice == 2:
        proto.string_val.extend(draw(st.lists(st.binary(max_size=4), max_size=5)))
    else:
        proto.int64_val.extend(draw(st.lists(st.integers(-5, 5), max_size=5)))
    return proto


@st.composite
def bad_predict_requests(draw):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = draw(st.sampled_from(["", "multi", "bytes"]))
    names = draw(st.lists(st.sampled_from(["x", "k", "image_bytes", "z"]), max_size=3,
                          unique=True))
    for name in names:
        request.inputs[name].CopyFrom(draw(bad_tensors()))
    request.output_filter.extend(draw(st.lists(st.sampled_from(["y", "nope"]), max_size=2)))
    return request


def _is_valid(request) -> bool:
    """The few generated requests that are well formed (answered 200)."""
    signature = request.model_spec.signature_name or "serving_default"
    wanted = {"serving_default": {"x": types_pb2.DT_FLOAT},
              "multi": {"x": types_pb2.DT_FLOAT, "k": types_pb2.DT_INT64},
              "bytes": {"image_bytes": types_pb2.DT_STRING}}[signature]
    if set(request.inputs) != set(wanted):
        return False
    try:
        arrays = {n: tf.make_ndarray(request.inputs[n]) for n in wanted}
    except Exception:  # noqa: BLE001
        return False
    if any(request.inputs[n].dtype != d or arrays[n].ndim != 1 for n, d in wanted.items()):
        return False
    if len({a.shape[0] for a in arrays.values()}) != 1:
        return False
    outputs = {"serving_default": {"y"}, "multi": {"y", "k_text", "pair", "inv"},
               "bytes": {"echo_bytes", "size"}}[signature]
    filters = list(request.output_filter)
    return len(filters) == len(set(filters)) and set(filters) <= outputs


def test_malformed_grpc_requests_get_invalid_argument(grpc_channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
    client_errors = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}

    @settings(max_examples=GRPC_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(bad_predict_requests())
    def check(request):
        try:
            stub.Predict(request, timeout=30)
        except grpc.RpcError as e:
            assert e.code() in client_errors, (request, e.code(), e.details())
            assert e.details()
            return
        assert _is_valid(request), request

    check()
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = "classify"
    request.input.example_list.examples.add().features.feature["x"].bytes_list.value.append(b"a")
    try:
        stub.Classify(request, timeout=30)
        raise AssertionError("a bytes feature for a float spec must fail")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    good = predict_pb2.PredictRequest()
    good.model_spec.name = "hpt"
    good.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([2.0], np.float32)))
    assert tf.make_ndarray(stub.Predict(good).outputs["y"]).tolist() == [3.0]
