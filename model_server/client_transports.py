"""The two wire protocols of :class:`~tfbake.model_server.client.Client`, behind one interface.

A transport sends one request of TF Serving's API (status, metadata, predict,
classify, regress) for one model spec and returns the answer in one form whichever
protocol carried it: status and metadata as TF Serving's REST JSON, predict outputs
as arrays, classify results as ``(label, score)`` pairs, regress results as floats.
Chunking rows, caching signatures and turning inputs into tensors or examples are
the client's.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import http.client
import json
import threading
import urllib.parse
from collections.abc import Mapping, Sequence

import grpc
import numpy as np
import orjson
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfbake.model_server.json_tensor import EXAMPLES
from tfbake.model_server.ragged import as_rows, cut_rows, token_counts
from tfbake.model_server.tensors import dtype_of

_GRPC_OPTIONS = [("grpc.max_receive_message_length", 2**31 - 1),
                 ("grpc.max_send_message_length", 2**31 - 1)]
_JSON_OPTIONS = dict(always_print_fields_with_no_presence=True, preserving_proto_field_name=True)


class ServingRequestError(RuntimeError):
    """An error answered by the server: HTTP status (REST) or gRPC code, and message."""

    def __init__(self, status, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Which model a request is for: a name, and a version or a version label (or the
    latest), and a signature."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str | None = None


class Transport(abc.ABC):
    """One protocol's way of sending TF Serving's requests."""

    @abc.abstractmethod
    def status(self, spec: ModelSpec) -> dict:
        """GetModelStatus, as the REST JSON (``{"model_version_status": [...]}``)."""

    @abc.abstractmethod
    def metadata(self, spec: ModelSpec) -> dict:
        """GetModelMetadata, as the REST JSON (``signature_def`` twice)."""

    @abc.abstractmethod
    def predict(self, spec: ModelSpec, inputs: Mapping[str, np.ndarray], signature: dict,
                outputs: Sequence[str], output_filter: Sequence[str] | None
                ) -> dict[str, np.ndarray]:
        """Predict on one chunk of input arrays; ``signature`` is its metadata JSON and
        ``outputs`` the outputs asked for."""

    @abc.abstractmethod
    def classify(self, spec: ModelSpec, examples: Sequence[tf.train.Example]
                 ) -> list[list[tuple[str, float]]]:
        """Classify one chunk of examples: each one's ``(label, score)`` pairs."""

    @abc.abstractmethod
    def regress(self, spec: ModelSpec, examples: Sequence[tf.train.Example]) -> list[float]:
        """Regress one chunk of examples: one value each."""

    @abc.abstractmethod
    def close(self) -> None:
        """Closes the connections."""


def _json_loads(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)  # NaN / Infinity tokens


