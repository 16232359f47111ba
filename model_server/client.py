"""A client for TF Serving's REST and gRPC APIs (this server's or the real one's).

``Client(url)`` speaks REST for ``http://host:port`` and gRPC for ``grpc://host:port``
or a bare ``host:port`` (``protocol=`` overrides). Inputs may be plain dicts of raw
features (encoded into tf.Examples by :func:`serving_input.encode_example` with the
raw feature spec, given or derived from the model's ``predict_raw`` signature),
``tf.train.Example``s, serialized examples, or a mapping of input name to array.
Any number of rows is sent in chunks of ``batch_size``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import sys
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence

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

import serving_input
from model_server.ragged import as_rows, cut_rows, token_counts
from model_server.request_samples import raw_spec_of_inputs
from serving_input import signatures as sig_keys
from serving_input.csv_rows import CsvFormat, CsvLineDecoder, csv_reader

_DTYPES = {"DT_FLOAT": tf.float32, "DT_INT64": tf.int64, "DT_STRING": tf.string,
           "DT_DOUBLE": tf.float64, "DT_INT32": tf.int32, "DT_BOOL": tf.bool}
_GRPC_OPTIONS = [("grpc.max_receive_message_length", 2**31 - 1),
                 ("grpc.max_send_message_length", 2**31 - 1)]


class ServingRequestError(RuntimeError):
    """An error answered by the server: HTTP status (REST) or gRPC code, and message."""

    def __init__(self, status, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _json_loads(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)  # NaN / Infinity tokens


class _Rest:
    """Keep-alive HTTP/1.1 connections, one per thread."""

    def __init__(self, url: str, timeout: float):
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

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def _model_path(model: str, version: int | None, label: str | None) -> str:
    path = "/v1/models/" + urllib.parse.quote(model, safe="")
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += "/labels/" + urllib.parse.quote(label, safe="")
    return path


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


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


def _rest_array(value, dtype: tf.dtypes.DType) -> np.ndarray:
    """A REST output value (nested lists; strings plain or ``{"b64": ...}``) as an array."""
    if dtype != tf.string:
        return np.asarray(value, dtype=dtype.as_numpy_dtype)
    array = np.array(value, dtype=object)
    flat = [
        base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode("utf-8")
        for v in array.reshape(-1).tolist()
    ]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


class Client:
    """REST or gRPC client for TF Serving APIs.

    Args:
      url: ``http://host:port`` (REST), ``grpc://host:port`` or ``host:port`` (gRPC).
      protocol: ``"rest"`` or ``"grpc"``; inferred from ``url`` when omitted.
      timeout: seconds per request.
      batch_size: rows per request when more are given.
      feature_spec: the raw feature spec for encoding dict rows; by default derived
        from the model's ``predict_raw`` signature (every feature optional).
    """

    def __init__(self, url: str, protocol: str | None = None, *, timeout: float = 60.0,
                 batch_size: int = 128, feature_spec: Mapping | None = None):
        if protocol is None:
            protocol = "rest" if url.startswith(("http://", "https://")) else "grpc"
        if protocol not in ("rest", "grpc"):
            raise ValueError(f'protocol must be "rest" or "grpc", got {protocol!r}')
        self.url = url
        self.protocol = protocol
        self.timeout = timeout
        self.batch_size = batch_size
        self.feature_spec = dict(feature_spec) if feature_spec is not None else None
        self._signatures: dict[tuple, dict] = {}
        self._specs: dict[str, dict] = {}
        if protocol == "rest":
            if not url.startswith(("http://", "https://")):
                url = "http://" + url
            self._rest = _Rest(url, timeout)
        else:
            target = url.split("://", 1)[-1]
            self._channel = grpc.insecure_channel(target, options=_GRPC_OPTIONS)
            self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"Client({self.url!r}, protocol={self.protocol!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes connections."""
        if self.protocol == "rest":
            self._rest.close()
        else:
            self._channel.close()

    # ------------------------------------------------------------------ plumbing

    def _grpc_call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ServingRequestError(e.code(), e.details()) from None

    @staticmethod
    def _spec(target, model, version, label, signature_name=None) -> None:
        target.name = model
        if version is not None:
            target.version.value = int(version)
        elif label is not None:
            target.version_label = label
        if signature_name:
            target.signature_name = signature_name

    # ------------------------------------------------------------------ status / metadata

    def status(self, model: str, version: int | None = None) -> dict:
        """GetModelStatus, as the REST JSON (``{"model_version_status": [...]}``)."""
        if self.protocol == "rest":
            return self._rest.request("GET", _model_path(model, version, None))
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, model, version, None)
        response = self._grpc_call(self._models.GetModelStatus, request)
        return json_format.MessageToDict(
            response, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
        )

    def metadata(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        """GetModelMetadata, as the REST JSON (``signature_def`` twice)."""
        if self.protocol == "rest":
            return self._rest.request("GET", _model_path(model, version, label) + "/metadata")
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, model, version, label)
        response = self._grpc_call(self._predict.GetModelMetadata, request)
        signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_def_map)
        options = dict(always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {"signature_def": json_format.MessageToDict(signature_def_map, **options)},
        }

    def signature(self, model: str, signature_name: str | None = None, *,
                  version: int | None = None, label: str | None = None) -> dict:
        """One signature's JSON metadata (inputs, outputs, method_name), cached."""
        key = (model, version, label, signature_name or sig_keys.DEFAULT_SERVING)
        if key not in self._signatures:
            signatures = self.metadata(model, version, label)["metadata"]["signature_def"][
                "signature_def"
            ]
            if key[3] not in signatures:
                raise ValueError(
                    f"Model {model} has no signature {key[3]!r}; it has {sorted(signatures)}"
                )
            self._signatures[key] = signatures[key[3]]
        return self._signatures[key]

    def raw_feature_spec(self, model: str) -> dict:
        """The raw feature spec: as given, or read from the ``predict_raw`` signature
        (:func:`serving_input.raw_feature_spec_of`: a feature sent with a count is a
        ``VarLenFeature``, nullable or a list; any other is required)."""
        if self.feature_spec is not None:
            return self.feature_spec
        if model not in self._specs:
            signature = self.signature(model, sig_keys.PREDICT_RAW)
            self._specs[model] = raw_spec_of_inputs(signature["inputs"])[0]
        return self._specs[model]

    def list_features(self, model: str) -> list[str]:
        """The list features of the ``predict_raw`` signature (values of rank 2)."""
        return raw_spec_of_inputs(self.signature(model, sig_keys.PREDICT_RAW)["inputs"])[1]

    # ------------------------------------------------------------------ inputs

    def _serialized(self, model: str, examples: Iterable) -> list[bytes]:
        rows = list(examples)
        out: list[bytes] = []
        spec = None
        for i, row in enumerate(rows):
            if isinstance(row, bytes):
                out.append(row)
            elif isinstance(row, tf.train.Example):
                out.append(row.SerializeToString())
            elif isinstance(row, Mapping):
                spec = spec or self.raw_feature_spec(model)
                out.append(serving_input.encode_example(row, spec, index=i).SerializeToString())
            else:
                raise TypeError(
                    f"Expected a dict, a tf.train.Example or bytes for example {i}, "
                    f"got {type(row).__name__}"
                )
        return out

    def _tensors(self, model: str, inputs, signature: dict) -> dict[str, np.ndarray]:
        """Any accepted input form as name -> array for the signature's inputs."""
        infos = signature["inputs"]
        if isinstance(inputs, Mapping):
            return {name: np.asarray(value) if not isinstance(value, np.ndarray) else value
                    for name, value in inputs.items()}
        rows = list(inputs)
        if len(infos) == 1 and next(iter(infos.values()))["dtype"] == "DT_STRING" and (
            not rows or not isinstance(rows[0], Mapping)
            or set(rows[0]) != set(infos)
        ):
            name = next(iter(infos))
            array = np.empty(len(rows), dtype=object)
            array[:] = self._serialized(model, rows)
            return {name: array}
        # Dict rows for a raw signature (one input per feature, a count beside each
        # nullable or list feature): serving_input.raw_columns.
        spec, lists = raw_spec_of_inputs(infos)
        return serving_input.raw_columns(rows, spec, lists)

    # ------------------------------------------------------------------ predict

    def predict(self, model: str, inputs, *, signature_name: str | None = None,
                version: int | None = None, label: str | None = None,
                output_filter: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Predict: returns output name -> array, rows in input order.

        ``inputs``: a list of dict rows / tf.Examples / serialized examples (sent as the
        signature's one string input, or as raw columns for a raw signature), or a
        mapping of input name to array.
        """
        signature_name = signature_name or sig_keys.DEFAULT_SERVING
        signature = self.signature(model, signature_name, version=version, label=label)
        tensors = self._tensors(model, inputs, signature)
        n = len(next(iter(tensors.values()))) if tensors else 0
        outputs = list(output_filter) if output_filter else sorted(signature["outputs"])
        parts: list[dict[str, np.ndarray]] = []
        for rows in _chunks(n, self.batch_size):
            chunk = {name: array[rows] for name, array in tensors.items()}
            if self.protocol == "rest":
                parts.append(self._predict_rest(model, version, label, signature_name,
                                                chunk, signature, outputs))
            else:
                parts.append(self._predict_grpc(model, version, label, signature_name,
                                                chunk, output_filter))
        if not parts:
            return {name: np.zeros((0,)) for name in outputs}
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    @staticmethod
    def _own_rows(result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-token outputs (beside a ``token_count``), sent padded over gRPC, as one
        array per example cut at its count."""
        for name, counts in token_counts(result).items():
            result[name] = as_rows(cut_rows(result[name], counts))
        return result

    def _predict_rest(self, model, version, label, signature_name, chunk, signature, outputs):
        def column(array: np.ndarray):
            if array.dtype == object or array.dtype.kind in "SU":
                flat = [
                    {"b64": base64.b64encode(v if isinstance(v, bytes) else str(v).encode())
                     .decode()}
                    for v in array.reshape(-1).tolist()
                ]
                return np.array(flat, dtype=object).reshape(array.shape).tolist()
            return array.tolist()

        body = orjson.dumps({
            "signature_name": signature_name,
            "inputs": {name: column(a) for name, a in chunk.items()},
        }, option=orjson.OPT_SERIALIZE_NUMPY)
        doc = self._rest.request("POST", _model_path(model, version, label) + ":predict", body)
        values = doc["outputs"]
        if len(outputs) == 1 or not isinstance(values, dict):
            values = {outputs[0]: values}
        result = {}
        cuts = token_counts(values)
        for name in outputs:
            info = signature["outputs"][name]
            dtype = _DTYPES.get(info["dtype"], tf.float32)
            if name in cuts:  # cut by this server; padded by TF Serving's: cut here
                result[name] = as_rows([_rest_array(row, dtype)[: int(count)]
                                        for row, count in zip(values[name], cuts[name])])
            else:
                result[name] = _rest_array(values[name], dtype)
        return result

    def _predict_grpc(self, model, version, label, signature_name, chunk, output_filter):
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, model, version, label, signature_name)
        for name, array in chunk.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
        if output_filter:
            request.output_filter.extend(output_filter)
        response = self._grpc_call(self._predict.Predict, request)
        return self._own_rows(
            {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        )

    # ------------------------------------------------------------------ classify / regress

    def _examples_calls(self, model, examples, signature_name, version, label, kind):
        serialized = self._serialized(model, examples)
        for rows in _chunks(len(serialized), self.batch_size):
            chunk = serialized[rows]
            if self.protocol == "rest":
                body = {"examples": [_example_to_json(tf.train.Example.FromString(s))
                                     for s in chunk]}
                if signature_name:
                    body["signature_name"] = signature_name
                yield self._rest.request(
                    "POST", _model_path(model, version, label) + f":{kind}", orjson.dumps(body)
                )["results"]
            else:
                request = (classification_pb2.ClassificationRequest() if kind == "classify"
                           else regression_pb2.RegressionRequest())
                self._spec(request.model_spec, model, version, label, signature_name)
                request.input.example_list.examples.extend(
                    tf.train.Example.FromString(s) for s in chunk
                )
                method = self._predict.Classify if kind == "classify" else self._predict.Regress
                yield self._grpc_call(method, request).result

    def classify(self, model: str, examples: Iterable, *, signature_name: str | None = None,
                 version: int | None = None,
                 label: str | None = None) -> list[list[tuple[str, float]]]:
        """Classify: for each example, its ``(label, score)`` pairs in the model's order."""
        results: list[list[tuple[str, float]]] = []
        for part in self._examples_calls(model, examples, signature_name, version, label,
                                         "classify"):
            if self.protocol == "rest":
                results.extend([(c[0], float(c[1])) for c in row] for row in part)
            else:
                results.extend([(c.label, c.score) for c in row.classes]
                               for row in part.classifications)
        return results

    def regress(self, model: str, examples: Iterable, *, signature_name: str | None = None,
                version: int | None = None, label: str | None = None) -> list[float]:
        """Regress: one value per example."""
        results: list[float] = []
        for part in self._examples_calls(model, examples, signature_name, version, label,
                                         "regress"):
            if self.protocol == "rest":
                results.extend(float(v) for v in part)
            else:
                results.extend(r.value for r in part.regressions)
        return results


# ---------------------------------------------------------------------- files


def _read_rows(path: str, feature_spec: Mapping, list_features: Sequence[str] = (),
               csv_format: CsvFormat | None = None) -> Iterator[dict]:
    """The raw feature values of a JSONL file's objects, or of a CSV file's rows read as
    the Beam job reads training data (:class:`serving_input.csv_rows.CsvLineDecoder`
    with ``csv_format``, default the config defaults); other columns are left out."""
    if path.endswith((".jsonl", ".json", ".ndjson")):
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    row = orjson.loads(line)
                    yield {k: v for k, v in row.items() if k in feature_spec}
        return
    fmt = csv_format or CsvFormat()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv_reader(f, fmt)  # a quoted field's line breaks stay in its record
        header = next(reader, []) if fmt.header else None
        columns = fmt.column_names or header
        absent = [name for name in feature_spec if name not in columns]
        required = [n for n in absent if isinstance(feature_spec[n], tf.io.FixedLenFeature)]
        if required:
            raise ValueError(f"{path}: no column for required feature(s) {required}")
        spec = {name: s for name, s in feature_spec.items() if name in columns}
        decoder = CsvLineDecoder(spec, columns, fmt, [n for n in list_features if n in spec])
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue  # a blank line holds no row
            try:
                yield decoder.as_dict(decoder.decode_fields(fields))
            except ValueError as err:
                raise ValueError(f"{path} line {reader.line_num}: {err}") from None


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.ndim else _jsonable(value.item())
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


def predict_file(
    server: str,
    model: str,
    input_path: str,
    output_path: str | None = None,
    *,
    protocol: str | None = None,
    signature_name: str | None = None,
    batch_size: int = 128,
    feature_spec: Mapping | None = None,
    progress: bool = True,
    csv_format: CsvFormat | None = None,
) -> int:
    """Streams a CSV or JSONL file of raw rows through a server; writes JSONL results.

    Each output line is the signature's outputs for one input row (name -> value;
    strings as text). Columns that are not raw features (a label) are dropped. A CSV
    file is read as the Beam job reads training data laid out as ``csv_format`` (a
    config's ``data.csv``; default the config defaults). Returns the number of rows
    written.
    """
    from tqdm import tqdm

    client = Client(server, protocol, batch_size=batch_size, feature_spec=feature_spec)
    spec = client.raw_feature_spec(model)
    lists = [] if feature_spec is not None else client.list_features(model)
    out = open(output_path, "w", encoding="utf-8") if output_path else sys.stdout
    written = 0
    try:
        with tqdm(desc=f"predict {model}", unit="rows", disable=not progress,
                  file=sys.stderr) as bar:
            batch: list[dict] = []

            def flush():
                nonlocal written
                outputs = client.predict(model, batch, signature_name=signature_name)
                for i in range(len(batch)):
                    record = {name: _jsonable(values[i]) for name, values in outputs.items()}
                    out.write(orjson.dumps(record).decode() + "\n")
                written += len(batch)
                bar.update(len(batch))
                batch.clear()

            for row in _read_rows(input_path, spec, lists, csv_format):
                batch.append(row)
                if len(batch) >= batch_size:
                    flush()
            if batch:
                flush()
    finally:
        if output_path:
            out.close()
        client.close()
    return written


def cli_predict(argv: list[str] | None = None, csv_format: CsvFormat | None = None) -> int:
    """``tfbake predict --server URL --model NAME --input FILE [--protocol grpc] ...``;
    ``csv_format``: how a CSV input file is laid out (``tfbake predict --config``)."""
    p = argparse.ArgumentParser(prog="tfbake predict",
                                description="Send a CSV/JSONL file to a model server.")
    p.add_argument("--server", required=True, help="http://host:8501 (REST) or host:8500 (gRPC)")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True, help="rows.csv or rows.jsonl")
    p.add_argument("--output", default=None, help="JSONL results (default: stdout)")
    p.add_argument("--protocol", choices=("rest", "grpc"), default=None)
    p.add_argument("--signature", default=None, help="signature name (default serving_default)")
    p.add_argument("--batch_size", type=int, default=128)
    args = p.parse_args(argv)
    try:
        predict_file(args.server, args.model, args.input, args.output,
                     protocol=args.protocol, signature_name=args.signature,
                     batch_size=args.batch_size, csv_format=csv_format)
    except (ServingRequestError, ValueError, OSError) as e:
        print(f"tfbake predict: {e}", file=sys.stderr)
        return 1
    return 0
