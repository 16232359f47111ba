"""``tfbake inspect``: what an export (or a served model) takes and answers, for people.

Like ``saved_model_cli show``, plus what it leaves out: the raw feature contract
(name, type, shape, nullable, an example value), and request samples generated from
the signatures (:mod:`model_server.request_samples`) that run as printed.

Where each part comes from, so nothing is restated:

- signatures: ``saved_model.pb`` (an export folder) or ``GetModelMetadata`` (a URL),
  in both cases as TF Serving's metadata JSON;
- raw features: the ``predict_raw`` signature's inputs (names, dtypes, shapes) and,
  for an export folder, ``assets.extra/raw_feature_spec.json`` (nullability);
- example values: the real eval examples of ``assets.extra/tf_serving_warmup_requests``
  (a URL has no access to them: typed placeholders are used and said so).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from model_server import request_samples
from serving_input import signatures as sig

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
RAW_FEATURE_SPEC_FILE = os.path.join("assets.extra", "raw_feature_spec.json")
_PLACEHOLDERS = {"float": 0.0, "int": 0, "string": ""}


@dataclasses.dataclass
class RawFeature:
    """One raw feature of the serving contract.

    Attributes:
      name, type (``float``/``int``/``string``), shape (per example; ``[]`` a scalar).
      nullable: may be absent from an example; None when the source cannot tell.
      example: a real value from the warm-up examples (or a placeholder).
    """

    name: str
    type: str
    shape: list[int]
    nullable: bool | None
    example: Any = None


@dataclasses.dataclass
class ModelDescription:
    """What :func:`inspect` found; ``to_dict`` is the ``--format json`` output."""

    source: str
    model_name: str
    version: str | None
    signature_defs: dict[str, dict]
    raw_features: list[RawFeature]
    example_rows: list[dict]
    examples_from: str
    samples: list[request_samples.RequestSample]

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "model_name": self.model_name,
            "version": self.version,
            "signatures": {name: _signature_summary(d) for name, d in self.signature_defs.items()},
            "raw_features": [dataclasses.asdict(f) for f in self.raw_features],
            "example_rows": self.example_rows,
            "examples_from": self.examples_from,
            "samples": [s.to_dict() for s in self.samples],
        }


# ---------------------------------------------------------------------- reading


def _dtype_name(dtype: str) -> str:
    """``DT_FLOAT`` -> ``float32``."""
    try:
        return tf.dtypes.as_dtype(types_pb2.DataType.Value(dtype)).name
    except (ValueError, TypeError):
        return dtype


def _shape(info: Mapping) -> list[int] | None:
    shape = info.get("tensor_shape", {})
    if shape.get("unknown_rank"):
        return None
    return [int(d.get("size", -1)) for d in shape.get("dim", [])]


def _signature_summary(signature_def: Mapping) -> dict:
    def tensors(infos):
        return {n: {"dtype": _dtype_name(i["dtype"]), "shape": _shape(i)}
                for n, i in sorted(infos.items())}

    return {
        "method_name": signature_def.get("method_name", ""),
        "inputs": tensors(signature_def.get("inputs", {})),
        "outputs": tensors(signature_def.get("outputs", {})),
    }


def resolve_export_dir(path: str) -> str:
    """A version folder as is; an export base: its highest integer-named version."""
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = [int(n.strip("/")) for n in tf.io.gfile.listdir(path) if n.strip("/").isdigit()] \
        if tf.io.gfile.isdir(path) else []
    if not versions:
        raise FileNotFoundError(
            f"{path}: expected a SavedModel folder (with saved_model.pb) or an export base "
            "with integer-named version folders"
        )
    return os.path.join(path, str(max(versions)))


def read_signature_defs(export_dir: str) -> dict[str, dict]:
    """The export's signature defs (tag ``serve``) as TF Serving's metadata JSON."""
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {
                name: json_format.MessageToDict(
                    signature_def, preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True)
                for name, signature_def in meta_graph.signature_def.items()
                if not name.startswith("__")  # __saved_model_init_op: not callable
            }
    raise ValueError(f"{export_dir}: no meta graph tagged 'serve'")


def read_warmup_examples(export_dir: str, limit: int = 100) -> list[tf.train.Example]:
    """The tf.Examples of the export's warm-up requests (classify, regress, predict logs)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    examples: list[tf.train.Example] = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        kind = log.WhichOneof("log_type")
        if kind in ("classify_log", "regress_log"):
            examples += list(getattr(log, kind).request.input.example_list.examples)
        elif kind == "predict_log":
            for tensor in log.predict_log.request.inputs.values():
                if tensor.dtype == types_pb2.DT_STRING:
                    examples += [tf.train.Example.FromString(s) for s in tensor.string_val]
        if len(examples) >= limit:
            break
    return examples[:limit]


