"""TF Serving's JSON encoding of tensors and tf.Examples (``util/json_tensor.cc``).

Request side: a predict body's ``instances`` (row) or ``inputs`` (columnar) become
numpy arrays typed by the signature; a classify/regress body's ``examples`` and
``context`` become an ``Input`` of tf.Examples (a JSON integer is an ``int64_list``,
a number written with a decimal point or exponent a ``float_list``: the parser keeps
``2`` and ``2.0`` apart). Response side: outputs are written as TF Serving writes
them: floats as the shortest ``%g`` form that round-trips (``3.0``, not ``3``),
``NaN``/``Infinity`` as bare tokens, string outputs named ``*_bytes`` as
``{"b64": ...}``.

Conversion of well-formed values runs on whole columns at C speed (type sets,
numpy); only a value that fails that check is walked element by element to produce
TF Serving's exact message.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math

import numpy as np
import orjson
import tensorflow as tf
from tensorflow_serving.apis import input_pb2

from tfbake.model_server import errors
from tfbake.model_server.ragged import cut_rows, token_counts
from tfbake.model_server.servable import TensorInfo

INSTANCES, INPUTS, SIGNATURE_NAME = "instances", "inputs", "signature_name"
EXAMPLES, CONTEXT, B64 = "examples", "context", "b64"
BYTES_SUFFIX = "_bytes"
_DEBUG_LIMIT = 4096

_INT_RANGES = {
    tf.int8: (-(2**31), 2**31 - 1),  # rapidjson IsInt(), as TF Serving checks
    tf.int16: (-(2**31), 2**31 - 1),
    tf.int32: (-(2**31), 2**31 - 1),
    tf.uint8: (-(2**31), 2**31 - 1),
    tf.int64: (-(2**63), 2**63 - 1),
    tf.uint32: (0, 2**32 - 1),
    tf.uint64: (0, 2**64 - 1),
}


class _Slow(Exception):
    """The fast column check failed: walk the value for TF Serving's message."""


# ---------------------------------------------------------------------- parsing


def loads(body: bytes):
    """Parses a request body; the top level must be an object."""
    if not body:
        raise errors.invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        # TF Serving's parser accepts NaN and Infinity tokens; orjson does not, so a
        # body it refuses gets a second chance with the standard library's parser,
        # which also lets through what orjson rightly refuses: a lone surrogate
        # ("\ud800") is not text. orjson.dumps finds one anywhere in the document.
        try:
            doc = json.loads(body, parse_int=_parse_int)
        except (ValueError, RecursionError, UnicodeDecodeError):
            raise errors.invalid_argument(f"JSON Parse error: {e}") from None
        try:
            orjson.dumps(doc)
        except TypeError as invalid:  # also raised for nesting deeper than orjson writes
            if "surrogate" in str(invalid):
                # orjson's own message has the position when the surrogate was the
                # first thing it refused; else rapidjson's, as TF Serving answers.
                where = str(e) if "surrogate" in str(e) else (
                    "The surrogate pair in string is invalid.")
                raise errors.invalid_argument(f"JSON Parse error: {where}") from None
    if not isinstance(doc, dict):
        raise _format_error(doc, "Is not object")
    return doc


def _parse_int(text: str) -> int | float:
    """A JSON integer as orjson (and TF Serving's rapidjson) reads it: beyond 64 bits,
    a double."""
    value = int(text)
    return value if -(2**63) <= value < 2**64 else float(value)


def debug_string(value) -> str:
    """rapidjson's compact rendering of a value, as TF Serving quotes it in errors."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError, TypeError):
        text = "<unprintable>"
    return text if len(text) <= _DEBUG_LIMIT else text[:_DEBUG_LIMIT] + "..."


def json_type(value) -> str:
    """rapidjson's type name of a value."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _format_error(value, *parts) -> errors.ServingError:
    return errors.invalid_argument(f"JSON Value: {debug_string(value)} " + "".join(parts))


