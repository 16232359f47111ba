"""A loaded model version and its signatures, with all metadata precomputed.

A :class:`Servable` is what a :class:`~model_server.manager.ServableHandle` points
at: immutable once loaded, so handlers read it without locks. Everything a request
needs to check its inputs (aliases, dtypes, shapes, method names) is resolved here
at load time; the request path does no introspection of TensorFlow objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import grpc
import numpy as np
import tensorflow as tf

from model_server import errors
from model_server.tensors import dtype_string

_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature."""

    alias: str
    dtype_enum: int
    dtype: tf.dtypes.DType
    shape: tf.TensorShape

    @property
    def type_name(self) -> str:
        """DataTypeString of the dtype (``float``, ``string``)."""
        return dtype_string(self.dtype_enum)

    @property
    def np_dtype(self):
        """The numpy dtype a request value is converted to (object for strings)."""
        return object if self.dtype == tf.string else self.dtype.as_numpy_dtype

    @classmethod
    def from_proto(cls, alias: str, info) -> TensorInfo:
        """From a SignatureDef's TensorInfo."""
        shape = tf.TensorShape(info.tensor_shape)
        return cls(alias, info.dtype, tf.as_dtype(info.dtype), shape)


class Signature:
    """A callable SignatureDef: its metadata and the loaded concrete function."""

    def __init__(self, key: str, signature_def, fn):
        self.key = key
        self.signature_def = signature_def
        self.method_name = signature_def.method_name
        self.inputs: dict[str, TensorInfo] = {
            alias: TensorInfo.from_proto(alias, info)
            for alias, info in sorted(signature_def.inputs.items())
        }
        self.outputs: dict[str, TensorInfo] = {
            alias: TensorInfo.from_proto(alias, info)
            for alias, info in sorted(signature_def.outputs.items())
        }
        self.input_names = frozenset(self.inputs)
        self.input_index = {alias: i for i, alias in enumerate(self.inputs)}
        self.has_defaults = bool(signature_def.defaults)
        self.debug_string = str(signature_def)
        self._fn = fn
        # Requests can be merged along dimension 0 only when every input and output
        # has an unknown leading (batch) dimension.
        self.batchable = all(
            t.shape.rank and t.shape[0] is None
            for t in (*self.inputs.values(), *self.outputs.values())
        )

    def __repr__(self) -> str:
        return (
            f"Signature({self.key!r}, method={self.method_name!r}, "
            f"inputs={list(self.inputs)}, outputs={list(self.outputs)})"
        )

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the signature; TensorFlow errors become ServingErrors with their code."""
        try:
            result = self._fn(**inputs)
        except tf.errors.OpError as e:
            raise errors.ServingError(
                _GRPC_CODES.get(e.error_code, grpc.StatusCode.UNKNOWN), e.message
            ) from None
        except (TypeError, ValueError) as e:
            raise errors.invalid_argument(str(e)) from None
        return {alias: tensor.numpy() for alias, tensor in result.items()}


@dataclasses.dataclass(eq=False)
class Servable:
    """One loaded version of one model."""

    name: str
    version: int
    path: str
    signatures: dict[str, Signature]
    signature_def_map: object  # tensorflow_serving.apis.get_model_metadata_pb2.SignatureDefMap
    loaded: object = dataclasses.field(repr=False, default=None)  # keeps variables alive

    def __repr__(self) -> str:
        return (
            f"Servable({self.name!r}, version={self.version}, "
            f"signatures={list(self.signatures)})"
        )
