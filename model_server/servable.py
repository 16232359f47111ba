"""A loaded model version and its signatures, with all metadata precomputed.

A :class:`Servable` is what a :class:`~tfbake.model_server.manager.ServableHandle` points
at: immutable once loaded, so handlers read it without locks. Everything a request
needs to check its inputs (aliases, dtypes, shapes, method names) is resolved here
at load time; the request path does no introspection of TensorFlow objects.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from tfbake.model_server import errors
from tfbake.model_server.tensors import dtype_string


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
    """A callable SignatureDef: its metadata, run in the version's TensorFlow session.

    TF Serving runs a SignatureDef as ``Session::Run`` with its inputs' tensors fed
    and its outputs' tensors fetched; so does this class, through a session callable
    (TensorFlow prunes and optimizes the graph for that feed and fetch set once, on
    the first call: the warm-up request's cost).
    """

    def __init__(self, key: str, signature_def, session):
        for direction, infos in (("input", signature_def.inputs),
                                 ("output", signature_def.outputs)):
            for alias, info in infos.items():
                encoding = info.WhichOneof("encoding")
                if encoding != "name":
                    raise ValueError(
                        f"Signature {key!r}: {direction} {alias!r} is a {encoding} tensor; a "
                        "signature runs with plain tensors fed and fetched (as in TF "
                        "Serving), so its inputs and outputs must be dense tensors")
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
        self.has_defaults = bool(signature_def.defaults)
        self.debug_string = str(signature_def)
        self._session = session
        self._run = None  # the session callable, made by the first call
        self._make_lock = threading.Lock()
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
        """Runs the signature on arrays of its inputs' dtypes (strings as objects or
        bytes); TensorFlow errors become ServingErrors with their code."""
        start = time.perf_counter()
        try:
            args = [inputs[alias] for alias in self.inputs]
        except KeyError as e:
            raise errors.invalid_argument(f"input tensor alias not sent: {e.args[0]}") from None
        try:
            run = self._run or self._make_run()
            values = run(*args)
        except tf.errors.OpError as e:
            raise errors.from_tf_error(e, inputs) from None
        except (TypeError, ValueError) as e:
            raise errors.invalid_argument(str(e)) from None
        elapsed = time.perf_counter() - start
        mean = self.mean_call_s
        self.mean_call_s = elapsed if mean == float("inf") else 0.8 * mean + 0.2 * elapsed
        return dict(zip(self.outputs, values))

    def _make_run(self):
        with self._make_lock:
            if self._run is None:
                graph = self._session.graph
                feeds = [_tensor(graph, self.signature_def.inputs[a]) for a in self.inputs]
                fetches = [_tensor(graph, self.signature_def.outputs[a]) for a in self.outputs]
                self._run = self._session.make_callable(fetches, feed_list=feeds)
            return self._run


def _tensor(graph, info) -> tf.Tensor:
    try:
        return graph.get_tensor_by_name(info.name)
    except KeyError:
        raise ValueError(f"the signature names tensor {info.name}, which its graph "
                         "does not have") from None


@dataclasses.dataclass(eq=False)
class Servable:
    """One loaded version of one model."""

    name: str
    version: int
    path: str
    signatures: dict[str, Signature]
    signature_def_map: object  # tensorflow_serving.apis.get_model_metadata_pb2.SignatureDefMap
    # The tf.compat.v1.Session holding the version's graph and variables; it closes
    # when the last request holding this servable lets go of it.
    session: object = dataclasses.field(repr=False, default=None)
    # model_server.data_checks.FeatureChecks, when the export carries training statistics.
    data_checks: object = dataclasses.field(repr=False, default=None)

    def __repr__(self) -> str:
        return (
            f"Servable({self.name!r}, version={self.version}, "
            f"signatures={list(self.signatures)})"
        )