def signature_name(doc: dict) -> str:
    """The optional ``signature_name`` (empty when absent)."""
    if SIGNATURE_NAME not in doc:
        return ""
    name = doc[SIGNATURE_NAME]
    if not isinstance(name, str):
        raise errors.invalid_argument(
            f"JSON Value: {debug_string(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(B64), str)


def _is_element_object(value) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def decode_b64(value) -> bytes:
    """``{"b64": "..."}`` -> bytes (standard alphabet; web-safe is refused)."""
    if not _is_b64(value):
        raise errors.invalid_argument(
            f"JSON Value: {debug_string(value)} not formatted correctly for base64 data"
        )
    text = value[B64]
    try:
        # absl::Base64Unescape accepts unpadded input.
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise errors.invalid_argument("Unable to base64 decode") from None


def _type_error(value, info: TensorInfo) -> errors.ServingError:
    return errors.invalid_argument(
        f"JSON Value: {debug_string(value)} Type: {json_type(value)} "
        f"is not of expected type: {info.type_name}"
    )


# numpy (and so this server) holds at most 64 dimensions; one is the batch.
MAX_JSON_RANK = 63


def _dense_shape(value) -> list[int]:
    shape = []
    while isinstance(value, list):
        if len(shape) == MAX_JSON_RANK:
            raise errors.invalid_argument(
                f"JSON Value nested too deeply: more than {MAX_JSON_RANK} dimensions"
            )
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fast(value, info: TensorInfo) -> np.ndarray:
    shape = _dense_shape(value)
    leaves = [value]
    for size in shape:
        if set(map(type, leaves)) != {list} or set(map(len, leaves)) != {size}:
            raise _Slow
        leaves = list(itertools.chain.from_iterable(leaves))
    if not leaves:
        return np.zeros(shape, dtype=info.np_dtype)
    types = set(map(type, leaves))
    dtype = info.dtype
    try:
        if dtype.is_floating and dtype != tf.bfloat16 and dtype != tf.float16:
            if not types <= {float, int}:
                raise _Slow
            with np.errstate(over="ignore"):
                array = np.array(leaves, dtype=info.np_dtype)
        elif dtype == tf.bool:
            if types != {bool}:
                raise _Slow
            array = np.array(leaves, dtype=bool)
        elif dtype in _INT_RANGES:
            if types != {int}:
                raise _Slow
            low, high = _INT_RANGES[dtype]
            if min(leaves) < low or max(leaves) > high:
                raise _Slow
            array = np.array(leaves, dtype=info.np_dtype)
        elif dtype == tf.string:
            if types == {str}:
                encoded = [s.encode("utf-8") for s in leaves]
            elif types <= {str, dict}:
                encoded = [
                    s.encode("utf-8") if type(s) is str else decode_b64(s) for s in leaves
                ]
            else:
                raise _Slow
            array = np.empty(len(encoded), dtype=object)
            array[:] = encoded
        else:
            raise _Slow
    except (OverflowError, ValueError, errors.ServingError):
        raise _Slow from None
    return array.reshape(shape)


def _scalar(value, info: TensorInfo):
    dtype = info.dtype
    if isinstance(value, bool):
        if dtype == tf.bool:
            return value
        raise _type_error(value, info)
    if dtype.is_floating and dtype not in (tf.bfloat16, tf.float16):
        if isinstance(value, (int, float)):
            return float(value)
        raise _type_error(value, info)
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if isinstance(value, int) and low <= value <= high:
            return value
        raise _type_error(value, info)
    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode("utf-8")
        raise _type_error(value, info)
    if dtype == tf.bool:
        raise _type_error(value, info)
    raise errors.unimplemented(
        f"Conversion of JSON Value: {debug_string(value)} to type: {info.type_name}"
    )


def _slow(value, info: TensorInfo) -> np.ndarray:
    """FillTensorProto's walk, raising its messages."""
    shape = _dense_shape(value)
    rank = len(shape)
    out = []

    def fill(v, level):
        if not isinstance(v, list):
            if level != rank:
                raise errors.invalid_argument(
                    f"JSON Value: {debug_string(v)} found at incorrect level: {level + 1} "
                    f"in the JSON DOM. Expected at level: {rank}"
                )
            if isinstance(v, dict):
                if info.dtype != tf.string:
                    raise _type_error(v, info)
                out.append(decode_b64(v))
            else:
                out.append(_scalar(v, info))
            return
        if level >= rank:
            raise errors.invalid_argument(
                f"Encountered list at unexpected level: {level} expected < {rank}"
            )
        if len(v) != shape[level]:
            raise errors.invalid_argument(
                f"Encountered list at unexpected size: {len(v)} at level: {level} "
                f"expected size: {shape[level]}"
            )
        for item in v:
            fill(item, level + 1)

    try:
        fill(value, 0)
    except RecursionError:
        raise errors.invalid_argument("JSON Value nested too deeply") from None
    array = np.empty(len(out), dtype=object) if info.dtype == tf.string else None
    if array is not None:
        array[:] = out
    else:
        with np.errstate(over="ignore"):
            array = np.array(out, dtype=info.np_dtype)
    return array.reshape(shape)


def tensor_from_json(value, info: TensorInfo) -> np.ndarray:
    """One JSON value (scalar or nested lists) as an array of the input's dtype."""
    try:
        return _fast(value, info)
    except _Slow:
        return _slow(value, info)


def _shape_string(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _instances_column(items: list, info: TensorInfo, key: str | None) -> np.ndarray:
    """The items of one input across all instances, stacked on a new dimension 0."""
    try:
        return _fast(items, info)
    except _Slow:
        pass
    first_shape = None
    arrays = []
    for index, item in enumerate(items):
        try:
            array = tensor_from_json(item, info)
            if first_shape is None:
                first_shape = array.shape
            elif array.size != int(np.prod(first_shape)):
                raise errors.invalid_argument(
                    f"Expecting tensor size: {int(np.prod(first_shape))} but got: {array.size}"
                )
            elif array.shape != first_shape:
                raise errors.invalid_argument(
                    f"Expecting shape {_shape_string(first_shape)} but got: "
                    f"{_shape_string(array.shape)}"
                )
        except errors.ServingError as e:
            where = f" key: {key}" if key is not None else ""
            raise errors.invalid_argument(
                f"Failed to process element: {index}{where} of 'instances' list. Error: {e}"
            ) from None
        arrays.append(array)
    return np.stack(arrays)


def predict_inputs_from_json(
    doc: dict, signature_inputs: dict[str, TensorInfo]
) -> tuple[dict[str, np.ndarray], str]:
    """A predict body's tensors, and its format: ``"row"`` or ``"columnar"``."""
    if not signature_inputs:
        raise errors.invalid_argument("Failed to get input map for signature")
    if INSTANCES in doc:
        if INPUTS in doc:
            raise _format_error(
                doc, "Not formatted correctly expecting only one of 'inputs' or "
                "'instances' keys to exist "
            )
        instances = doc[INSTANCES]
        if not isinstance(instances, list):
            raise _format_error(doc, "Expecting 'instances' to be an list/array")
        if not instances:
            raise _format_error(doc, "No values in 'instances' array")
        return _rows(instances, signature_inputs), "row"
    if INPUTS in doc:
        return _columns(doc[INPUTS], signature_inputs), "columnar"
    raise errors.invalid_argument("Missing 'inputs' or 'instances' key")


def _rows(instances: list, signature_inputs: dict[str, TensorInfo]) -> dict[str, np.ndarray]:
    first = instances[0]
    if not isinstance(first, dict) and len(signature_inputs) > 1:
        raise errors.invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    if not _is_element_object(first):
        name, info = next(iter(signature_inputs.items()))
        for index, item in enumerate(instances):
            if _is_element_object(item):
                raise errors.invalid_argument(
                    f"Expecting value/list but got object at item {index} of input list"
                )
        return {name: _instances_column(instances, info, None)}
    names = set(signature_inputs)
    for index, item in enumerate(instances):
        if not _is_element_object(item):
            raise errors.invalid_argument(
                f"Expecting object but got list at item {index} of input list"
            )
        for key in item:
            if key not in names:
                raise errors.invalid_argument(
                    f"Failed to process element: {index} key: {key} of 'instances' list. "
                    f"Error: INVALID_ARGUMENT: JSON object: does not have named input: {key}"
                )
        if len(item) != len(names):
            raise errors.invalid_argument(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{debug_string(item)} keys must be equal to: {','.join(sorted(names))}"
            )
    return {
        name: _instances_column([item[name] for item in instances], info, name)
        for name, info in signature_inputs.items()
    }


def _columns(value, signature_inputs: dict[str, TensorInfo]) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or _is_b64(value):
        if len(signature_inputs) > 1:
            raise errors.invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        name, info = next(iter(signature_inputs.items()))
        return {name: tensor_from_json(value, info)}
    tensors = {}
    for name, info in signature_inputs.items():
        if name not in value:
            raise errors.invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = tensor_from_json(value[name], info)
    return tensors


# ---------------------------------------------------------------- tf.Example input

_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}


def _add_feature_value(value, name: str, values: dict) -> None:
    if value is None or isinstance(value, list) or (
        isinstance(value, dict) and not _is_b64(value)
    ):
        raise errors.invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {json_type(value)}"
        )
    if isinstance(value, bool):
        kind, item = "int64_list", int(value)
    elif isinstance(value, dict):
        kind, item = "bytes_list", None
    elif isinstance(value, str):
        kind, item = "bytes_list", value.encode("utf-8")
    elif isinstance(value, float) or value > 2**64 - 1 or value < -(2**63):
        # rapidjson parses integers beyond 64 bits as doubles.
        kind, item = "float_list", float(value)
    else:
        if value > 2**63 - 1:
            raise errors.invalid_argument(
                f"Feature: {name} has uint64_t element. Only int64_t is supported."
            )
        kind, item = "int64_list", value
    current = values.get("kind")
    if current is not None and current != kind:
        raise errors.invalid_argument(
            f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[current]}"
        )
    if item is None:
        item = decode_b64(value)
    values["kind"] = kind
    values["items"].append(item)


