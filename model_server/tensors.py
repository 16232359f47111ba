"""Conversions between TensorProtos, tf.Example inputs and numpy arrays.

Shared by the gRPC adapter, the core and warm-up replay; the library does the work
(``tf.make_ndarray`` / ``tf.make_tensor_proto``), this module only adds TF Serving's
error messages.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from model_server import errors


def dtype_string(dtype_enum: int) -> str:
    """TensorFlow's DataTypeString: ``DT_FLOAT`` -> ``float``."""
    try:
        return types_pb2.DataType.Name(dtype_enum)[3:].lower()
    except ValueError:
        return f"unknown dtype {dtype_enum}"


def ndarray_from_proto(alias: str, proto) -> np.ndarray:
    """A request TensorProto as numpy; a malformed one is ``tensor parsing error``."""
    try:
        array = tf.make_ndarray(proto)
    except Exception:  # noqa: BLE001 - any malformed proto is the client's error.
        raise errors.invalid_argument(f"tensor parsing error: {alias}") from None
    if proto.dtype == types_pb2.DT_STRING and array.dtype != object:
        array = array.astype(object)
    return array


def tensor_proto(array: np.ndarray):
    """A response TensorProto for a numpy array (string arrays stay DT_STRING)."""
    return tf.make_tensor_proto(array)


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
