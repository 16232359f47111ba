"""tensorflow_model_server's flags and text-proto configuration files.

``ModelServerConfig`` comes from ``tensorflow-serving-api``. ``BatchingParameters``
(``session_bundle_config.proto``) and ``MonitoringConfig`` (``monitoring_config.proto``)
are not shipped in that package, so their descriptors are rebuilt here, field for
field and number for number, in a private descriptor pool; the text files a user
already has for the real binary therefore parse unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

_WRAPPER_FIELDS = {
    "int64": ".google.protobuf.Int64Value",
    "string": ".google.protobuf.StringValue",
    "bool": ".google.protobuf.BoolValue",
}


def _build_protos():
    """BatchingParameters and MonitoringConfig, as in tensorflow/serving's .proto files."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="tfbake/model_server/serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    batching = file.message_type.add(name="BatchingParameters")
    for number, (name, kind) in enumerate(
        [
            ("max_batch_size", "int64"),
            ("batch_timeout_micros", "int64"),
            ("max_enqueued_batches", "int64"),
            ("num_batch_threads", "int64"),
            ("thread_pool_name", "string"),
        ],
        start=1,
    ):
        batching.field.add(
            name=name, number=number, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
            type_name=_WRAPPER_FIELDS[kind],
        )
    batching.field.add(
        name="allowed_batch_sizes", number=6, label=F.LABEL_REPEATED, type=F.TYPE_INT64
    )
    batching.field.add(
        name="pad_variable_length_inputs", number=7, label=F.LABEL_OPTIONAL, type=F.TYPE_BOOL
    )
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_BOOL)
    prometheus.field.add(name="path", number=2, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
    )
    pool.Add(file)
    return (
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
        ),
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
        ),
    )


BatchingParameters, MonitoringConfig = _build_protos()

# PrometheusExporter::kPrometheusPath.
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


class ConfigError(ValueError):
    """A flag or configuration file that the server cannot start with."""


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """The BatchingParameters fields the scheduler uses, with TF Serving's defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 100
    num_batch_threads: int = 4  # TF Serving defaults to the number of CPUs.
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    @classmethod
    def from_proto(cls, params) -> BatchingOptions:
        """Reads a ``BatchingParameters`` message; unset wrappers keep the defaults."""
        values = {}
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                     "num_batch_threads"):
            if params.HasField(name):
                values[name] = getattr(params, name).value
        allowed = tuple(params.allowed_batch_sizes)
        options = cls(**values, allowed_batch_sizes=allowed,
                      pad_variable_length_inputs=params.pad_variable_length_inputs)
        if allowed and (list(allowed) != sorted(allowed) or allowed[-1] != options.max_batch_size):
            raise ConfigError(
                "allowed_batch_sizes entries must be increasing and the last one must "
                f"equal max_batch_size ({options.max_batch_size}); got {list(allowed)}"
            )
        if options.max_batch_size < 1 or options.num_batch_threads < 1:
            raise ConfigError("max_batch_size and num_batch_threads must be >= 1")
        return options


@dataclasses.dataclass
class ServerOptions:
    """Everything the server is started with; mirrors tensorflow_model_server's flags."""

    port: int = 8500
    rest_api_port: int = 0
    host: str = "127.0.0.1"
    model_name: str = "default"
    model_base_path: str | None = None
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    enable_batching: bool = False
    batching_parameters_file: str | None = None
    rest_api_timeout_in_ms: int = 30000
    monitoring_config_file: str | None = None
    enable_model_warmup: bool = True
    enable_signature_method_name_check: bool = False
    rest_api_max_body_bytes: int = 64 * 1024 * 1024
    # Threads that run TensorFlow calls when batching is off.
    tensorflow_session_parallelism: int = 0
    # The web console at / on the REST port (a tfbake extension; --no-console).
    console: bool = True

    def model_server_config(self) -> model_server_config_pb2.ModelServerConfig:
        """The ModelServerConfig named by the flags (config file, or one model)."""
        if self.model_config_file:
            if self.model_base_path:
                raise ConfigError(
                    "--model_config_file and --model_base_path are mutually exclusive"
                )
            return read_model_server_config(self.model_config_file)
        if not self.model_base_path:
            raise ConfigError(
                "Both server config file (--model_config_file) and model base path "
                "(--model_base_path) are empty; one of them is required"
            )
        config = model_server_config_pb2.ModelServerConfig()
        model = config.model_config_list.config.add()
        model.name = self.model_name
        model.base_path = self.model_base_path
        model.model_platform = "tensorflow"
        return config

    def batching_options(self) -> BatchingOptions | None:
        """The batching options, or None when batching is off."""
        if not self.enable_batching:
            return None
        params = BatchingParameters()
        if self.batching_parameters_file:
            _parse_text_file(self.batching_parameters_file, params)
        return BatchingOptions.from_proto(params)

    def prometheus_path(self) -> str | None:
        """The metrics path when the monitoring config enables Prometheus, else None."""
        if not self.monitoring_config_file:
            return None
        config = MonitoringConfig()
        _parse_text_file(self.monitoring_config_file, config)
        if not config.prometheus_config.enable:
            return None
        return config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH


def _parse_text_file(path: str, message) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            text_format.Parse(f.read(), message)
    except OSError as e:
        raise ConfigError(f"Could not read {path}: {e}") from e
    except text_format.ParseError as e:
        raise ConfigError(f"Could not parse {path} as {message.DESCRIPTOR.name}: {e}") from e


def read_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Parses a text ``ModelServerConfig`` and checks what ServerCore checks."""
    config = model_server_config_pb2.ModelServerConfig()
    _parse_text_file(path, config)
    check_model_server_config(config)
    return config


def check_model_server_config(config: model_server_config_pb2.ModelServerConfig) -> None:
    """ServerCore's validation: a model_config_list, unique names, platform tensorflow."""
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError("Only a model_config_list is supported in ModelServerConfig")
    seen = set()
    for model in config.model_config_list.config:
        if model.name in seen:
            raise ConfigError(f"Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(
                f"Model {model.name} requests unsupported platform {model.model_platform}"
            )
        if not model.base_path:
            raise ConfigError(f"Model {model.name} has no base_path")


def _bool_flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "t"):
        return True
    if value in ("0", "false", "no", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_arg_parser() -> argparse.ArgumentParser:
    """tensorflow_model_server's flags (``--flag=value`` or ``--flag value``)."""
    p = argparse.ArgumentParser(
        prog="python -m model_server",
        description="A TensorFlow Serving-compatible model server (REST and gRPC).",
    )
    d = ServerOptions()
    p.add_argument("--port", type=int, default=d.port, help="gRPC port (0 picks a free one)")
    p.add_argument("--rest_api_port", type=int, default=d.rest_api_port,
                   help="REST port; 0 turns the REST API off")
    p.add_argument("--host", default=d.host, help="address to bind (default 127.0.0.1)")
    p.add_argument("--model_name", default=d.model_name)
    p.add_argument("--model_base_path", default=None)
    p.add_argument("--model_config_file", default=None)
    p.add_argument("--model_config_file_poll_wait_seconds", type=float,
                   default=d.model_config_file_poll_wait_seconds)
    p.add_argument("--file_system_poll_wait_seconds", type=float,
                   default=d.file_system_poll_wait_seconds)
    p.add_argument("--enable_batching", type=_bool_flag, nargs="?", const=True, default=False)
    p.add_argument("--batching_parameters_file", default=None)
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=d.rest_api_timeout_in_ms)
    p.add_argument("--monitoring_config_file", default=None)
    p.add_argument("--enable_model_warmup", type=_bool_flag, nargs="?", const=True,
                   default=d.enable_model_warmup)
    p.add_argument("--enable_signature_method_name_check", type=_bool_flag, nargs="?",
                   const=True, default=False)
    p.add_argument("--rest_api_max_body_bytes", type=int, default=d.rest_api_max_body_bytes,
                   help="larger REST request bodies are refused (413) before being read")
    p.add_argument("--tensorflow_session_parallelism", type=int, default=0,
                   help="threads running model calls (0: two per CPU)")
    p.add_argument("--no-console", "--no_console", dest="console", action="store_false",
                   help="do not serve the web console at / on the REST port")
    return p


def parse_flags(argv: list[str] | None) -> ServerOptions:
    """Parses command-line flags into :class:`ServerOptions`."""
    args = build_arg_parser().parse_args(argv)
    options = ServerOptions(**vars(args))
    if options.model_base_path:
        options.model_base_path = os.path.abspath(options.model_base_path)
    return options