def example_from_json(value, example) -> None:
    """MakeExampleFromJsonObject: one JSON object into a tf.Example proto."""
    if not isinstance(value, dict):
        raise errors.invalid_argument(
            f"Example must be JSON object but got JSON {json_type(value)}"
        )
    features = example.features.feature
    for name, content in value.items():
        values = {"kind": None, "items": []}
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, values)
        feature = features[name]
        feature.Clear()
        if values["kind"] is not None:
            getattr(feature, values["kind"]).value.extend(values["items"])


def classify_regress_input_from_json(doc: dict):
    """A classify/regress body as an ``Input`` (ExampleList or ExampleListWithContext)."""
    request_input = input_pb2.Input()
    has_context = CONTEXT in doc
    if has_context:
        example_from_json(doc[CONTEXT], request_input.example_list_with_context.context)
    if EXAMPLES not in doc:
        raise _format_error(
            doc, f"When method is classify, key '{EXAMPLES}' is expected and was not found"
        )
    examples = doc[EXAMPLES]
    if not isinstance(examples, list):
        raise _format_error(doc, f"Expecting '{EXAMPLES}' value to be an list/array")
    if not examples:
        raise _format_error(doc, f"'{EXAMPLES}' value is an empty array")
    target = (
        request_input.example_list_with_context.examples
        if has_context else request_input.example_list.examples
    )
    for value in examples:
        example_from_json(value, target.add())
    return request_input


