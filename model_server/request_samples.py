"""Ready-to-run request samples generated from a model's signatures.

Pure functions: signature metadata (the ``signature_def`` map of TF Serving's
``GetModelMetadata``, as its REST JSON) and example rows in, sample texts out.
``tfbake inspect`` prints them; the web console shows the same.

For each signature, the request its method and inputs call for:

- classify / regress (one serialized ``tf.Example`` input): REST ``:classify`` /
  ``:regress`` with ``examples`` (JSON objects), gRPC ``Classify`` / ``Regress``;
- predict on serialized ``tf.Example``s (``predict``, ``transform_features``): REST
  ``:predict`` with ``{"b64": ...}`` instances, gRPC ``Predict`` with a string tensor;
- predict on tensors (``predict_raw``, and any SavedModel's signatures whatever made
  them: a TF1 ``simple_save``, a ``tf.Module``, Keras): REST ``:predict`` with one
  JSON object per instance (``instances``) when every input has a batch dimension,
  else ``inputs`` holding the whole tensors; gRPC ``Predict`` with one tensor per
  input, of the input's dtype;

each as ``curl``, Python ``requests``, Python gRPC (``tensorflow-serving-api`` stubs) and
JavaScript ``fetch``. A model that reads serialized ``tf.SequenceExample``s (its export's
contract names feature_lists) has every example signature called through predict with
SequenceExamples: TF Serving's classify and regress APIs carry tf.Examples only.

Rows: the tf.Example signatures and ``predict_raw`` take raw feature rows (name ->
value; types from the ``predict_raw`` signature's dtypes when the model has one, so an
integral float value is still sent as a float, else from the Python values). Other
tensor signatures take rows of input name -> one instance's value, checked against
the input's dtype and shape; without rows they get placeholders made from the dtype
and shape (:func:`placeholder_row`). A string value may be bytes or TF Serving's
``{"b64": ...}`` (an encoded image), sent as ``{"b64": ...}`` in JSON and as bytes over
gRPC.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import shlex
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfbake import serving_input
from tfbake.model_server import errors, json_tensor
from tfbake.model_server.tensors import dtype_of
from tfbake.serving_input import signatures as sig

CLIENTS = ("curl", "python-requests", "python-grpc", "javascript-fetch")
# The dtypes of raw features (a tf.Example's float_list, int64_list, bytes_list).
_DTYPES = {name: dtype_of(name) for name in ("DT_FLOAT", "DT_INT64", "DT_STRING")}
# The dtypes TF Serving's JSON carries (util/json_tensor.cc): any such input can be sent.
_JSON_DTYPES = {name: dtype_of(name) for name in (
    "DT_FLOAT", "DT_DOUBLE", "DT_INT8", "DT_INT16", "DT_INT32", "DT_INT64", "DT_UINT8",
    "DT_UINT16", "DT_UINT32", "DT_UINT64", "DT_BOOL", "DT_STRING")}
# TF Serving's name suffix for binary string tensors: shown as a file, placeholder image.
BYTES_SUFFIX = json_tensor.BYTES_SUFFIX
# A 2x2 gray PNG (tf.io.encode_png of 128s): the placeholder of a ``*_bytes`` input,
# usually an encoded image.
PLACEHOLDER_IMAGE = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAAAAABX3VL4AAAADklEQVQImWNsYGBiYAAAApIAhAA8ow4AAAAASUVORK5CYII=")


@dataclasses.dataclass(frozen=True)
class RequestSample:
    """One runnable request.

    Attributes:
      signature: the signature it calls.
      api: ``classify``, ``regress`` or ``predict`` (the TF Serving API used).
      client: ``curl``, ``python-requests``, ``python-grpc`` or ``javascript-fetch``.
      language: ``sh``, ``python`` or ``javascript``.
      title: one line saying what it is.
      text: the script itself.
    """

    signature: str
    api: str
    client: str
    language: str
    title: str
    text: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def signature_kind(signature_def: Mapping) -> str | None:
    """``"examples"`` (one serialized tf.Example input), ``"tensors"`` (inputs of dtypes
    TF Serving's JSON carries), or None (a dtype it cannot carry: see
    :func:`uncallable_reason`)."""
    inputs = signature_def.get("inputs", {})
    if len(inputs) == 1 and next(iter(inputs.values())).get("dtype") == "DT_STRING" and (
        next(iter(inputs)) in (sig.CLASSIFY_INPUTS, serving_input.EXAMPLES_KEY)
    ):
        return "examples"
    if inputs and all(info.get("dtype") in _JSON_DTYPES for info in inputs.values()):
        return "tensors"
    return None


def uncallable_reason(signature_def: Mapping) -> str | None:
    """Why no request can be built for a signature, or None when one can."""
    inputs = signature_def.get("inputs", {})
    if not inputs:
        return "it has no inputs"
    others = sorted(f"{n} ({i.get('dtype')})" for n, i in inputs.items()
                    if i.get("dtype") not in _JSON_DTYPES)
    if others:
        return "TF Serving's JSON cannot carry the dtype of " + ", ".join(others)
    return None


def tensor_shape(info: Mapping) -> list[int] | None:
    """A metadata TensorInfo's shape (-1 for an unknown dimension), None for unknown rank."""
    shape = info.get("tensor_shape", {})
    if shape.get("unknown_rank"):
        return None
    return [int(d.get("size", -1)) for d in shape.get("dim", [])]