class RestTransport(Transport):
    """TF Serving's REST API over keep-alive HTTP/1.1 connections, one per thread."""

    def __init__(self, url: str, timeout: float):
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 8501
        self.prefix = parsed.path.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout
            )
        return conn

    def request(self, method: str, path: str, body: bytes | None = None):
        """One request (retried once on a closed keep-alive connection); the JSON answer,
        or :class:`ServingRequestError` with the server's error message."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        if response.status != 200:
            try:
                message = _json_loads(data)["error"]
            except (ValueError, KeyError, TypeError):
                message = data.decode("utf-8", "replace")
            raise ServingRequestError(response.status, message)
        return _json_loads(data) if data else {}

    @staticmethod
    def _path(spec: ModelSpec) -> str:
        path = "/v1/models/" + urllib.parse.quote(spec.name, safe="")
        if spec.version is not None:
            path += f"/versions/{int(spec.version)}"
        elif spec.label is not None:
            path += "/labels/" + urllib.parse.quote(spec.label, safe="")
        return path

    def status(self, spec: ModelSpec) -> dict:
        return self.request("GET", self._path(spec))

    def metadata(self, spec: ModelSpec) -> dict:
        return self.request("GET", self._path(spec) + "/metadata")

    def predict(self, spec, inputs, signature, outputs, output_filter):
        body = orjson.dumps({
            "signature_name": spec.signature_name,
            "inputs": {name: _json_column(a) for name, a in inputs.items()},
        }, option=orjson.OPT_SERIALIZE_NUMPY)
        values = self.request("POST", self._path(spec) + ":predict", body)["outputs"]
        if len(outputs) == 1 or not isinstance(values, dict):
            values = {outputs[0]: values}
        result = {}
        cuts = token_counts(values)
        for name in outputs:
            dtype = signature["outputs"][name]["dtype"]
            if name in cuts:  # cut by this server; padded by TF Serving's: cut here
                result[name] = as_rows([_from_json(row, dtype)[: int(count)]
                                        for row, count in zip(values[name], cuts[name])])
            else:
                result[name] = _from_json(values[name], dtype)
        return result

    def _examples(self, spec: ModelSpec, kind: str, examples) -> list:
        body = {EXAMPLES: [_example_to_json(e) for e in examples]}
        if spec.signature_name:
            body["signature_name"] = spec.signature_name
        return self.request("POST", self._path(spec) + f":{kind}", orjson.dumps(body))["results"]

    def classify(self, spec, examples):
        return [[(c[0], float(c[1])) for c in row]
                for row in self._examples(spec, "classify", examples)]

    def regress(self, spec, examples):
        return [float(v) for v in self._examples(spec, "regress", examples)]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def _json_column(array: np.ndarray):
    """An input array as REST JSON: strings base64-encoded (``{"b64": ...}``)."""
    if array.dtype == object or array.dtype.kind in "SU":
        flat = [
            {"b64": base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode()}
            for v in array.reshape(-1).tolist()
        ]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def _from_json(value, dtype_name: str) -> np.ndarray:
    """An output's REST JSON as an array of its signature dtype (strings as bytes)."""
    dtype = dtype_of(dtype_name)
    if dtype != tf.string:
        return np.asarray(value, dtype=dtype.as_numpy_dtype)
    array = np.array(value, dtype=object)
    flat = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode("utf-8")
            for v in array.reshape(-1).tolist()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def _example_to_json(example: tf.train.Example) -> dict:
    """A tf.Example as a classify/regress JSON object, typed so the server rebuilds it."""
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            out[name] = [{"b64": base64.b64encode(v).decode()} for v in feature.bytes_list.value]
        elif kind == "float_list":
            out[name] = [float(v) for v in feature.float_list.value]
        elif kind == "int64_list":
            out[name] = [int(v) for v in feature.int64_list.value]
    return out


class GrpcTransport(Transport):
    """TF Serving's gRPC API through the official ``tensorflow-serving-api`` stubs."""

    def __init__(self, target: str, timeout: float):
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target.split("://", 1)[-1], options=_GRPC_OPTIONS)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ServingRequestError(e.code(), e.details()) from None

    @staticmethod
    def _spec(target, spec: ModelSpec) -> None:
        target.name = spec.name
        if spec.version is not None:
            target.version.value = int(spec.version)
        elif spec.label is not None:
            target.version_label = spec.label
        if spec.signature_name:
            target.signature_name = spec.signature_name

    def status(self, spec: ModelSpec) -> dict:
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, spec)
        response = self._call(self._models.GetModelStatus, request)
        return json_format.MessageToDict(response, **_JSON_OPTIONS)

    def metadata(self, spec: ModelSpec) -> dict:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, spec)
        response = self._call(self._predict.GetModelMetadata, request)
        signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_def_map)
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **_JSON_OPTIONS),
            "metadata": {
                "signature_def": json_format.MessageToDict(signature_def_map, **_JSON_OPTIONS)
            },
        }

    def predict(self, spec, inputs, signature, outputs, output_filter):
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, spec)
        for name, array in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
        if output_filter:
            request.output_filter.extend(output_filter)
        response = self._call(self._predict.Predict, request)
        result = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        # Per-token outputs (beside a ``token_count``) come padded: one array per
        # example, cut at its count.
        for name, counts in token_counts(result).items():
            result[name] = as_rows(cut_rows(result[name], counts))
        return result

    def classify(self, spec, examples):
        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, spec)
        request.input.example_list.examples.extend(examples)
        result = self._call(self._predict.Classify, request).result
        return [[(c.label, c.score) for c in row.classes] for row in result.classifications]

    def regress(self, spec, examples):
        request = regression_pb2.RegressionRequest()
        self._spec(request.model_spec, spec)
        request.input.example_list.examples.extend(examples)
        return [r.value for r in self._call(self._predict.Regress, request).result.regressions]

    def close(self) -> None:
        self._channel.close()