# ---------------------------------------------------------------------- writing


def _float_tokens(flat: np.ndarray) -> list[str]:
    """WriteDecimal: ``%g``, else max_digits10 when that does not round-trip; ``.0``."""
    values = flat.tolist()
    tokens = [f"{v:g}" for v in values]
    finite = np.isfinite(flat)
    digits = 9 if flat.dtype == np.float32 else 17
    with np.errstate(all="ignore"):
        back = np.array(tokens).astype(flat.dtype)
    for i in np.flatnonzero(finite & (back != flat)):
        tokens[i] = f"{values[i]:.{digits}g}"
    tokens = [t if ("." in t or "e" in t) else t + ".0" for t in tokens]
    if not finite.all():
        for i in np.flatnonzero(~finite):
            v = values[i]
            tokens[i] = "NaN" if math.isnan(v) else ("-Infinity" if v < 0 else "Infinity")
    return tokens


def _string_token(value: bytes) -> str:
    return orjson.dumps(value.decode("utf-8", "replace")).decode()


def _b64_token(value: bytes) -> str:
    return '{"b64":"' + base64.b64encode(value).decode("ascii") + '"}'


def value_tokens(name: str, array: np.ndarray) -> list[str]:
    """Every value of an output tensor as a JSON token, in row-major order."""
    flat = array.reshape(-1)
    kind = array.dtype.kind
    if kind == "f" and array.dtype.itemsize >= 4:
        return _float_tokens(flat)
    if kind in "iu":
        return [str(v) for v in flat.tolist()]
    if kind == "b":
        return ["true" if v else "false" for v in flat.tolist()]
    if kind in "OSU":
        as_bytes = name.endswith(BYTES_SUFFIX)
        items = [v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist()]
        return [_b64_token(v) for v in items] if as_bytes else [_string_token(v) for v in items]
    raise errors.invalid_argument(
        f"Failed to write JSON value for tensor type: {tf.as_dtype(array.dtype).name}"
    )