def batched(signature_def: Mapping) -> bool:
    """Every input has a leading batch dimension of unknown size: one row per instance
    (REST row format); otherwise a request carries whole tensors (columnar format)."""
    shapes = [tensor_shape(info) for info in signature_def.get("inputs", {}).values()]
    return bool(shapes) and all(s and s[0] == -1 for s in shapes)


def instance_shape(signature_def: Mapping, name: str) -> list[int] | None:
    """The shape of one row's value of an input (-1: any size; None: any rank)."""
    shape = tensor_shape(signature_def["inputs"][name])
    return shape[1:] if shape is not None and batched(signature_def) else shape


def _filled(shape: list[int], leaf: Any) -> Any:
    return leaf if not shape else [_filled(shape[1:], leaf) for _ in range(max(shape[0], 1))]


def placeholder_row(signature_def: Mapping) -> dict:
    """A row of typed placeholder values for every input: 1 for numbers, false, the
    text ``"text"``, and a small PNG for a ``*_bytes`` string (TF Serving's name for
    binary data, usually an encoded image); unknown dimensions get one element."""
    row = {}
    for name, info in sorted(signature_def.get("inputs", {}).items()):
        dtype = _JSON_DTYPES.get(info.get("dtype"))
        if dtype is None:
            continue
        if dtype == tf.string:
            leaf = PLACEHOLDER_IMAGE if name.endswith(BYTES_SUFFIX) else "text"
        elif dtype == tf.bool:
            leaf = False
        else:
            leaf = 1.0 if dtype.is_floating else 1
        row[name] = _filled(instance_shape(signature_def, name) or [], leaf)
    return row


def _nested_shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _tensor_leaf(value: Any, dtype: tf.dtypes.DType) -> Any:
    """One element as the input's dtype; a form's text is parsed ("2", "true")."""
    if dtype == tf.string:
        if isinstance(value, dict):
            return json_tensor.decode_b64(value)
        if isinstance(value, (str, bytes)):
            return value
        raise ValueError(f"expected text or {{\"b64\": ...}}, got {value!r}")
    if isinstance(value, str):
        text = value.strip().lower()
        value = {"true": True, "false": False}.get(text, value)
        if isinstance(value, str):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError(f"expected {dtype.name}, got {value!r}") from None
    if dtype == tf.bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected {dtype.name}, got {value!r}")
    if dtype.is_floating:
        return float(value)
    if value != int(value) or not dtype.min <= value <= dtype.max:
        raise ValueError(f"expected {dtype.name}, got {value!r}")
    return int(value)


