"""The gRPC API: TF Serving's PredictionService and ModelService over :class:`ServerCore`.

Servicers subclass the generated bases of ``tensorflow-serving-api`` and run on
``grpc.aio``, in the same event loop as REST, so both share one batch scheduler.
"""

from __future__ import annotations

import logging
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from model_server import errors
from model_server.config import ConfigError, ServerOptions
from model_server.core import ClassifyResult, ModelSpec, ServerCore
from model_server.tensors import ndarray_from_proto, tensor_proto

log = logging.getLogger(__name__)

# TF Serving accepts messages up to 2 GiB (INT_MAX bytes).
MAX_MESSAGE_BYTES = 2**31 - 1
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def _fill_spec(target, servable, signature_name: str | None) -> None:
    target.name = servable.name
    target.version.value = servable.version
    if signature_name is not None:
        target.signature_name = signature_name


def fill_classification(result: ClassifyResult, target) -> None:
    classes, scores = result.classes, result.scores
    reference = classes if classes is not None else scores
    n, k = reference.shape
    labels = classes.tolist() if classes is not None else None
    values = scores.tolist() if scores is not None else None
    for i in range(n):
        row = target.classifications.add()
        for j in range(k):
            entry = row.classes.add()
            if labels is not None:
                entry.label = labels[i][j].decode("utf-8", "replace")
            if values is not None:
                entry.score = values[i][j]


class _Service:
    def __init__(self, core: ServerCore, *, tensor_content: bool = False):
        self.core = core
        # --enable_serialization_as_tensor_content; else typed fields, as TF Serving.
        self.tensor_content = tensor_content

    async def _serve(self, api: str, model_name: str, context, work):
        start = time.perf_counter()
        code_name = "OK"
        try:
            return await work()
        except errors.ServingError as e:
            code_name = e.code_name
            await context.abort(e.code, e.message)
        except Exception as e:  # noqa: BLE001 - report, never crash the stream
            if isinstance(e, grpc.aio.AbortError):
                raise
            code_name = "INTERNAL"
            log.exception("Internal error in %s", api)
            await context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {e}")
        finally:
            if model_name:
                self.core.metrics.record_request(
                    model_name, api, "GRPC", code_name, time.perf_counter() - start
                )