def _python_value(value: Any, kind: str) -> Any:
    if kind == "bytes_list":
        return value.decode("utf-8", "replace")
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


def _raw_features(signature_defs: Mapping, contract: Mapping | None) -> list[RawFeature]:
    raw = signature_defs.get(sig.PREDICT_RAW)
    features: dict[str, RawFeature] = {}
    if raw:
        for name, info in raw["inputs"].items():
            shape = _shape(info)
            features[name] = RawFeature(
                name,
                request_samples.feature_type_name(info["dtype"]),
                shape[1:] if shape else [],
                None,
            )
    for name, entry in (contract or {}).items():
        feature = features.setdefault(
            name, RawFeature(name, entry["type"], entry.get("shape") or [], None)
        )
        feature.nullable = bool(entry["nullable"])
        feature.type = entry["type"]
    # The contract keeps the config's order; a signature's inputs are an unordered map.
    order = list(contract or {})
    return sorted(features.values(),
                  key=lambda f: (order.index(f.name) if f.name in order else len(order), f.name))


def _choose_rows(rows: list[dict], names: Sequence[str], count: int) -> list[dict]:
    """Rows with every feature present first (a predict_raw request has no marker for
    a missing int), then the rest, in order."""
    complete = [r for r in rows if all(n in r for n in names)]
    rest = [r for r in rows if not all(n in r for n in names)]
    return (complete + rest)[:count]


def _model_name_of(export_dir: str) -> str:
    """``artifacts/penguins/export/123`` -> ``penguins``; ``models/m/123`` -> ``m``."""
    base = os.path.dirname(os.path.abspath(export_dir))
    if os.path.basename(base) == "export":
        return os.path.basename(os.path.dirname(base))
    return os.path.basename(base)