def tensor_value(signature_def: Mapping, name: str, value: Any) -> Any:
    """One row's value of an input, typed and checked against its dtype and shape, or
    a ValueError naming the input and what was expected."""
    info = signature_def["inputs"][name]
    dtype = _JSON_DTYPES[info["dtype"]]
    shape = instance_shape(signature_def, name)
    if isinstance(value, str) and dtype != tf.string and value.strip().startswith("["):
        try:
            value = json.loads(value)  # a form's JSON text for a tensor with dimensions
        except ValueError:
            pass

    def typed(v):
        return [typed(i) for i in v] if isinstance(v, list) else _tensor_leaf(v, dtype)

    try:
        result = typed(value)
    except (ValueError, TypeError, OverflowError, errors.ServingError) as e:
        message = e.message if isinstance(e, errors.ServingError) else str(e)
        raise ValueError(f'Input "{name}" ({dtype.name}): {message}') from None
    got = _nested_shape(result)
    if shape is not None and (len(got) != len(shape) or any(
            want not in (-1, have) for want, have in zip(shape, got))):
        expected = "[" + ", ".join("?" if d == -1 else str(d) for d in shape) + "]"
        raise ValueError(f'Input "{name}" ({dtype.name}) takes values of shape {expected} '
                         f"per {'instance' if batched(signature_def) else 'request'}, got "
                         f"[{', '.join(map(str, got))}]")
    return result


def _tensor_instance(row: Mapping[str, Any], signature_def: Mapping) -> dict:
    inputs = signature_def["inputs"]
    unknown = sorted(set(row) - set(inputs))
    missing = sorted(set(inputs) - {n for n, v in row.items() if v is not None})
    if unknown or missing:
        raise ValueError(f"expected a value for each input {sorted(inputs)}; "
                         f"missing {missing}, unknown {unknown}")
    return {name: tensor_value(signature_def, name, row[name]) for name in sorted(inputs)}


def api_of(signature_def: Mapping, feature_lists: Collection[str] = ()) -> str:
    """The TF Serving API a request to the signature calls, by its method name; except
    for a model that reads serialized tf.SequenceExamples (``feature_lists``, from its
    export's contract): TF Serving's classify and regress APIs carry tf.Examples only
    (JSON objects, or the Input proto's example lists), so such a model's example
    signatures are called through predict, with the serialized records as they are."""
    if feature_lists and signature_kind(signature_def) == "examples":
        return "predict"
    method = signature_def.get("method_name", "")
    if method == sig.CLASSIFY_METHOD:
        return "classify"
    if method == sig.REGRESS_METHOD:
        return "regress"
    return "predict"


def raw_spec_of_inputs(inputs: Mapping[str, Mapping]) -> tuple[dict, list[str]]:
    """The raw feature spec and list features of a raw signature's metadata inputs
    (:func:`tfbake.serving_input.raw_feature_spec_of`: counts are not features)."""
    return serving_input.raw_feature_spec_of({
        name: (_DTYPES[info["dtype"]], len(info.get("tensor_shape", {}).get("dim", [])))
        for name, info in inputs.items()
        if info.get("dtype") in _DTYPES
    })


def feature_dtypes(signature_defs: Mapping[str, Mapping]) -> dict[str, tf.dtypes.DType]:
    """Raw feature name -> dtype, from the ``predict_raw`` signature (empty without one)."""
    raw = signature_defs.get(sig.PREDICT_RAW)
    if not raw:
        return {}
    return {name: spec.dtype for name, spec in raw_spec_of_inputs(raw["inputs"])[0].items()}


def feature_type_name(dtype: str) -> str:
    """A metadata dtype (``DT_FLOAT``) as a raw feature type (``float``)."""
    if dtype not in _DTYPES:
        raise ValueError(f"expected DT_FLOAT, DT_INT64 or DT_STRING for a raw feature, got {dtype}")
    return serving_input.type_name(_DTYPES[dtype])


def _dtype_of(name: str, value: Any, dtypes: Mapping[str, tf.dtypes.DType]) -> tf.dtypes.DType:
    if name in dtypes:
        return dtypes[name]
    first = value[0] if isinstance(value, (list, tuple)) and value else value
    if isinstance(first, (str, bytes, dict)):
        return tf.string
    if isinstance(first, int) and not isinstance(first, bool):
        return tf.int64
    return tf.float32


def _typed(value: Any, dtype: tf.dtypes.DType) -> Any:
    """A JSON value of the feature's type: TF Serving's classify JSON makes a float
    feature of ``2.0`` and an int64 one of ``2``."""
    if dtype == tf.float32:
        return float(value)
    if dtype == tf.int64:
        return int(value)
    if isinstance(value, dict):
        return json_tensor.decode_b64(value)
    return value if isinstance(value, bytes) else str(value)