class PredictionService(_Service, prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService."""

    async def Predict(self, request, context):  # noqa: N802 - generated API name
        async def work():
            spec = ModelSpec.from_proto(request.model_spec)
            servable = self.core.servable(spec)
            result = await self.core.predict(
                servable, spec.signature_name, request.inputs,
                list(request.output_filter), decode=ndarray_from_proto,
            )
            response = predict_pb2.PredictResponse()
            _fill_spec(response.model_spec, servable, result.signature_name)
            for alias, array in result.outputs.items():
                response.outputs[alias].CopyFrom(tensor_proto(array, self.tensor_content))
            return response

        return await self._serve("Predict", request.model_spec.name, context, work)

    async def Classify(self, request, context):  # noqa: N802
        async def work():
            spec = ModelSpec.from_proto(request.model_spec)
            servable = self.core.servable(spec)
            result = await self.core.classify(servable, spec.signature_name, request.input)
            response = classification_pb2.ClassificationResponse()
            _fill_spec(response.model_spec, servable, result.signature_name)
            fill_classification(result, response.result)
            return response

        return await self._serve("Classify", request.model_spec.name, context, work)

    async def Regress(self, request, context):  # noqa: N802
        async def work():
            spec = ModelSpec.from_proto(request.model_spec)
            servable = self.core.servable(spec)
            result = await self.core.regress(servable, spec.signature_name, request.input)
            response = regression_pb2.RegressionResponse()
            _fill_spec(response.model_spec, servable, result.signature_name)
            for value in result.values.tolist():
                response.result.regressions.add(value=value)
            return response

        return await self._serve("Regress", request.model_spec.name, context, work)

    async def MultiInference(self, request, context):  # noqa: N802
        async def work():
            tasks = [(ModelSpec.from_proto(t.model_spec), t.method_name) for t in request.tasks]
            servable, results = await self.core.multi_inference(tasks, request.input)
            response = inference_pb2.MultiInferenceResponse()
            for result in results:
                target = response.results.add()
                _fill_spec(target.model_spec, servable, result.signature_name)
                if isinstance(result, ClassifyResult):
                    fill_classification(result, target.classification_result)
                else:
                    for value in result.values.tolist():
                        target.regression_result.regressions.add(value=value)
            return response

        name = request.tasks[0].model_spec.name if request.tasks else ""
        return await self._serve("MultiInference", name, context, work)

    async def GetModelMetadata(self, request, context):  # noqa: N802
        async def work():
            if not request.HasField("model_spec"):
                raise errors.invalid_argument("Missing ModelSpec")
            return self.core.metadata(
                ModelSpec.from_proto(request.model_spec), list(request.metadata_field)
            )

        return await self._serve("GetModelMetadata", request.model_spec.name, context, work)


class ModelService(_Service, model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService."""

    def __init__(self, core: ServerCore, *, num_workers: int = 1):
        super().__init__(core)
        self.num_workers = num_workers

    async def GetModelStatus(self, request, context):  # noqa: N802
        async def work():
            if not request.HasField("model_spec"):
                raise errors.invalid_argument("Missing ModelSpec")
            spec = ModelSpec.from_proto(request.model_spec)
            return self.core.model_status(ModelSpec(spec.name, spec.version))

        return await self._serve("GetModelStatus", "", context, work)

    async def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        async def work():
            if self.num_workers > 1:
                raise errors.failed_precondition(
                    f"HandleReloadConfigRequest would reach one of the {self.num_workers} "
                    "server processes (--num_workers): edit the --model_config_file "
                    "instead, which every process reads again "
                    "(--model_config_file_poll_wait_seconds)")
            await self.core.reload_config(request.config)
            response = model_management_pb2.ReloadConfigResponse()
            response.status.error_code = 0
            return response

        return await self._serve("HandleReloadConfigRequest", "", context, work)


def add_services(server: grpc.aio.Server, core: ServerCore, *,
                 tensor_content: bool = False, num_workers: int = 1) -> None:
    """Registers both services on a grpc.aio server."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(core, tensor_content=tensor_content), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(core, num_workers=num_workers), server)


def server_credentials(options: ServerOptions) -> grpc.ServerCredentials | None:
    """TLS from ``--ssl_config_file`` (``SSLConfig``), ALTS, or None (plaintext), as
    tensorflow_model_server's BuildServerCredentials."""
    if options.use_alts_credentials:
        return grpc.alts_server_credentials()
    ssl = options.ssl_config()
    if ssl is None:
        return None
    return grpc.ssl_server_credentials(
        [(ssl.server_key.encode(), ssl.server_cert.encode())],
        root_certificates=ssl.custom_ca.encode() or None,
        require_client_auth=ssl.client_verify,
    )


async def start_server(core: ServerCore,
                       options: ServerOptions) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server with both services on ``host:port`` (and the UNIX socket of
    ``--grpc_socket_path``), configured by the flags, started; returns it and the
    bound port."""
    # The processes of --num_workers share the port (grpc.so_reuseport, gRPC's default).
    shared = [("grpc.so_reuseport", 1)] if options.worker_index >= 0 else []
    server = grpc.aio.server(
        options=SERVER_OPTIONS + shared + options.grpc_arguments(),
        maximum_concurrent_rpcs=options.grpc_max_threads or None,
    )
    add_services(server, core, tensor_content=options.enable_serialization_as_tensor_content,
                 num_workers=options.num_workers)
    checker = None
    if options.enable_grpc_healthcheck_service:
        checker = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    credentials = server_credentials(options)

    def bind(address: str) -> int:
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)

    port = bind(f"{options.host}:{options.port}")
    if port == 0:
        raise OSError(f"Could not bind gRPC to {options.host}:{options.port}")
    # A UNIX socket cannot be shared: the first of several processes serves it.
    if (options.grpc_socket_path and options.worker_index <= 0
            and not bind(f"unix:{options.grpc_socket_path}")):
        raise ConfigError(f"Could not listen on UNIX socket {options.grpc_socket_path}")
    await server.start()
    if checker is not None:
        # The names tensorflow_model_server reports SERVING.
        for name in ("ModelService", "PredictionService"):
            await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port
