"""``tfbake inspect``: what an export (or a served model) takes and answers, for people.

Like ``saved_model_cli show``, plus what it leaves out: the raw feature contract
(name, type, shape, nullable, an example value), and request samples generated from
the signatures (:mod:`tfbake.model_server.request_samples`) that run as printed.

Where each part comes from, so nothing is restated: :mod:`tfbake.model_server.export_contract`
(the reader the server's web console uses too): signatures from ``saved_model.pb`` (an
export folder) or ``GetModelMetadata`` (a URL), in both cases as TF Serving's metadata
JSON; raw features from the ``predict_raw`` signature and, for an export folder,
``assets.extra/raw_feature_spec.json``; example values from the real eval examples of
``assets.extra/tf_serving_warmup_requests`` (a URL has no access to them: typed
placeholders are used and said so).
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf
from google.protobuf import json_format

from tfbake.model_server import request_samples
from tfbake.model_server.export_contract import (
    RawFeature,
    choose_rows,
    example_rows,
    raw_features,
    signature_summary,
    warmup_tensor_rows,
)
from tfbake.serving_input import export_layout
from tfbake.serving_input import signatures as sig
from tfbake.serving_input.export_layout import WARMUP_FILE
from tfbake.serving_input.feature_spec import feature_lists_of, read_raw_feature_spec

_PLACEHOLDERS = {"float": 0.0, "int": 0, "string": ""}


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
    # Signature -> the rows of input tensors its samples send (signatures that take
    # tensors rather than raw features).
    example_inputs: dict[str, list[dict]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "model_name": self.model_name,
            "version": self.version,
            "signatures": {name: signature_summary(d) for name, d in self.signature_defs.items()},
            "raw_features": [dataclasses.asdict(f) for f in self.raw_features],
            "example_rows": self.example_rows,
            "examples_from": self.examples_from,
            "example_inputs": request_samples.jsonable(self.example_inputs),
            "samples": [s.to_dict() for s in self.samples],
        }


# ---------------------------------------------------------------------- reading


def resolve_export_dir(path: str) -> str:
    """A version folder as is; an export base: its highest integer-named version."""
    if any(tf.io.gfile.exists(os.path.join(path, f)) for f in export_layout.SAVED_MODEL_FILES):
        return path
    latest = export_layout.latest_version_dir(path)
    if latest is None:
        raise FileNotFoundError(
            f"{path}: expected a SavedModel folder (with saved_model.pb) or an export base "
            "with integer-named version folders"
        )
    return latest


def read_signature_defs(export_dir: str) -> dict[str, dict]:
    """The export's signature defs (tag ``serve``, as TF Serving loads it) as TF
    Serving's metadata JSON."""
    return {
        name: json_format.MessageToDict(
            signature_def, preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True)
        for name, signature_def in export_layout.callable_signatures(
            export_layout.read_signature_defs(export_dir)).items()
    }


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
        from tfbake.model_server import Client

        if not model_name:
            raise ValueError(f"{target} is a server: name the model (--model NAME)")
        with Client(target) as client:
            metadata = client.metadata(model_name, version)
        signature_defs = export_layout.callable_signatures(
            metadata["metadata"]["signature_def"]["signature_def"])
        served_version = metadata.get("model_spec", {}).get("version")
        contract, rows, tensor_rows, source = None, [], {}, target
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
        contract = read_raw_feature_spec(export_dir)
        rows = example_rows(export_dir, signature_defs, contract)
        tensor_rows = warmup_tensor_rows(export_dir, signature_defs)
        source = export_dir
    features = raw_features(signature_defs, contract)
    names = [f.name for f in features]
    for feature in features:
        feature.example = next((r[feature.name] for r in rows if feature.name in r), None)
    if rows:
        chosen = choose_rows(rows, names, examples)
        examples_from = f"{WARMUP_FILE} (real eval examples)"
    elif features:
        chosen = [{f.name: _PLACEHOLDERS.get(f.type, "") for f in features}][:examples]
        examples_from = "placeholders typed by the predict_raw signature (no warm-up examples)"
    else:
        chosen = []
        examples_from = ("each signature's input tensors: its warm-up requests, else "
                         "placeholders by dtype and shape (no raw feature contract)")
    inputs = {
        name: tensor_rows.get(name, [])[:examples] or [request_samples.placeholder_row(d)]
        for name, d in signature_defs.items()
        if request_samples.signature_kind(d) == "tensors"
        and not request_samples.takes_feature_rows(name, d)
    }
    samples = request_samples.request_samples(
        signature_defs, chosen, model_name=model_name,
        rest_url=rest_url or "http://localhost:8501",
        grpc_target=grpc_target or "localhost:8500", tensor_rows=inputs,
        feature_lists=feature_lists_of(contract),
    )
    return ModelDescription(source, model_name, served_version, signature_defs, features,
                            chosen, examples_from, samples, inputs)


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
        summary = signature_summary(d.signature_defs[name])
        lines.append(f"  {name}  [{summary['method_name']}]")
        rows = []
        for role in ("inputs", "outputs"):
            for i, (tensor, info) in enumerate(summary[role].items()):
                rows.append(["  " + (role[:-1] if i == 0 else ""), tensor, info["dtype"],
                             _shape_text(info["shape"])])
        lines += _table(rows, "  ") if rows else []
    if d.raw_features:
        lines += ["", "raw features (what a tf.Example or a predict_raw request carries):"]
        rows = [["name", "type", "shape", "nullable", "example"]]
        for f in d.raw_features:
            nullable = "unknown" if f.nullable is None else ("yes" if f.nullable else "no")
            rows.append([f.name, f.type, _shape_text(f.shape), nullable, json.dumps(f.example)])
        lines += _table(rows)
    for name in ordered:
        reason = request_samples.uncallable_reason(d.signature_defs[name])
        if reason:
            lines += ["", f"no sample for {name}: {reason}"]
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