def inspect(
    target: str,
    *,
    model_name: str | None = None,
    version: int | None = None,
    rest_url: str | None = None,
    grpc_target: str | None = None,
    examples: int = 1,
) -> ModelDescription:
    """Describes an export folder (or base) or a model on a live server.

    Args:
      target: an export version folder, an export base, ``http://host:port`` (REST) or
        ``grpc://host:port`` (a server; ``--model`` names the model).
      model_name: the model's name on the server; for a folder, default the config
        name it was exported under (``artifacts/<name>/export/<version>``).
      version: a server's model version (default: the latest it serves).
      rest_url, grpc_target: where the samples send requests; default the server's
        address, else ``http://localhost:8501`` and ``localhost:8500``.
      examples: example rows per sample.
    """
    if target.startswith(("http://", "https://", "grpc://")):
        from model_server import Client

        if not model_name:
            raise ValueError(f"{target} is a server: name the model (--model NAME)")
        with Client(target) as client:
            metadata = client.metadata(model_name, version)
        signature_defs = {
            name: d for name, d in metadata["metadata"]["signature_def"]["signature_def"].items()
            if not name.startswith("__")
        }
        served_version = metadata.get("model_spec", {}).get("version")
        contract, rows, source = None, [], target
        host = target.split("://", 1)[1].rstrip("/")
        if target.startswith("grpc://"):
            grpc_target = grpc_target or host
        else:
            rest_url = rest_url or target.rstrip("/")
    else:
        export_dir = resolve_export_dir(target)
        signature_defs = read_signature_defs(export_dir)
        served_version = os.path.basename(os.path.normpath(export_dir))
        model_name = model_name or _model_name_of(export_dir)
        contract_path = os.path.join(export_dir, RAW_FEATURE_SPEC_FILE)
        contract = None
        if tf.io.gfile.exists(contract_path):
            with tf.io.gfile.GFile(contract_path) as f:
                contract = json.load(f)
        scalars = [n for n, e in (contract or {}).items() if e.get("shape") in ([], None)]
        if contract is None:  # without the contract, a one-value list reads as a scalar
            scalars = list(request_samples.feature_dtypes(signature_defs))
        rows = [example_to_row(e, scalars) for e in read_warmup_examples(export_dir)]
        source = export_dir
    features = _raw_features(signature_defs, contract)
    names = [f.name for f in features]
    for feature in features:
        feature.example = next((r[feature.name] for r in rows if feature.name in r), None)
    if rows:
        example_rows = _choose_rows(rows, names, examples)
        examples_from = f"{WARMUP_FILE} (real eval examples)"
    else:
        example_rows = [{f.name: _PLACEHOLDERS.get(f.type, "") for f in features}][:examples]
        examples_from = "placeholders typed by the predict_raw signature (no warm-up examples)"
    samples = []
    if example_rows and example_rows[0]:
        samples = request_samples.request_samples(
            signature_defs, example_rows, model_name=model_name,
            rest_url=rest_url or "http://localhost:8501",
            grpc_target=grpc_target or "localhost:8500",
        )
    return ModelDescription(source, model_name, served_version, signature_defs, features,
                            example_rows, examples_from, samples)


# ---------------------------------------------------------------------- printing


def _shape_text(shape: list[int] | None) -> str:
    return "unknown rank" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def format_text(description: ModelDescription) -> str:
    """The description for people: signatures, raw features, then the samples."""
    d = description
    lines = [f"model {d.model_name}, version {d.version}  ({d.source})", "", "signatures:"]
    ordered = sorted(d.signature_defs, key=lambda n: (n != sig.DEFAULT_SERVING, n))
    for name in ordered:
        summary = _signature_summary(d.signature_defs[name])
        lines.append(f"  {name}  [{summary['method_name']}]")
        rows = []
        for role in ("inputs", "outputs"):
            for i, (tensor, info) in enumerate(summary[role].items()):
                rows.append(["  " + (role[:-1] if i == 0 else ""), tensor, info["dtype"],
                             _shape_text(info["shape"])])
        lines += _table(rows, "  ") if rows else []
    lines += ["", "raw features (what a tf.Example or a predict_raw request carries):"]
    rows = [["name", "type", "shape", "nullable", "example"]]
    for f in d.raw_features:
        nullable = "unknown" if f.nullable is None else ("yes" if f.nullable else "no")
        rows.append([f.name, f.type, _shape_text(f.shape), nullable, json.dumps(f.example)])
    lines += _table(rows)
    if d.samples:
        lines += ["", f"request samples (example rows from {d.examples_from}):"]
        for s in d.samples:
            lines += ["", s.text.rstrip()]
    return "\n".join(lines)


def format_json(description: ModelDescription) -> str:
    """The description as JSON, for tools."""
    return json.dumps(description.to_dict(), indent=2)


def serving_docs(target: str, model_name: str | None = None) -> str:
    """``--serving-docs``: TF Serving commands filled in for this export (tfbake.serving_docs)."""
    from tfbake import serving_docs as docs

    export_dir = os.path.abspath(resolve_export_dir(target))
    return docs.render(os.path.dirname(export_dir), model_name or _model_name_of(export_dir),
                       os.path.basename(export_dir))