def _nest(tokens: list[str], shape: tuple) -> str:
    if not shape:
        return tokens[0]
    if 0 in shape:
        def empty(dims):
            if len(dims) == 1 or dims[0] == 0:
                return "[" + ",".join("[]" for _ in range(dims[0] if len(dims) > 1 else 0)) + "]"
            return "[" + ",".join(empty(dims[1:]) for _ in range(dims[0])) + "]"
        return empty(shape)
    items = tokens
    for size in reversed(shape):
        items = ["[" + ",".join(items[i:i + size]) + "]" for i in range(0, len(items), size)]
    return items[0]


def _key(name: str) -> str:
    return orjson.dumps(name).decode()


def predictions_json(outputs: dict[str, np.ndarray]) -> bytes:
    """Row format: ``{"predictions": [...]}``; every output batched on dimension 0, a
    per-token output cut at each example's token count (:mod:`tfbake.model_server.ragged`)."""
    if not outputs:
        raise errors.invalid_argument("Cannot convert empty tensor map to JSON")
    batch_size = -1
    for name, array in outputs.items():
        if array.ndim == 0:
            raise errors.invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch_size >= 0 and array.shape[0] != batch_size:
            raise errors.invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                f"expecting: {batch_size}"
            )
        batch_size = array.shape[0]
    columns = []
    cuts = token_counts(outputs)
    for name, array in outputs.items():
        if name in cuts:  # each example's own tokens
            columns.append((name, _cut_json(name, array, cuts[name])))
            continue
        tokens = value_tokens(name, array)
        inner = array.shape[1:]
        stride = int(np.prod(inner)) if inner else 1
        columns.append(
            (name, [_nest(tokens[i * stride:(i + 1) * stride], inner) for i in range(batch_size)])
        )
    if len(columns) == 1:
        rows = columns[0][1]
    else:
        keys = [_key(name) for name, _ in columns]
        rows = [
            "{" + ",".join(f"{k}:{col[i]}" for k, (_, col) in zip(keys, columns)) + "}"
            for i in range(batch_size)
        ]
    return ('{"predictions":[' + ",".join(rows) + "]}").encode()


def _cut_json(name: str, array: np.ndarray, counts: np.ndarray) -> list[str]:
    """A per-token output's rows as JSON lists, each cut at its example's token count."""
    return [_nest(value_tokens(name, row), row.shape) for row in cut_rows(array, counts)]


def outputs_json(outputs: dict[str, np.ndarray]) -> bytes:
    """Columnar format: ``{"outputs": value}`` or ``{"outputs": {name: value}}``; a
    per-token output is a list per example, cut at its token count."""
    if not outputs:
        raise errors.invalid_argument("Cannot convert empty tensor map to JSON")
    cuts = token_counts(outputs)
    values = {
        name: "[" + ",".join(_cut_json(name, a, cuts[name])) + "]" if name in cuts
        else _nest(value_tokens(name, a), a.shape)
        for name, a in outputs.items()
    }
    if len(values) == 1:
        body = next(iter(values.values()))
    else:
        body = "{" + ",".join(f"{_key(k)}:{v}" for k, v in values.items()) + "}"
    return ('{"outputs":' + body + "}").encode()


def classification_json(classes: np.ndarray | None, scores: np.ndarray | None) -> bytes:
    """``{"results": [[[label, score], ...], ...]}`` (label "" / score 0 when absent)."""
    reference = classes if classes is not None else scores
    n, k = reference.shape
    labels = (
        [_string_token(v) for v in classes.reshape(-1).tolist()]
        if classes is not None else ['""'] * (n * k)
    )
    score_tokens = _float_tokens(scores.reshape(-1)) if scores is not None else ["0.0"] * (n * k)
    rows = []
    for i in range(n):
        pairs = (f"[{labels[i * k + j]},{score_tokens[i * k + j]}]" for j in range(k))
        rows.append("[" + ",".join(pairs) + "]")
    return ('{"results":[' + ",".join(rows) + "]}").encode()


def regression_json(values: np.ndarray) -> bytes:
    """``{"results": [v, ...]}``."""
    return ('{"results":[' + ",".join(_float_tokens(values.reshape(-1))) + "]}").encode()


def error_json(message: str) -> bytes:
    """``{"error": message}``; text that is not valid Unicode (a lone surrogate from a
    URL or a name) is written escaped rather than failing the answer."""
    try:
        return orjson.dumps({"error": message})
    except TypeError:
        return orjson.dumps({"error": message.encode("utf-8", "backslashreplace").decode()})
