"""What an export promises its clients, read from its files: signatures as TF Serving's
metadata JSON, the raw feature contract and real example rows.

One reader for ``tfbake inspect`` (an export folder on disk) and the server's web
console (a loaded version's folder), so both show the same thing:

- signatures: TF Serving's metadata JSON (``signature_def`` map);
- raw features: the ``predict_raw`` signature's inputs (names, dtypes, shapes) merged
  with ``assets.extra/raw_feature_spec.json`` (type, shape, nullable and the optional
  annotations ``list`` and ``media``);
- example rows: the real eval examples of ``assets.extra/tf_serving_warmup_requests``,
  and the input tensors of its PredictRequests (for signatures that take tensors).
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tfbake.model_server import request_samples
from tfbake.model_server.request_samples import tensor_shape
from tfbake.model_server.tensors import dtype_of
from tfbake.serving_input import signatures as sig
from tfbake.serving_input.export_layout import WARMUP_FILE
from tfbake.serving_input.feature_spec import (
    feature_lists_of,
    read_raw_feature_spec,
    spec_of_contract,
)
from tfbake.serving_input.sequence_example import example_of_record


@dataclasses.dataclass
class RawFeature:
    """One raw feature of the serving contract.

    Attributes:
      name, type (``float``/``int``/``string``), shape (per example; ``[]`` a scalar).
      nullable: may be absent from an example; None when the source cannot tell.
      example: a real value from the warm-up examples (or a placeholder).
      annotations: the contract's extra keys (``list: true``, ``media: "image"``).
    """

    name: str
    type: str
    shape: list[int]
    nullable: bool | None
    example: Any = None
    annotations: dict = dataclasses.field(default_factory=dict)


def dtype_name(dtype: str) -> str:
    """``DT_FLOAT`` -> ``float32``."""
    try:
        return dtype_of(dtype).name
    except (ValueError, TypeError):
        return dtype


def signature_summary(signature_def: Mapping) -> dict:
    """Method name and inputs/outputs (dtype, shape) of one metadata signature def."""

    def tensors(infos):
        return {n: {"dtype": dtype_name(i["dtype"]), "shape": tensor_shape(i)}
                for n, i in sorted(infos.items())}

    return {
        "method_name": signature_def.get("method_name", ""),
        "inputs": tensors(signature_def.get("inputs", {})),
        "outputs": tensors(signature_def.get("outputs", {})),
    }


def _warmup_logs(export_dir: str):
    """The PredictionLogs of the export's warm-up file (none without one)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return
    for record in tf.data.TFRecordDataset(path):
        yield prediction_log_pb2.PredictionLog.FromString(record.numpy())


def read_warmup_examples(export_dir: str, limit: int = 100) -> list[tf.train.Example]:
    """The tf.Examples of the export's warm-up requests (classify, regress, predict logs);
    a SequenceExample (the contract has feature_lists) as the tf.Example it stands for."""
    contract = read_raw_feature_spec(export_dir) or {}
    spec, _ = spec_of_contract(contract)
    feature_lists = feature_lists_of(contract)
    examples: list[tf.train.Example] = []
    for log in _warmup_logs(export_dir):
        kind = log.WhichOneof("log_type")
        if kind in ("classify_log", "regress_log"):
            examples += list(getattr(log, kind).request.input.example_list.examples)
        elif kind == "predict_log":
            for tensor in log.predict_log.request.inputs.values():
                if tensor.dtype == types_pb2.DT_STRING:
                    examples += [example_of_record(s, spec, feature_lists)
                                 for s in tensor.string_val]
        if len(examples) >= limit:
            break
    return examples[:limit]


def _jsonable_bytes(value: Any) -> Any:
    """Text as str, other bytes as TF Serving's ``{"b64": ...}``, in nested lists."""
    if isinstance(value, list):
        return [_jsonable_bytes(v) for v in value]
    return _python_value(value, "bytes_list") if isinstance(value, bytes) else value


