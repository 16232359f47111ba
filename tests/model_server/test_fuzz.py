"""Fuzz: no client input gets a 5xx or holds the server. Malformed REST bodies (text
that is not Unicode included) and gRPC requests get TF Serving-shaped client errors; a
few bytes asking for a huge tensor are refused before it is built; connections that
send slowly are closed while good requests keep being answered."""

from __future__ import annotations

import json
import socket
import time

import grpc
import numpy as np
import pytest
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

from tfbake import model_server

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
# Text that is not Unicode: lone surrogates (json.dumps writes them as "\ud800"
# escapes), in values, keys and names.
not_unicode = st.builds(lambda a, c, b: a + c + b, st.text(max_size=3),
                        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                        st.text(max_size=3))


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


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
    # text that is not Unicode: a string value, a key, a signature name; bytes that are
    # not UTF-8 inside a string; and the same after a NaN (the second parser's path)
    st.lists(not_unicode, min_size=1, max_size=2).map(
        lambda v: json.dumps({"signature_name": "bytes", "instances": v})),
    not_unicode.map(lambda k: json.dumps({"instances": [{k: 1.0}]})),
    not_unicode.map(lambda k: json.dumps({"signature_name": k, "instances": [1.0]})),
    not_unicode.map(lambda k: '{"instances": [NaN], "z": ' + json.dumps(k) + "}"),
    st.binary(min_size=1, max_size=4).filter(_not_utf8).map(
        lambda b: b'{"signature_name": "bytes", "instances": ["' + b + b'"]}'),
)

bad_feature_values = st.one_of(
    not_unicode,
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
    not_unicode.map(lambda k: {"examples": [{k: 1.0}]}),
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


AMPLIFYING_EXAMPLES = 40


def _peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@st.composite
def amplifying_requests(draw, limit):
    """A PredictRequest of a few bytes whose one value, spread over its shape, would
    take more than ``limit`` bytes (up to 2**40)."""
    dtype, field, value, itemsize = draw(st.sampled_from([
        (types_pb2.DT_FLOAT, "float_val", 1.0, 4), (types_pb2.DT_DOUBLE, "double_val", 1.0, 8),
        (types_pb2.DT_INT64, "int64_val", 1, 8), (types_pb2.DT_INT32, "int_val", 1, 4),
        (types_pb2.DT_BOOL, "bool_val", True, 1), (types_pb2.DT_STRING, "string_val", b"a", 8),
    ]))
    dims = draw(st.lists(st.integers(1, 2**20), min_size=1, max_size=3).filter(
        lambda d: limit < int(np.prod(d, dtype=object)) * itemsize <= 2**40))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = draw(st.sampled_from(["", "bytes", "multi"]))
    alias = {"": "x", "bytes": "image_bytes", "multi": draw(st.sampled_from(["x", "k"]))}[
        request.model_spec.signature_name]
    tensor = request.inputs[alias]
    tensor.dtype = dtype
    tensor.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims)
    getattr(tensor, field).append(value)
    if request.model_spec.signature_name == "multi":  # the other input, well formed
        other = "k" if alias == "x" else "x"
        request.inputs[other].CopyFrom(tf.make_tensor_proto(
            [1] if other == "k" else [1.0], dtype=tf.int64 if other == "k" else tf.float32))
    return request, alias


def test_a_request_asking_for_a_huge_tensor_is_refused_before_it_is_built(
        grpc_channel, server, helpers):
    # e.g. tensor_shape [2**28] with one float_val: 30 bytes that would become 1 GiB.
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
    peak_before = _peak_rss_bytes(server.process.pid)

    @settings(max_examples=AMPLIFYING_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(amplifying_requests(helpers.MAX_TENSOR_BYTES))
    def check(case):
        request, alias = case
        assert request.ByteSize() < 100
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith(f"Input tensor {alias} of shape [")
        assert f"limit of {helpers.MAX_TENSOR_BYTES} bytes" in refused.value.details()

    check()
    # The server's peak memory grew by less than the limit: nothing was built.
    assert _peak_rss_bytes(server.process.pid) - peak_before < helpers.MAX_TENSOR_BYTES
    good = predict_pb2.PredictRequest()
    good.model_spec.name = "hpt"
    good.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([2.0], np.float32)))
    assert tf.make_ndarray(stub.Predict(good, timeout=30).outputs["y"]).tolist() == [3.0]


SLOW_TIMEOUT_MS = 600
SLOW_CONNECTIONS = 8
SMALL_TENSOR_BYTES = 4000


@pytest.fixture(scope="module")
def strict_server(model_dirs):
    """An in-process server with short header and body timeouts and a small tensor limit."""
    with model_server.serve(
        model_dirs["hpt"], model_name="hpt", rest_api_header_timeout_in_ms=SLOW_TIMEOUT_MS,
        rest_api_body_timeout_in_ms=SLOW_TIMEOUT_MS, max_request_tensor_bytes=SMALL_TENSOR_BYTES,
    ) as running:
        yield running


def _receive(sock: socket.socket, within_s: float, until: bytes | None = None):
    """What the server sends on ``sock`` within ``within_s`` (or until it has sent
    ``until``), and whether it closed the connection."""
    sock.settimeout(within_s)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
            if until is not None and received.endswith(until):
                return received, False
    except TimeoutError:
        return received, False
    except ConnectionResetError:
        pass
    return received, True


def test_slow_connections_are_closed_while_good_requests_are_answered(strict_server):
    host, port = strict_server.rest_url.split("//")[1].split(":")
    head = b"POST /v1/models/hpt:predict HTTP/1.1\r\nHost: x\r\n"
    silent = [socket.create_connection((host, int(port))) for _ in range(SLOW_CONNECTIONS)]
    slow_head = [socket.create_connection((host, int(port))) for _ in range(SLOW_CONNECTIONS)]
    slow_body = [socket.create_connection((host, int(port))) for _ in range(SLOW_CONNECTIONS)]
    for sock in slow_body:
        sock.sendall(head + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    session = requests.Session()
    deadline = time.monotonic() + 3 * SLOW_TIMEOUT_MS / 1000
    answered = 0
    while time.monotonic() < deadline:
        for sock in slow_head:  # a byte at a time, never a whole head
            try:
                sock.sendall(head[answered % len(head):][:1])
            except OSError:
                pass  # closed by the server already
        r = session.post(strict_server.rest_url + "/v1/models/hpt:predict",
                         json={"instances": [1.0]}, timeout=10)
        assert r.json() == {"predictions": [2.5]}
        answered += 1
        time.sleep(0.05)
    assert answered > 10
    for sock in silent + slow_head:
        assert _receive(sock, 2.0) == (b"", True)
    for sock in slow_body:  # answered 408, with Connection: close
        answer, _ = _receive(sock, 2.0, until=b'(--rest_api_body_timeout_in_ms)"}')
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"Connection: close" in answer and answer.endswith(b'ms)"}'), answer
    for sock in silent + slow_head + slow_body:
        sock.close()


def test_a_rest_tensor_over_the_limit_is_refused_naming_it(strict_server):
    values = [1.0] * (SMALL_TENSOR_BYTES // 4 + 1)
    r = requests.post(strict_server.rest_url + "/v1/models/hpt:predict",
                      json={"instances": values}, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"] == (
        f"Input tensor x of shape [{len(values)}] (float) would take {4 * len(values)} bytes, "
        f"more than the limit of {SMALL_TENSOR_BYTES} bytes (--max_request_tensor_bytes)")
