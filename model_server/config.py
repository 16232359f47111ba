"""tensorflow_model_server's flags and text-proto configuration files.

``ModelServerConfig`` comes from ``tensorflow-serving-api``. ``BatchingParameters``
(``session_bundle_config.proto``), ``MonitoringConfig`` (``monitoring_config.proto``)
and ``SSLConfig`` (``ssl_config.proto``) are not shipped in that package, so their
descriptors are rebuilt here, field for field and number for number, in a private
descriptor pool; the text files a user already has for the real binary therefore parse
unchanged.
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
    """BatchingParameters, MonitoringConfig and SSLConfig, as in tensorflow/serving's
    .proto files."""
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
    ssl = file.message_type.add(name="SSLConfig")
    for number, name in enumerate(["server_key", "server_cert", "custom_ca"], start=1):
        ssl.field.add(name=name, number=number, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
    ssl.field.add(name="client_verify", number=4, label=F.LABEL_OPTIONAL, type=F.TYPE_BOOL)
    pool.Add(file)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{n}"))
        for n in ("BatchingParameters", "MonitoringConfig", "SSLConfig")
    )


BatchingParameters, MonitoringConfig, SSLConfig = _build_protos()

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
    """Everything the server is started with; mirrors tensorflow_model_server's flags.

    Defaults are TF Serving's except where a comment says otherwise; the flags that
    cannot apply here are kept in ``ignored_flags`` (see :data:`NOT_APPLICABLE`).
    """

    port: int = 8500
    grpc_socket_path: str = ""
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
    # REST requests decoded and run at once; 0 (TF Serving: 4 per CPU) is no bound,
    # since REST runs on one event loop and model calls on their own threads.
    rest_api_num_threads: int = 0
    rest_api_enable_cors_support: bool = False
    monitoring_config_file: str | None = None
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    enable_signature_method_name_check: bool = False
    allow_version_labels_for_unavailable_models: bool = False
    saved_model_tags: str = "serve"
    num_load_threads: int = 0
    # TF Serving retries a failed load 5 times, a minute apart; tfbake does not by
    # default (a version whose folder changes is loaded again anyway).
    max_num_load_retries: int = 0
    load_retry_interval_micros: int = 60_000_000
    # Threads that run TensorFlow calls when batching is off (0: two per CPU); also
    # TensorFlow's intra- and inter-op threads unless those are given.
    tensorflow_session_parallelism: int = 0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    tensorflow_session_config_file: str | None = None
    ssl_config_file: str | None = None
    use_alts_credentials: bool = False
    grpc_channel_arguments: str = ""
    # gRPC calls in progress at once, more are refused with RESOURCE_EXHAUSTED;
    # 0 (TF Serving: 4 threads per CPU) is no bound.
    grpc_max_threads: int = 0
    enable_grpc_healthcheck_service: bool = False
    enable_serialization_as_tensor_content: bool = False
    # tfbake extensions.
    rest_api_max_body_bytes: int = 64 * 1024 * 1024
    # A request tensor whose decoded size would exceed this is refused before it is
    # built (None: the REST body limit).
    max_request_tensor_bytes: int | None = None
    # A connection that has not sent a whole request head this long after it opened
    # (or after its previous answer) is closed; so is a body not received in time.
    rest_api_header_timeout_in_ms: int = 30000
    rest_api_body_timeout_in_ms: int = 60000
    # How long requests received before SIGTERM may take to be answered.
    shutdown_grace_period_in_ms: int = 30000
    # The web console at / on the REST port (--no-console).
    console: bool = True
    # Server processes sharing the gRPC and REST ports (model_server.workers). One by
    # default: every process holds its own copy of every model, and TensorFlow's op
    # threads already spread one large call over the cores.
    num_workers: int = 1
    # Set by the parent of several server processes on each of them (0, 1, ...);
    # -1 in a lone server.
    worker_index: int = -1
    # Per-request checks against an export's training statistics (when it has them).
    data_checks: bool = True
    # Request log (model_server.request_log): every request of every model, or the
    # models whose logging_config in --model_config_file says so.
    request_log_dir: str = ""
    request_log_max_file_bytes: int = 64 << 20
    request_log_max_total_bytes: int = 1 << 30
    # Flags of tensorflow_model_server that cannot apply here: name -> value given.
    ignored_flags: dict[str, str] = dataclasses.field(default_factory=dict)

    def model_server_config(self) -> model_server_config_pb2.ModelServerConfig:
        """The ModelServerConfig named by the flags (config file, or one model)."""
        if self.model_config_file:
            # As tensorflow_model_server: --model_name and --model_base_path are ignored.
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

    def check(self) -> None:
        """The combinations tensorflow_model_server refuses at start-up."""
        if self.use_alts_credentials and self.ssl_config_file:
            raise ConfigError(
                "Either use_alts_credentials must be false or ssl_config_file must be empty."
            )
        if self.batching_parameters_file and not self.enable_batching:
            raise ConfigError(
                "--batching_parameters_file is set without setting --enable_batching to true."
            )
        if min(self.tensorflow_session_parallelism, self.tensorflow_intra_op_parallelism,
               self.tensorflow_inter_op_parallelism) > 0:
            raise ConfigError(
                "Either configure --tensorflow_session_parallelism or "
                "(--tensorflow_intra_op_parallelism, --tensorflow_inter_op_parallelism) "
                "separately. You cannot configure all."
            )
        if not self.tags():
            raise ConfigError("--saved_model_tags names no tag")
        if self.num_workers < 1:
            raise ConfigError(f"--num_workers must be >= 1, got {self.num_workers}")
        self.grpc_arguments()  # parses, or says what is wrong

    def tags(self) -> tuple[str, ...]:
        """``--saved_model_tags`` as a tuple (the MetaGraph to load has exactly these)."""
        return tuple(t.strip() for t in self.saved_model_tags.split(",") if t.strip())

    def tensor_limit(self) -> int:
        """The largest request tensor, in bytes, decoded for a request."""
        if self.max_request_tensor_bytes is not None:
            return self.max_request_tensor_bytes
        return self.rest_api_max_body_bytes

    def grpc_arguments(self) -> list[tuple[str, int | str]]:
        """``--grpc_channel_arguments`` (``key=value,...``) as gRPC server options; a
        value that parses as an integer is passed as one, as tensorflow_model_server
        does."""
        arguments = []
        for item in filter(None, (i.strip() for i in self.grpc_channel_arguments.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(
                    f"--grpc_channel_arguments: expected key=value, got {item!r}"
                )
            try:
                arguments.append((key, int(value)))
            except ValueError:
                arguments.append((key, value))
        return arguments

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

    def ssl_config(self):
        """The ``SSLConfig`` of ``--ssl_config_file``, or None."""
        if not self.ssl_config_file:
            return None
        config = SSLConfig()
        _parse_text_file(self.ssl_config_file, config)
        if not config.server_key or not config.server_cert:
            raise ConfigError(
                f"{self.ssl_config_file}: SSLConfig needs server_key and server_cert "
                "(the PEM texts themselves, not file names)"
            )
        return config

    def session_config(self):
        """The ``ConfigProto`` of ``--tensorflow_session_config_file``, or None."""
        if not self.tensorflow_session_config_file:
            return None
        from tensorflow.core.protobuf import config_pb2

        config = config_pb2.ConfigProto()
        _parse_text_file(self.tensorflow_session_config_file, config)
        return config

    def notices(self) -> list[str]:
        """One line per given flag that has no effect here, saying why."""
        lines = [
            f"--{name}={value} has no effect here: {NOT_APPLICABLE[name]}"
            for name, value in sorted(self.ignored_flags.items())
        ]
        if self.model_config_file and (self.model_base_path or self.model_name != "default"):
            lines.append("--model_name and --model_base_path are ignored: "
                         "--model_config_file names the models")
        return lines


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


# tensorflow_model_server's flags that cannot apply to this server: accepted (so a
# command line written for the real binary works unchanged) with a one-line notice.
NOT_APPLICABLE = {
    "enable_per_model_batching_parameters":
        "batching parameters are the server's (--batching_parameters_file) for every model",
    "num_unload_threads": "unloading a version drops a reference; no thread pool is needed",
    "flush_filesystem_caches": "there are no file system caches to flush",
    "platform_config_file": "only the TensorFlow SavedModel platform is served, "
                            "configured by the other flags",
    "per_process_gpu_memory_fraction": "TensorFlow's default GPU memory allocation is used",
    "remove_unused_fields_from_bundle_metagraph": "the MetaGraph is not kept after loading",
    "prefer_tflite_model": "there is no TensorFlow Lite runtime; the SavedModel is served "
                           "(as tensorflow_model_server does when there is no model.tflite)",
    "num_tflite_pools": "there is no TensorFlow Lite runtime",
    "num_tflite_interpreters_per_pool": "there is no TensorFlow Lite runtime",
    "xla_cpu_compilation_enabled": "XLA follows TensorFlow's defaults "
                                   "(functions marked jit_compile are compiled)",
    "xla_gpu_compilation_enabled": "XLA follows TensorFlow's defaults "
                                   "(functions marked jit_compile are compiled)",
    "enable_profiler": "no profiler service is registered on the gRPC port",
    "thread_pool_factory_config_file": "model calls run on --tensorflow_session_parallelism "
                                       "threads",
    "mixed_precision": "the SavedModel runs in the precision it was saved with",
    "skip_initialize_tpu": "there is no TPU support",
}


def _bool_flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "t"):
        return True
    if value in ("0", "false", "no", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _version_text() -> str:
    from importlib import metadata

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "unknown"

    return (f"TensorFlow ModelServer: tfbake {version('tfbake')} (the TensorFlow Serving API "
            f"of tensorflow-serving-api {version('tensorflow-serving-api')})\n"
            f"TensorFlow Library: {version('tensorflow')}")


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs="?", const=True, type=_bool_flag,
                         default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if values:  # --version or --version=true; --version=false is a no-op
            print(_version_text(), flush=True)
            parser.exit(0)


def build_arg_parser() -> argparse.ArgumentParser:
    """tensorflow_model_server's flags (``--flag=value`` or ``--flag value``; a boolean
    also as ``--flag``), plus tfbake's own."""
    p = argparse.ArgumentParser(
        prog="python -m model_server",
        description="A TensorFlow Serving-compatible model server (REST and gRPC).",
    )
    d = ServerOptions()

    def flag(name, kind, help=None):
        default = getattr(d, name)
        if kind is bool:
            p.add_argument(f"--{name}", type=_bool_flag, nargs="?", const=True,
                           default=default, help=help)
        else:
            p.add_argument(f"--{name}", type=kind, default=default, help=help)

    flag("port", int, "gRPC port (0 picks a free one)")
    flag("grpc_socket_path", str, "also serve gRPC on this UNIX socket")
    flag("rest_api_port", int, "REST port; 0 turns the REST API off (-1 picks a free one)")
    flag("host", str, "address to bind (default 127.0.0.1)")
    flag("model_name", str)
    flag("model_base_path", str)
    flag("model_config_file", str)
    flag("model_config_file_poll_wait_seconds", float)
    flag("file_system_poll_wait_seconds", float)
    flag("enable_batching", bool)
    flag("batching_parameters_file", str)
    flag("rest_api_timeout_in_ms", int)
    flag("rest_api_num_threads", int, "REST requests decoded and run at once (0: no bound)")
    flag("rest_api_enable_cors_support", bool, "CORS headers on /v1/ answers")
    flag("monitoring_config_file", str)
    flag("enable_model_warmup", bool)
    flag("num_request_iterations_for_warmup", int)
    flag("enable_signature_method_name_check", bool)
    flag("allow_version_labels_for_unavailable_models", bool)
    flag("saved_model_tags", str, "comma-separated tags of the MetaGraph to load")
    flag("num_load_threads", int, "models loaded in parallel (0: one after another)")
    flag("max_num_load_retries", int, "retries of a failed load (default 0 here)")
    flag("load_retry_interval_micros", int)
    flag("tensorflow_session_parallelism", int,
         "threads running model calls, and TensorFlow's op threads (0: automatic)")
    flag("tensorflow_intra_op_parallelism", int)
    flag("tensorflow_inter_op_parallelism", int)
    flag("tensorflow_session_config_file", str,
         "text ConfigProto; its thread counts are applied")
    flag("ssl_config_file", str, "text SSLConfig: TLS on gRPC")
    flag("use_alts_credentials", bool)
    flag("grpc_channel_arguments", str, "gRPC server arguments, key=value,...")
    flag("grpc_max_threads", int, "gRPC calls in progress at once (0: no bound)")
    flag("enable_grpc_healthcheck_service", bool)
    flag("enable_serialization_as_tensor_content", bool)
    flag("rest_api_max_body_bytes", int,
         "larger REST request bodies are refused (413) before being read")
    flag("max_request_tensor_bytes", int,
         "request tensors larger than this (decoded) are refused (default: the body limit)")
    flag("rest_api_header_timeout_in_ms", int,
         "close a connection that sends no whole request head for this long")
    flag("rest_api_body_timeout_in_ms", int, "answer 408 to a body not received in time")
    flag("shutdown_grace_period_in_ms", int,
         "after SIGTERM, how long received requests may take to be answered")
    flag("num_workers", int,
         "server processes sharing the gRPC and REST ports, each with every model loaded")
    p.add_argument("--worker_index", type=int, default=d.worker_index, help=argparse.SUPPRESS)
    flag("data_checks", bool,
         "check each request's features against the export's training statistics")
    flag("request_log_dir", str, "log requests and answers as PredictionLog TFRecords here")
    flag("request_log_max_file_bytes", int, "start a new request log file at this size")
    flag("request_log_max_total_bytes", int,
         "drop request log records once this process's files reach this size")
    p.add_argument("--no-console", "--no_console", dest="console", action="store_false",
                   help="do not serve the web console at / on the REST port")
    p.add_argument("--version", action=_VersionAction, help="print the version and exit")
    ignored = p.add_argument_group("accepted for tensorflow_model_server compatibility, "
                                   "without effect here")
    for name in NOT_APPLICABLE:
        ignored.add_argument(f"--{name}", nargs="?", const="true", default=None,
                             help=NOT_APPLICABLE[name])
    return p


def parse_flags(argv: list[str] | None) -> ServerOptions:
    """Parses command-line flags into :class:`ServerOptions` (checked as
    tensorflow_model_server checks them)."""
    args = vars(build_arg_parser().parse_args(argv))
    args.pop("version")
    ignored = {name: args.pop(name) for name in NOT_APPLICABLE}
    options = ServerOptions(**args,
                            ignored_flags={k: v for k, v in ignored.items() if v is not None})
    if options.model_base_path:
        options.model_base_path = os.path.abspath(options.model_base_path)
    options.check()
    return options