def warmup_tensor_rows(export_dir: str, signature_defs: Mapping,
                       limit: int = 20) -> dict[str, list[dict]]:
    """Rows of input tensors (input name -> one instance's value) per signature, from
    the warm-up file's PredictRequests to signatures that take tensors."""
    from tfbake.model_server.tensors import ndarray_from_proto

    rows: dict[str, list[dict]] = {}
    for log in _warmup_logs(export_dir):
        if log.WhichOneof("log_type") != "predict_log":
            continue
        request = log.predict_log.request
        name = request.model_spec.signature_name or sig.DEFAULT_SERVING
        signature_def = signature_defs.get(name)
        if signature_def is None or request_samples.takes_feature_rows(name, signature_def) \
                or set(request.inputs) != set(signature_def.get("inputs", {})):
            continue
        try:
            arrays = {a: ndarray_from_proto(a, t).tolist() for a, t in request.inputs.items()}
        except Exception:  # noqa: BLE001 - a warm-up request the server would refuse too
            continue
        if request_samples.batched(signature_def):
            count = min(len(v) for v in arrays.values())
            found = [{a: _jsonable_bytes(v[i]) for a, v in arrays.items()} for i in range(count)]
        else:
            found = [{a: _jsonable_bytes(v) for a, v in arrays.items()}]
        rows.setdefault(name, []).extend(found)
    return {name: found[:limit] for name, found in rows.items()}


def _python_value(value: Any, kind: str) -> Any:
    if kind == "bytes_list":
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:  # an encoded image: TF Serving's JSON form of bytes
            return {"b64": base64.b64encode(value).decode("ascii")}
    if kind == "float_list":
        return float(str(np.float32(value)))  # 39.1, not 39.099998474121094
    return int(value)


def example_to_row(example: tf.train.Example, scalars: Sequence[str] = ()) -> dict:
    """A tf.Example as a plain row; ``scalars`` are features given as one value."""
    row = {}
    for name, feature in sorted(example.features.feature.items()):
        kind = feature.WhichOneof("kind")
        if kind is None:
            continue
        values = [_python_value(v, kind) for v in getattr(feature, kind).value]
        if not values:
            continue
        row[name] = values[0] if name in scalars and len(values) == 1 else values
    return row


def raw_features(signature_defs: Mapping, contract: Mapping | None) -> list[RawFeature]:
    """The raw features, in the contract's order, from the ``predict_raw`` signature's
    inputs and the contract (either may be missing)."""
    raw = signature_defs.get(sig.PREDICT_RAW)
    features: dict[str, RawFeature] = {}
    if raw:
        # A nullable or list feature comes with its count, which is no feature.
        spec, lists = request_samples.raw_spec_of_inputs(raw["inputs"])
        for name, feature_spec in spec.items():
            shape = tensor_shape(raw["inputs"][name])
            features[name] = RawFeature(
                name,
                request_samples.feature_type_name(raw["inputs"][name]["dtype"]),
                shape[1:] if shape else [],
                isinstance(feature_spec, tf.io.VarLenFeature),
                annotations={"list": True} if name in lists else {},
            )
    for name, entry in (contract or {}).items():
        feature = features.setdefault(
            name, RawFeature(name, entry["type"], entry.get("shape") or [], None)
        )
        feature.nullable = bool(entry["nullable"])
        feature.type = entry["type"]
        feature.annotations = {k: v for k, v in entry.items()
                               if k not in ("type", "shape", "nullable")}
    # The contract keeps the config's order; a signature's inputs are an unordered map.
    order = list(contract or {})
    return sorted(features.values(),
                  key=lambda f: (order.index(f.name) if f.name in order else len(order), f.name))


def example_rows(export_dir: str, signature_defs: Mapping, contract: Mapping | None,
                 limit: int = 100) -> list[dict]:
    """The warm-up examples as rows: a feature the contract gives as a scalar is one
    value, any other a list."""
    scalars = [n for n, e in (contract or {}).items()
               if e.get("shape") in ([], None) and not e.get("list")]
    if contract is None:  # without the contract, a one-value list reads as a scalar
        scalars = list(request_samples.feature_dtypes(signature_defs))
    return [example_to_row(e, scalars) for e in read_warmup_examples(export_dir, limit)]


def choose_rows(rows: list[dict], names: Sequence[str], count: int) -> list[dict]:
    """Rows with every feature present first (a sample that shows every feature), then
    the rest, in order."""
    complete = [r for r in rows if all(n in r for n in names)]
    rest = [r for r in rows if not all(n in r for n in names)]
    return (complete + rest)[:count]
