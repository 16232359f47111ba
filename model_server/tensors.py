"""Conversions between TensorProtos, tf.Example inputs and numpy arrays.

Shared by the gRPC adapter, the core, the request log and warm-up replay. Requests
are decoded by ``tf.make_ndarray``; answers are written in TF Serving's layout (typed
value fields, or ``tensor_content``), strings and numbers without
``tf.make_tensor_proto``'s per-call Python cost; this module adds TF Serving's error
messages.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from tfbake.model_server import errors

# Bytes per element of a decoded DT_STRING tensor (a reference to a bytes object).
_STRING_ELEMENT_BYTES = 8


def dtype_of(name: str) -> tf.dtypes.DType:
    """A signature's dtype as its metadata JSON names it (``DT_FLOAT``): the TensorFlow
    dtype; ``ValueError`` for a name that is none."""
    return tf.as_dtype(types_pb2.DataType.Value(name))


def dtype_string(dtype_enum: int) -> str:
    """TensorFlow's DataTypeString: ``DT_FLOAT`` -> ``float``."""
    try:
        return types_pb2.DataType.Name(dtype_enum)[3:].lower()
    except ValueError:
        return f"unknown dtype {dtype_enum}"


def check_tensor_size(alias: str, shape, dtype_enum: int, max_bytes: int | None) -> None:
    """INVALID_ARGUMENT naming the input when a tensor of ``shape`` would take more
    than ``max_bytes`` once decoded (a few bytes of TensorProto can ask for GiBs)."""
    if max_bytes is None or any(d < 0 for d in shape):
        return
    if dtype_enum == types_pb2.DT_STRING:
        itemsize = _STRING_ELEMENT_BYTES
    else:
        try:
            itemsize = tf.as_dtype(dtype_enum).size
        except (TypeError, ValueError):
            return  # decoding names the bad dtype
    size = math.prod(shape) * itemsize
    if size > max_bytes:
        raise errors.invalid_argument(
            f"Input tensor {alias} of shape [{','.join(map(str, shape))}] "
            f"({dtype_string(dtype_enum)}) would take {size} bytes, more than the limit "
            f"of {max_bytes} bytes (--max_request_tensor_bytes)"
        )


def ndarray_from_proto(alias: str, proto, max_bytes: int | None = None) -> np.ndarray:
    """A request TensorProto as numpy; a malformed one is ``tensor parsing error``,
    one larger than ``max_bytes`` decoded is refused before it is built."""
    check_tensor_size(alias, [d.size for d in proto.tensor_shape.dim], proto.dtype, max_bytes)
    try:
        array = tf.make_ndarray(proto)
    except Exception:  # noqa: BLE001 - any malformed proto is the client's error.
        raise errors.invalid_argument(f"tensor parsing error: {alias}") from None
    if proto.dtype == types_pb2.DT_STRING and array.dtype != object:
        array = array.astype(object)
    return array


# The TensorProto field of each dtype's values (tensor.proto; Tensor::AsProtoField);
# float16 values go in half_val as their bits.
_TYPED_FIELDS = {
    np.dtype(np.float32): "float_val", np.dtype(np.float64): "double_val",
    np.dtype(np.int32): "int_val", np.dtype(np.int16): "int_val", np.dtype(np.int8): "int_val",
    np.dtype(np.uint8): "int_val", np.dtype(np.uint16): "int_val",
    np.dtype(np.int64): "int64_val", np.dtype(np.uint32): "uint32_val",
    np.dtype(np.uint64): "uint64_val", np.dtype(np.bool_): "bool_val",
    np.dtype(np.float16): "half_val",
}


def tensor_proto(array: np.ndarray, tensor_content: bool = False):
    """A response TensorProto for a numpy array: values in the typed field
    (``float_val``...) as TF Serving writes them, or packed in ``tensor_content``
    (``--enable_serialization_as_tensor_content``). Strings stay DT_STRING."""
    field = _TYPED_FIELDS.get(array.dtype)
    if field is None:
        # Strings are built here rather than by tf.make_tensor_proto, which costs ~40 us
        # of Python per tensor (every gRPC answer and logged request has several).
        strings = _string_values(array)
        if strings is None:  # the rare dtypes TensorFlow's own encoder knows
            return tf.make_tensor_proto(array)
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING,
                                       tensor_shape=_shape_proto(array.shape))
        proto.string_val.extend(strings)
        return proto
    proto = tensor_pb2.TensorProto(dtype=_DTYPE_ENUMS[array.dtype],
                                   tensor_shape=_shape_proto(array.shape))
    if tensor_content:  # as Tensor::AsProtoTensorContent: the bytes in host order
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    else:
        flat = array.reshape(-1)
        getattr(proto, field).extend((flat.view(np.uint16) if field == "half_val" else flat)
                                     .tolist())
    return proto


def _string_values(array: np.ndarray) -> list[bytes] | None:
    """The values of a string array as bytes (str as UTF-8, as TensorFlow encodes it),
    or None when it holds anything else."""
    if array.dtype.kind not in "OSU":
        return None
    values = array.reshape(-1).tolist()
    if all(type(v) is bytes for v in values):
        return values
    if all(isinstance(v, (bytes, str)) for v in values):
        return [v.encode() if isinstance(v, str) else v for v in values]
    return None


def _shape_proto(shape: tuple[int, ...]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape])


_DTYPE_ENUMS = {dtype: tf.as_dtype(dtype).as_datatype_enum for dtype in _TYPED_FIELDS}


def serialized_examples(input_proto) -> np.ndarray:
    """An ``Input`` as the DT_STRING [N] tensor of serialized tf.Examples a graph parses.

    For ``ExampleListWithContext`` each example is serialized after the context;
    parsing the concatenation merges them with the example winning on a clash, as
    TF Serving's InputToSerializedExampleTensor does.
    """
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        serialized = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        lists = input_proto.example_list_with_context
        context = lists.context.SerializeToString()
        serialized = [context + e.SerializeToString() for e in lists.examples]
    else:
        serialized = []
    if not serialized:
        raise errors.invalid_argument("Input is empty.")
    array = np.empty(len(serialized), dtype=object)
    array[:] = serialized
    return array


def input_examples(input_proto) -> list[tf.train.Example]:
    """An ``Input``'s tf.Examples as the graph sees them: each merged with the context
    of an ``ExampleListWithContext`` (the example's own values win)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        return list(input_proto.example_list.examples)
    if kind != "example_list_with_context":
        return []
    lists = input_proto.example_list_with_context
    merged = []
    for example in lists.examples:
        one = tf.train.Example()
        one.CopyFrom(lists.context)
        one.MergeFrom(example)
        merged.append(one)
    return merged

