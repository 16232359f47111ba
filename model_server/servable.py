"""A loaded model version and its signatures, with all metadata precomputed.

A :class:`Servable` is what a :class:`~model_server.manager.ServableHandle` points
at: immutable once loaded, so handlers read it without locks. Everything a request
needs to check its inputs (aliases, dtypes, shapes, method names) is resolved here
at load time; the request path does no introspection of TensorFlow objects.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context, record
from tensorflow.python.framework import ops

from model_server import errors
from model_server.tensors import dtype_string


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
        self._flat = _FlatCall.of(fn, self)
        # Running mean of the call's duration (inf until the first call finishes).
        self.mean_call_s = float("inf")
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
        start = time.perf_counter()
        try:
            flat = self._flat
            result = None
            if flat is not None and not record.could_possibly_record():
                result = flat(inputs)
            if result is not None:
                self._record(start)
                return result
            result = self._fn(**inputs)
        except tf.errors.OpError as e:
            raise errors.from_tf_error(e, inputs) from None
        except (TypeError, ValueError) as e:
            raise errors.invalid_argument(str(e)) from None
        outputs = {alias: tensor.numpy() for alias, tensor in result.items()}
        self._record(start)
        return outputs

    def _record(self, start: float) -> None:
        elapsed = time.perf_counter() - start
        mean = self.mean_call_s
        self.mean_call_s = elapsed if mean == float("inf") else 0.8 * mean + 0.2 * elapsed


class _FlatCall:
    """The signature's graph function called with flat tensors, captures resolved once.

    ``ConcreteFunction.__call__`` binds keyword arguments to the function type,
    casts each value through its TensorSpec and resolves every captured variable
    handle on each call (about 0.25 ms at batch 1, as much as a small model's
    kernels). A signature of plain dense tensors in and a dict of dense tensors
    out is called here through its inference function with the inputs in
    parameter order and the captured handles looked up at load; anything else
    (composite tensors, deferred or distributed captures) keeps the structured call.
    """

    __slots__ = ("_call", "_names", "_dtypes", "_np_dtypes", "_captured", "_keys", "_ctx")

    @classmethod
    def of(cls, fn, signature: Signature) -> _FlatCall | None:
        try:
            return cls(fn, signature)
        except Exception:  # noqa: BLE001 - any surprise: the structured call is used.
            return None

    def __init__(self, fn, signature: Signature):
        inference = fn._inference_function
        parameters = list(fn.function_type.parameters.values())
        names = [p.name for p in parameters]
        specs = [p.type_constraint for p in parameters]
        if set(names) != signature.input_names or len(names) != len(signature.inputs):
            raise ValueError("parameters differ from the SignatureDef inputs")
        if any(type(s) is not tf.TensorSpec for s in specs):
            raise ValueError("composite input")
        outputs = fn.structured_outputs
        if not isinstance(outputs, dict) or set(outputs) != set(signature.outputs):
            raise ValueError("outputs are not the SignatureDef's dict")
        if any(type(t) is not tf.TensorSpec and not isinstance(t, tf.Tensor)
               for t in outputs.values()):
            raise ValueError("composite output")
        keys = sorted(outputs)  # nest.flatten order of a dict
        flat_outputs = inference.function_type.flat_outputs
        if len(flat_outputs) != len(keys) or any(
                type(t) is not tf.TensorSpec for t in flat_outputs):
            raise ValueError("flat outputs differ")
        raw = fn._captured_inputs
        if any(callable(c) or not isinstance(c, ops.EagerTensor) for c in raw):
            raise ValueError("deferred or distributed captures")
        captured = list(fn.captured_inputs)
        if len(names) + len(captured) != len(inference.cached_definition.signature.input_arg):
            raise ValueError("argument count")
        self._call = inference.call_flat
        self._names = names
        self._dtypes = [s.dtype.as_datatype_enum for s in specs]
        self._np_dtypes = [np.dtype(object) if s.dtype == tf.string
                           else np.dtype(s.dtype.as_numpy_dtype) for s in specs]
        self._captured = captured
        self._keys = keys
        self._ctx = context.context()

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The outputs, or None when an input is not an array of the spec's dtype."""
        if len(inputs) != len(self._names) or not self._ctx.executing_eagerly():
            return None
        device = self._ctx.device_name
        args = []
        for name, dtype, np_dtype in zip(self._names, self._dtypes, self._np_dtypes):
            array = inputs.get(name)
            if type(array) is not np.ndarray or array.dtype != np_dtype:
                return None
            args.append(ops.EagerTensor(array, device, dtype))
        outputs = self._call(*args, *self._captured)
        return {key: tensor.numpy() for key, tensor in zip(self._keys, outputs)}


@dataclasses.dataclass(eq=False)
class Servable:
    """One loaded version of one model."""

    name: str
    version: int
    path: str
    signatures: dict[str, Signature]
    signature_def_map: object  # tensorflow_serving.apis.get_model_metadata_pb2.SignatureDefMap
    loaded: object = dataclasses.field(repr=False, default=None)  # keeps variables alive
    # model_server.data_checks.FeatureChecks, when the export carries training statistics.
    data_checks: object = dataclasses.field(repr=False, default=None)

    def __repr__(self) -> str:
        return (
            f"Servable({self.name!r}, version={self.version}, "
            f"signatures={list(self.signatures)})"
        )
