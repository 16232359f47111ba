"""The REST API (aiohttp): TF Serving's paths and JSON bodies over :class:`ServerCore`.

Paths are matched with TF Serving's own regular expressions (case-insensitive);
anything else under ``/v1/`` is ``Malformed request: METHOD PATH`` (400). Every
answer, errors included, is JSON; an error is ``{"error": message}`` with the HTTP
status of its canonical code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import urllib.parse

from aiohttp import web
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from tfbake.model_server import errors
from tfbake.model_server import json_tensor as jt
from tfbake.model_server.core import ModelSpec, ServerCore
from tfbake.model_server.http_server import read_body, timeout

log = logging.getLogger(__name__)

# http_rest_api_util.cc: kPredictionApiGegex and kModelStatusApiRegex.
_PREDICTION_API = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_MODEL_STATUS_API = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_JSON = "application/json"
HEALTH_PATH = "/healthz"
# http_rest_api_util.cc: AddCORSHeaders, and the preflight's origin check.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
_ORIGIN = re.compile(r"https?://")


def _json_message(message) -> str:
    return json_format.MessageToJson(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
        indent=None,
    )


class RestApi:
    """The aiohttp application serving ``/v1/...`` (and the Prometheus page, and the web
    console at ``/`` when one is given)."""

    def __init__(self, core: ServerCore, *, timeout_ms: int = 30000,
                 max_body_bytes: int = 64 << 20, body_timeout_ms: int = 60000,
                 num_threads: int = 0, cors: bool = False,
                 prometheus_path: str | None = None, console=None):
        self.core = core
        self.console = console  # a model_server.console.Console, or None (--no-console)
        self.timeout_s = timeout_ms / 1000 if timeout_ms > 0 else None
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_ms / 1000 if body_timeout_ms > 0 else None
        # --rest_api_num_threads: requests decoded and run at once (None: no bound).
        self._slots = asyncio.Semaphore(num_threads) if num_threads > 0 else None
        self.cors_headers = CORS_HEADERS if cors else None
        self.prometheus_path = prometheus_path

    def application(self) -> web.Application:
        """The aiohttp app; body size is enforced by us before reading (see handle)."""
        app = web.Application(client_max_size=self.max_body_bytes)
        if self.prometheus_path:
            app.router.add_get(self.prometheus_path, self._metrics)
        app.router.add_get(HEALTH_PATH, self._health)
        if self.console is not None:
            # Plain routes matched before the catch-all; no middleware, so /v1/ requests
            # take the same path with or without the console.
            self.console.add_routes(app)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.core.metrics.page(),
                            content_type="text/plain", charset="utf-8")

    async def _health(self, request: web.Request) -> web.Response:
        # A trivial endpoint: the HTTP stack's own cost, for readiness probes and the
        # benchmark's ceiling. Not a TF Serving API.
        return web.Response(body=b"{}", content_type=_JSON)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Dispatches one request as HttpRestApiHandler::ProcessRequest does."""
        path = request.raw_path.split("?", 1)[0]
        if not path.lower().startswith("/v1/"):
            raise web.HTTPNotFound()
        if request.method == "OPTIONS":
            return self._preflight(request)
        start = time.perf_counter()
        method = request.method
        model_name, api = "", ""
        try:
            length = request.content_length
            if length is not None and length > self.max_body_bytes:
                return self._too_large(length)
            try:
                body = await read_body(request, self.body_timeout_s)
            except web.HTTPRequestEntityTooLarge:
                return self._too_large(None)
            except TimeoutError:
                return self._refuse(408, (
                    f"Request body not received within {self.body_timeout_s:g} s "
                    "(--rest_api_body_timeout_in_ms)"))
            async with self._slots or contextlib.nullcontext():
                model_name, api, work = self._route(method, path, body)
                try:
                    async with timeout(self.timeout_s):
                        payload = await work
                except TimeoutError:
                    raise errors.deadline_exceeded("Deadline Exceeded") from None
            status, code_name = 200, "OK"
        except errors.ServingError as e:
            payload, status, code_name = jt.error_json(e.message), e.http_status, e.code_name
        except UnicodeError as e:  # text from the client that is not valid Unicode
            payload = jt.error_json(f"Request text is not valid Unicode: {e}")
            status, code_name = 400, "INVALID_ARGUMENT"
        except Exception as e:  # noqa: BLE001 - never leak a traceback as HTML.
            log.exception("Internal error handling %s %s", method, path)
            payload, status, code_name = jt.error_json(f"Internal error: {e}"), 500, "INTERNAL"
        if model_name:
            self.core.metrics.record_request(
                model_name, api, "REST", code_name, time.perf_counter() - start
            )
        return web.Response(body=payload, status=status, content_type=_JSON,
                            headers=self.cors_headers)

    def _preflight(self, request: web.Request) -> web.Response:
        """A CORS preflight: OK when it carries an http(s) Origin, as TF Serving answers
        (with or without --rest_api_enable_cors_support, which adds the headers)."""
        if _ORIGIN.search(request.headers.get("Origin", "")):
            return web.Response(status=200, headers=self.cors_headers)
        return web.Response(body=jt.error_json("Origin header is missing in CORS preflight"),
                            status=400, content_type=_JSON, headers=self.cors_headers)

    def _too_large(self, length: int | None) -> web.Response:
        size = f"of {length} bytes " if length is not None else ""
        return self._refuse(413, f"Request body {size}exceeds the limit of "
                                 f"{self.max_body_bytes} bytes (--rest_api_max_body_bytes)")

    def _refuse(self, status: int, message: str) -> web.Response:
        """An error answered before the body was read: the connection is closed, since
        the unread rest of the body cannot be skipped on it."""
        response = web.Response(body=jt.error_json(message), status=status, content_type=_JSON,
                                headers=self.cors_headers)
        response.force_close()
        return response

    def _route(self, method: str, path: str, body: bytes):
        """(model name, API name, coroutine) for a path, or Malformed request."""
        malformed = errors.invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = _PREDICTION_API.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, verb = match.groups()
            spec = self._spec(name, version, label)
            handler = {"predict": self._predict, "classify": self._classify,
                       "regress": self._regress}.get(verb)
            if handler is None:
                raise malformed
            return spec.name, verb, handler(spec, body)
        if method == "GET":
            match = _MODEL_STATUS_API.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, subresource = match.groups()
            if not name:
                raise errors.invalid_argument("Missing model name in request.")
            spec = self._spec(name, version, label)
            if subresource == "metadata":
                return spec.name, "metadata", self._metadata(spec)
            return spec.name, "status", self._status(spec)
        raise malformed

    @staticmethod
    def _spec(name: str, version: str | None, label: str | None) -> ModelSpec:
        name = urllib.parse.unquote(name)
        if label is not None:
            label = urllib.parse.unquote(label)
        if version is not None:
            try:
                number = int(version)
            except ValueError:
                number = None
            if number is None or not -(2**63) <= number < 2**63:
                raise errors.invalid_argument(f"Failed to convert version: {version} to numeric.")
            version = number
        return ModelSpec(name, version, label)

    async def _predict(self, spec: ModelSpec, body: bytes) -> bytes:
        doc = jt.loads(body)
        signature_name = jt.signature_name(doc)
        servable = self.core.servable(spec)
        signature = self.core.rest_predict_signature(servable, signature_name)
        inputs, layout = jt.predict_inputs_from_json(doc, signature.inputs)
        result = await self.core.predict(servable, signature_name, inputs)
        if layout == "row":
            return jt.predictions_json(result.outputs)
        return jt.outputs_json(result.outputs)

    async def _classify(self, spec: ModelSpec, body: bytes) -> bytes:
        doc = jt.loads(body)
        signature_name = jt.signature_name(doc)
        request_input = jt.classify_regress_input_from_json(doc)
        servable = self.core.servable(spec)
        result = await self.core.classify(servable, signature_name, request_input)
        return jt.classification_json(result.classes, result.scores)

    async def _regress(self, spec: ModelSpec, body: bytes) -> bytes:
        doc = jt.loads(body)
        signature_name = jt.signature_name(doc)
        request_input = jt.classify_regress_input_from_json(doc)
        servable = self.core.servable(spec)
        result = await self.core.regress(servable, signature_name, request_input)
        return jt.regression_json(result.values)

    async def _metadata(self, spec: ModelSpec) -> bytes:
        response = self.core.metadata(spec)
        signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_def_map)
        # As TF Serving: the two parts printed separately and joined ("signature_def"
        # therefore appears twice).
        return (
            '{"model_spec":' + _json_message(response.model_spec)
            + ',"metadata":{"signature_def":' + _json_message(signature_def_map) + "}}"
        ).encode()

    async def _status(self, spec: ModelSpec) -> bytes:
        # A label in the path is ignored for status, as in GetModelStatusImpl.
        return _json_message(self.core.model_status(ModelSpec(spec.name, spec.version))).encode()