def jsonable(value: Any) -> Any:
    """Bytes as TF Serving's ``{"b64": ...}``, in any JSON-like value."""
    if isinstance(value, bytes):
        return {json_tensor.B64: base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def _values(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _typed_value(name: str, value: Any, dtype: tf.dtypes.DType) -> Any:
    """One feature's value (or list of values) typed, or an error naming the feature."""
    try:
        values = [_typed(v, dtype) for v in _values(value)]
    except (ValueError, TypeError) as e:
        raise ValueError(f'Expected feature "{name}" as {serving_input.type_name(dtype)}, '
                         f"got {value!r} ({e})") from None
    return values if isinstance(value, (list, tuple)) else values[0]


def _typed_row(row: Mapping[str, Any], dtypes: Mapping) -> dict:
    """A row with missing values dropped and each value typed by its feature's dtype."""
    return {name: _typed_value(name, value, _dtype_of(name, value, dtypes))
            for name, value in row.items() if value is not None}


def serialized_example(row: Mapping[str, Any], dtypes: Mapping,
                       feature_lists: Collection[str] = ()) -> bytes:
    """The row as a serialized tf.Example, or with ``feature_lists`` a tf.SequenceExample
    (the encoder the client and tests use)."""
    typed = _typed_row(row, dtypes)
    spec = {name: tf.io.VarLenFeature(_dtype_of(name, v, dtypes)) for name, v in typed.items()}
    return serving_input.serialize_row(typed, spec, feature_lists)


def _plain(value: Any) -> Any:
    """A numpy value as JSON-like Python: bytes stay bytes only when not UTF-8 text."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value.item() if isinstance(value, np.generic) else value


def _raw_instances(rows: Sequence[Mapping[str, Any]], inputs: Mapping[str, Mapping]) -> list:
    """``predict_raw`` instances: every input of the signature for each row, a nullable
    or list feature with its count (:func:`tfbake.serving_input.raw_columns`)."""
    spec, lists = raw_spec_of_inputs(inputs)
    typed = [{name: _typed_value(name, value, spec[name].dtype)
              for name, value in row.items() if value is not None and name in spec}
             for row in rows]
    columns = serving_input.raw_columns(typed, spec, lists)
    return [{name: _plain(columns[name][i]) for name in inputs} for i in range(len(rows))]


def _feature_inputs(name: str, signature_def: Mapping) -> bool:
    """``predict_raw``: one tensor per raw feature, with missing-value markers."""
    return name == sig.PREDICT_RAW and all(
        info.get("dtype") in _DTYPES for info in signature_def.get("inputs", {}).values())


def takes_feature_rows(name: str, signature_def: Mapping) -> bool:
    """Whether a signature is called with raw feature rows (tf.Example signatures and
    ``predict_raw``) rather than rows of its own input tensors."""
    return signature_kind(signature_def) == "examples" or _feature_inputs(name, signature_def)


def tensor_instances(signature_name: str, signature_def: Mapping,
                     rows: Sequence[Mapping]) -> list[dict]:
    """The rows as typed instances of a ``"tensors"`` signature (input name -> value)."""
    if _feature_inputs(signature_name, signature_def):
        return _raw_instances(rows, signature_def["inputs"])
    if not batched(signature_def) and len(rows) != 1:
        raise ValueError(f"signature {signature_name!r} takes whole tensors (an input has "
                         f"no batch dimension): give one row, not {len(rows)}")
    return [_tensor_instance(row, signature_def) for row in rows]


def request_body(signature_name: str, signature_def: Mapping, rows: Sequence[Mapping],
                 dtypes: Mapping | None = None, feature_lists: Collection[str] = ()) -> dict:
    """The REST JSON body calling ``signature_name`` with ``rows`` (``feature_lists``: a
    model reading tf.SequenceExamples, see :func:`api_of`)."""
    dtypes = dtypes or {}
    kind, api = signature_kind(signature_def), api_of(signature_def, feature_lists)
    if kind == "examples" and api in ("classify", "regress"):
        return {"signature_name": signature_name,
                "examples": [jsonable(_typed_row(row, dtypes)) for row in rows]}
    if kind == "examples":
        return {"signature_name": signature_name, "instances": [
            {"b64": base64.b64encode(serialized_example(row, dtypes, feature_lists)).decode()}
            for row in rows
        ]}
    if kind == "tensors":
        instances = tensor_instances(signature_name, signature_def, rows)
        if batched(signature_def):
            return {"signature_name": signature_name, "instances": jsonable(instances)}
        return {"signature_name": signature_name, "inputs": jsonable(instances[0])}
    raise ValueError(f"signature {signature_name!r}: {uncallable_reason(signature_def)}")


def rest_path(model_name: str, api: str, version: int | None = None) -> str:
    """The REST path of a prediction API call, e.g. ``/v1/models/m/versions/2:classify``."""
    where = "" if version is None else f"/versions/{version}"
    return f"/v1/models/{model_name}{where}:{api}"


def _curl(url: str, body: dict, comment: str) -> str:
    payload = json.dumps(body, ensure_ascii=False)
    return (
        f"# {comment}\n"
        f"curl -sS --fail-with-body -X POST {shlex.quote(url)} \\\n"
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(payload)}\n"
    )


def _py(value: Any, indent: int = 0) -> str:
    """A Python literal of JSON-like data, indented like ``json.dumps(indent=4)`` (a
    short list of plain values on one line); NaN (a missing float) spelled
    ``float("nan")``."""
    pad, inner = " " * indent, " " * (indent + 4)
    if isinstance(value, dict):
        items = [f"{inner}{_py(k)}: {_py(v, indent + 4)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}" if items else "{}"
    if isinstance(value, list):
        items = [_py(v, indent + 4) for v in value]
        inline = "[" + ", ".join(items) + "]"
        if len(inline) + indent <= 80 and "\n" not in inline:
            return inline
        return "[\n" + ",\n".join(inner + item for item in items) + f"\n{pad}]"
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if isinstance(value, (bytes, bool)) or value is None:
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def _python_requests(url: str, body: dict, comment: str) -> str:
    payload = _py(body)
    return (
        f"# {comment}\n"
        "import requests\n\n"
        f"body = {payload}\n"
        f"response = requests.post({url!r}, json=body, timeout=30)\n"
        "response.raise_for_status()\n"
        "print(response.json())\n"
    )


def _javascript_fetch(url: str, body: dict, comment: str) -> str:
    # The JSON text as curl sends it, in a template literal: JSON.stringify would turn
    # a NaN (a missing float of predict_raw) into null.
    payload = json.dumps(body, indent=2, ensure_ascii=False)
    payload = payload.replace("\\", "\\\\").replace("`", "\\`").replace("${", "\\${")
    comment = "\n".join("// " + line.removeprefix("# ") for line in comment.split("\n"))
    return (
        f"{comment}\n"
        f"const body = `{payload}`;\n"
        f"const response = await fetch({json.dumps(url)}, {{\n"
        '  method: "POST",\n'
        '  headers: {"Content-Type": "application/json"},\n'
        "  body,\n"
        "});\n"
        "const text = await response.text();  // the server's JSON, numbers as sent\n"
        "if (!response.ok) throw new Error(JSON.parse(text).error);\n"
        "console.log(text);\n"
    )


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _as_bytes(value: Any) -> Any:
    """Every string of a nested value as bytes (a gRPC string tensor's elements)."""
    return [_as_bytes(v) for v in value] if isinstance(value, list) else _bytes(value)


def _feature_expression(value: Any, dtype: tf.dtypes.DType) -> str:
    """Python code making the tf.train.Feature of ``value`` (one value or a list)."""
    values = _values(value)
    if dtype == tf.string:
        items = ", ".join(repr(_bytes(_typed(v, dtype))) for v in values)
        kind = "bytes_list=tf.train.BytesList"
    elif dtype == tf.int64:
        items = ", ".join(repr(int(v)) for v in values)
        kind = "int64_list=tf.train.Int64List"
    else:
        items = ", ".join(repr(float(v)) for v in values)
        kind = "float_list=tf.train.FloatList"
    return f"tf.train.Feature({kind}(value=[{items}]))"


def _feature_code(name: str, value: Any, dtype: tf.dtypes.DType, indent: int = 8) -> str:
    return f"{' ' * indent}{name!r}: {_feature_expression(value, dtype)},\n"


def _examples_code(rows: Sequence[Mapping], dtypes: Mapping) -> str:
    code = "examples = [\n"
    for row in rows:
        typed = _typed_row(row, dtypes)
        code += "    tf.train.Example(features=tf.train.Features(feature={\n"
        for name, value in typed.items():
            code += _feature_code(name, value, _dtype_of(name, value, dtypes))
        code += "    })),\n"
    return code + "]\n"


def _sequence_examples_code(rows: Sequence[Mapping], dtypes: Mapping,
                            feature_lists: Collection[str]) -> str:
    """Code making a tf.SequenceExample per row: ``feature_lists`` one value per step,
    the other features in the context (as :func:`serialized_example` encodes them)."""
    code = "examples = [\n"
    for row in rows:
        typed = _typed_row(row, dtypes)
        code += "    tf.train.SequenceExample(\n        context=tf.train.Features(feature={\n"
        for name, value in typed.items():
            if name not in feature_lists:
                code += _feature_code(name, value, _dtype_of(name, value, dtypes), indent=12)
        code += "        }),\n        feature_lists=tf.train.FeatureLists(feature_list={\n"
        for name, value in typed.items():
            if name in feature_lists:
                dtype = _dtype_of(name, value, dtypes)
                steps = ", ".join(_feature_expression(v, dtype) for v in _values(value))
                code += f"            {name!r}: tf.train.FeatureList(feature=[{steps}]),\n"
        code += "        })),\n"
    return code + "]\n"


_GRPC_HEADER = (
    "import grpc\n"
    "import tensorflow as tf\n"
    "from tensorflow_serving.apis import {modules}prediction_service_pb2_grpc\n\n"
    "channel = grpc.insecure_channel({target!r})\n"
    "stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)\n"
)


def _python_grpc(target: str, model_name: str, version: int | None, signature_name: str,
                 signature_def: Mapping, rows: Sequence[Mapping], dtypes: Mapping,
                 comment: str, feature_lists: Collection[str] = ()) -> str:
    kind, api = signature_kind(signature_def), api_of(signature_def, feature_lists)
    spec = f"request.model_spec.name = {model_name!r}\n"
    if version is not None:
        spec += f"request.model_spec.version.value = {int(version)}\n"
    spec += f"request.model_spec.signature_name = {signature_name!r}\n"
    if kind == "examples" and api in ("classify", "regress"):
        module, message, method = (
            ("classification_pb2", "ClassificationRequest", "Classify") if api == "classify"
            else ("regression_pb2", "RegressionRequest", "Regress")
        )
        body = (
            _examples_code(rows, dtypes)
            + f"request = {module}.{message}()\n" + spec
            + "request.input.example_list.examples.extend(examples)\n"
            + f"print(stub.{method}(request, timeout=30))\n"
        )
    elif kind == "examples":
        module = "predict_pb2"
        (input_key,) = signature_def["inputs"]
        build = (_sequence_examples_code(rows, dtypes, feature_lists) if feature_lists
                 else _examples_code(rows, dtypes))
        body = (
            build
            + "request = predict_pb2.PredictRequest()\n" + spec
            + f"request.inputs[{input_key!r}].CopyFrom(\n"
            + "    tf.make_tensor_proto([e.SerializeToString() for e in examples]))\n"
            + "print(stub.Predict(request, timeout=30))\n"
        )
    else:
        module = "predict_pb2"
        instances = tensor_instances(signature_name, signature_def, rows)
        body = "request = predict_pb2.PredictRequest()\n" + spec
        for name, info in sorted(signature_def["inputs"].items()):
            dtype = _JSON_DTYPES[info["dtype"]]
            value = ([i[name] for i in instances] if batched(signature_def)
                     else instances[0][name])
            if dtype == tf.string:
                value = _as_bytes(value)
                if name.endswith(BYTES_SUFFIX):
                    body += f"# {name}: a file's bytes, e.g. open('image.png', 'rb').read()\n"
            body += (f"request.inputs[{name!r}].CopyFrom(\n"
                     f"    tf.make_tensor_proto({_py(value, 4)}, dtype=tf.{dtype.name}))\n")
        body += "print(stub.Predict(request, timeout=30))\n"
    header = _GRPC_HEADER.format(modules=f"{module}, ", target=target)
    return f"# {comment}\n{header}\n{body}"


def request_samples(
    signature_defs: Mapping[str, Mapping],
    rows: Sequence[Mapping[str, Any]],
    *,
    model_name: str,
    version: int | None = None,
    rest_url: str = "http://localhost:8501",
    grpc_target: str = "localhost:8500",
    clients: Sequence[str] = CLIENTS,
    signatures: Sequence[str] | None = None,
    tensor_rows: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    feature_lists: Collection[str] = (),
) -> list[RequestSample]:
    """Samples calling every covered signature, for each client.

    Args:
      signature_defs: signature name -> signature def as TF Serving's metadata JSON
        (``inputs``/``outputs`` with ``dtype`` and ``tensor_shape``, ``method_name``).
      rows: raw feature rows for the tf.Example signatures and ``predict_raw``, name
        -> value (or list of values); None or a missing key is a missing value. Without
        rows those signatures get no samples.
      model_name: the model's name on the server.
      version: the model version to call (default: the latest the server has).
      rest_url, grpc_target: where the samples send their requests.
      clients: which of ``curl``, ``python-requests``, ``python-grpc``,
        ``javascript-fetch``.
      signatures: only these signatures (default: every covered one).
      tensor_rows: signature name -> rows of its input tensors, for the other
        signatures; default :func:`placeholder_row`.
      feature_lists: for a model that reads tf.SequenceExamples (its export's
        contract), the features its records carry as feature_lists: every example
        signature is then called through predict with serialized SequenceExamples
        (:func:`api_of`).
    """
    unknown = sorted(set(clients) - set(CLIENTS))
    if unknown:
        raise ValueError(f"unknown client(s) {unknown}; expected some of {list(CLIENTS)}")
    dtypes = feature_dtypes(signature_defs)
    samples = []
    for name in sorted(signature_defs, key=lambda n: (n != sig.DEFAULT_SERVING, n)):
        if signatures is not None and name not in signatures:
            continue
        signature_def = signature_defs[name]
        kind = signature_kind(signature_def)
        if kind is None:
            continue
        if takes_feature_rows(name, signature_def):
            calls_rows = rows
        else:
            calls_rows = (tensor_rows or {}).get(name) or [placeholder_row(signature_def)]
        if not calls_rows:
            continue
        api = api_of(signature_def, feature_lists)
        body = request_body(name, signature_def, calls_rows, dtypes, feature_lists)
        url = rest_url.rstrip("/") + rest_path(model_name, api, version)
        record = "tf.SequenceExample" if feature_lists else "tf.Example"
        what = {"examples": f"serialized {record}s", "tensors": "input tensors"}[kind]
        if kind == "examples" and api in ("classify", "regress"):
            what = "tf.Examples as JSON objects"
        elif _feature_inputs(name, signature_def):
            what = "raw feature values"
        note = ""
        if kind == "examples" and api == "predict":
            lists = f" (feature_lists: {', '.join(feature_lists)})" if feature_lists else ""
            note = f"\n# each b64 is a serialized {record}{lists} of: " + "; ".join(
                json.dumps(jsonable(_typed_row(row, dtypes)), ensure_ascii=False)
                for row in calls_rows)
        for client in clients:
            protocol = "gRPC" if client == "python-grpc" else "REST"
            title = f"{name}: {protocol} {api} with {what} ({client})"
            if client == "curl":
                text, language = _curl(url, body, title + note), "sh"
            elif client == "python-requests":
                text, language = _python_requests(url, body, title + note), "python"
            elif client == "javascript-fetch":
                text, language = _javascript_fetch(url, body, title + note), "javascript"
            else:
                text = _python_grpc(grpc_target, model_name, version, name, signature_def,
                                    calls_rows, dtypes, title, feature_lists)
                language = "python"
            samples.append(RequestSample(name, api, client, language, title, text))
    return samples
