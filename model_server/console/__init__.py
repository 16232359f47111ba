"""The web console: a page on the REST port to browse models and try requests.

``/`` serves the page (``static/``: plain HTML, CSS and JavaScript shipped in the
package, no build step, nothing fetched from the network). The page reads a small JSON
API under ``/console/api/`` and sends its requests to the real ``/v1/models/...`` API:

- ``GET /console/api/models``: every model with its versions' states and labels;
- ``GET /console/api/models/{name}/versions/{version}``: signatures (each with how its
  form is built), the raw feature contract and real example rows of that version
  (:mod:`tfbake.model_server.export_contract`);
- ``POST /console/api/models/{name}/versions/{version}/request`` with
  ``{"signature_name": ..., "rows": [...]}``: the REST path and JSON body calling that
  signature with those rows (raw feature rows, or rows of the signature's input
  tensors: see each signature's ``form``), and the client code sending the same
  request (:mod:`tfbake.model_server.request_samples`, the generator ``tfbake inspect`` prints).

The routes are added beside the REST API's; nothing runs on the ``/v1/`` request path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from aiohttp import web
from google.protobuf import json_format

from tfbake.model_server import errors, export_contract, request_samples
from tfbake.model_server.core import ModelSpec, ServerCore
from tfbake.model_server.http_server import read_body
from tfbake.model_server.servable import Servable
from tfbake.serving_input import signatures as sig
from tfbake.serving_input.export_layout import callable_signatures
from tfbake.serving_input.feature_spec import feature_lists_of, read_raw_feature_spec

STATIC_DIR = Path(__file__).parent / "static"
API = "/console/api"
_VERSION_PATH = API + "/models/{name}/versions/{version}"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Console:
    """The console's routes over one :class:`ServerCore`.

    Args:
      core: the server's request-handling core (models, states, servables).
      grpc_target: ``host:port`` of the server's gRPC API, for the gRPC client code.
    """

    def __init__(self, core: ServerCore, *, grpc_target: str, body_timeout_ms: int = 60000):
        self.core = core
        self.grpc_target = grpc_target
        self.body_timeout_s = body_timeout_ms / 1000 if body_timeout_ms > 0 else None
        # (name, version, path) -> description; a loaded version never changes.
        self._descriptions: dict[tuple, dict] = {}

    def add_routes(self, app: web.Application) -> None:
        """Adds the page, its assets and its JSON API to ``app``."""
        app.router.add_get("/", self._index)
        app.router.add_static("/console/static", STATIC_DIR)
        app.router.add_get(API + "/models", self._models)
        app.router.add_get(_VERSION_PATH, self._version)
        app.router.add_post(_VERSION_PATH + "/request", self._request)

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def _models(self, request: web.Request) -> web.Response:
        manager = self.core.manager
        models = []
        for name in manager.model_names():
            versions = [
                {"version": version, "state": state.state, "error_code": state.error_code,
                 "error_message": state.error_message}
                for version, state in manager.version_states(name).items()
            ]
            models.append({"name": name, "versions": versions,
                           "labels": manager.version_labels(name)})
        return web.json_response({"models": models})

    def _servable(self, request: web.Request) -> Servable:
        version = request.match_info["version"]
        if not version.isdigit():
            raise errors.invalid_argument(f"Failed to convert version: {version} to numeric.")
        return self.core.servable(ModelSpec(request.match_info["name"], int(version)))

    async def _version(self, request: web.Request) -> web.Response:
        try:
            servable = self._servable(request)
        except errors.ServingError as e:
            return _error(e.http_status, e.message)
        description = await self._description(servable)
        return web.json_response({key: description[key] for key in (
            "model_name", "version", "signatures", "default_signature", "raw_features",
            "contract", "feature_lists", "example_rows")})

    async def _description(self, servable: Servable) -> dict:
        key = (servable.name, servable.version, servable.path)
        if key not in self._descriptions:
            # Reads files (the warm-up examples through tf.data): off the event loop.
            self._descriptions[key] = await asyncio.get_running_loop().run_in_executor(
                None, _describe, servable)
        return self._descriptions[key]

    async def _request(self, request: web.Request) -> web.Response:
        try:
            servable = self._servable(request)
        except errors.ServingError as e:
            return _error(e.http_status, e.message)
        try:
            body = await read_body(request, self.body_timeout_s)
        except TimeoutError:
            return _error(408, "Request body not received in time")
        try:
            doc = json.loads(body)
            signature_name, rows = doc["signature_name"], doc["rows"]
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _error(400, 'Expected a JSON object with "signature_name" and "rows" '
                               "(a list of objects: feature name -> value)")
        description = await self._description(servable)
        signature_defs = description["signature_defs"]
        if signature_name not in signature_defs:
            return _error(400, f"Model {servable.name} has no signature {signature_name!r}; "
                               f"it has {sorted(signature_defs)}")
        signature_def = signature_defs[signature_name]
        feature_lists = description["feature_lists"]
        api = request_samples.api_of(signature_def, feature_lists)
        feature_rows = request_samples.takes_feature_rows(signature_name, signature_def)
        try:
            body = request_samples.request_body(
                signature_name, signature_def, rows,
                request_samples.feature_dtypes(signature_defs), feature_lists)
            samples = request_samples.request_samples(
                signature_defs, rows if feature_rows else [], model_name=servable.name,
                version=servable.version, rest_url=str(request.url.origin()),
                grpc_target=self.grpc_target, signatures=[signature_name],
                tensor_rows=None if feature_rows else {signature_name: rows},
                feature_lists=feature_lists)
        except ValueError as e:
            return _error(400, str(e))
        return web.json_response({
            "api": api,
            "path": request_samples.rest_path(servable.name, api, servable.version),
            # As text: the body may hold NaN (a missing float), which JSON.parse refuses.
            "body": json.dumps(body, indent=2, ensure_ascii=False),
            "samples": [s.to_dict() for s in samples],
        })


def _describe(servable: Servable) -> dict:
    """What the page shows of one loaded version (and what its requests are built from)."""
    signature_defs = callable_signatures(json_format.MessageToDict(
        servable.signature_def_map, preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    ).get("signature_def", {}))
    contract = read_raw_feature_spec(servable.path)
    rows = export_contract.example_rows(servable.path, signature_defs, contract, limit=20)
    features = export_contract.raw_features(signature_defs, contract)
    for feature in features:
        feature.example = next((r[feature.name] for r in rows if feature.name in r), None)
    tensor_rows = export_contract.warmup_tensor_rows(servable.path, signature_defs, limit=1)
    feature_lists = feature_lists_of(contract)
    signatures = {name: _signature_form(name, d, bool(features or rows), tensor_rows.get(name),
                                        feature_lists)
                  for name, d in sorted(signature_defs.items())}
    return {
        "model_name": servable.name,
        "version": servable.version,
        "signature_defs": signature_defs,
        "signatures": signatures,
        "default_signature": _default_signature(
            [n for n, s in signatures.items() if s["callable"]]),
        "raw_features": [dataclasses.asdict(f) for f in features],
        "contract": contract,
        "feature_lists": feature_lists,
        "example_rows": export_contract.choose_rows(rows, [f.name for f in features], 5),
    }


def _signature_form(name: str, signature_def: dict, has_features: bool,
                    warmup_rows: list[dict] | None, feature_lists: list[str]) -> dict:
    """A signature as the page shows it: summary, API, whether (and why not) it can be
    called, and how its form is built: ``"features"`` (the raw feature contract) or
    ``"tensors"`` (one field per input, with an example row)."""
    described = {**export_contract.signature_summary(signature_def),
                 "api": request_samples.api_of(signature_def, feature_lists),
                 "kind": request_samples.signature_kind(signature_def)}
    reason = request_samples.uncallable_reason(signature_def)
    if request_samples.takes_feature_rows(name, signature_def):
        if reason is None and not has_features:
            reason = ("it takes serialized tf.Examples and the export names no features "
                      "(no raw feature contract, no warm-up examples): use the JSON editor")
        return {**described, "form": "features", "callable": reason is None, "reason": reason}
    if reason is not None:
        return {**described, "form": "tensors", "callable": False, "reason": reason}
    fields = []
    for alias, info in sorted(signature_def["inputs"].items()):
        dtype = export_contract.dtype_name(info["dtype"])
        shape = request_samples.instance_shape(signature_def, alias)
        if shape != []:
            widget = "json"  # a value with dimensions (or of unknown rank), as JSON text
        elif dtype == "string":
            widget = "file" if alias.endswith(request_samples.BYTES_SUFFIX) else "text"
        else:
            widget = {"bool": "bool"}.get(dtype, "number" if "float" in dtype else "int")
        fields.append({"name": alias, "dtype": dtype, "shape": shape, "widget": widget})
    row = (warmup_rows or [request_samples.placeholder_row(signature_def)])[0]
    return {**described, "form": "tensors", "callable": True, "reason": None,
            "fields": fields, "example_row": request_samples.jsonable(row),
            "batched": request_samples.batched(signature_def)}


def _default_signature(covered: list[str]) -> str | None:
    if sig.DEFAULT_SERVING in covered:
        return sig.DEFAULT_SERVING
    return sorted(covered)[0] if covered else None
