"""The model server process: manager + core + REST + gRPC on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading

import grpc

from model_server import grpc_service
from model_server.config import ConfigError, ServerOptions, parse_flags, read_model_server_config
from model_server.core import ServerCore
from model_server.http_server import HttpServer
from model_server.manager import AspiredVersionsManager, StartupError
from model_server.metrics import Metrics
from model_server.request_log import RequestLog, log_target
from model_server.rest import RestApi
from model_server.traffic import TrafficWatch

log = logging.getLogger("model_server")

# tensorflow_model_server's start-up lines, which tools wait for (see listening_address).
GRPC_LISTENING = "Running gRPC ModelServer at "
GRPC_SOCKET_LISTENING = "Running gRPC ModelServer at UNIX socket "
REST_LISTENING = "Exporting HTTP/REST API at:"


def listening_address(line: str) -> tuple[str, str] | None:
    """Reads a start-up line printed by :meth:`ModelServer.announce`.

    Returns ``("grpc", "host:port")`` or ``("rest", "http://host:port")``, or None for
    any other line.
    """
    if line.startswith(GRPC_LISTENING) and not line.startswith(GRPC_SOCKET_LISTENING):
        return "grpc", line[len(GRPC_LISTENING) :].split()[0]
    if line.startswith(REST_LISTENING):
        return "rest", "http://" + line[len(REST_LISTENING) :].split()[0]
    return None


class ModelServer:
    """One server: loads the configured models, then serves REST and gRPC."""

    def __init__(self, options: ServerOptions):
        options.check()
        self.options = options
        for line in options.notices():
            log.warning("%s", line)
        self.metrics = Metrics()
        self.manager = AspiredVersionsManager(
            enable_warmup=options.enable_model_warmup,
            warmup_iterations=options.num_request_iterations_for_warmup,
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            tags=options.tags(),
            num_load_threads=options.num_load_threads,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_s=options.load_retry_interval_micros / 1e6,
            allow_version_labels_for_unavailable_models=(
                options.allow_version_labels_for_unavailable_models),
        )
        self.core = ServerCore(
            self.manager,
            self.metrics,
            batching=options.batching_options(),
            num_threads=options.tensorflow_session_parallelism,
            method_name_check=options.enable_signature_method_name_check,
            max_tensor_bytes=options.tensor_limit(),
            traffic=self._traffic_watch(),
        )
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._config_text: str | None = None
        self._grpc: grpc.aio.Server | None = None
        self._http: HttpServer | None = None
        self._stopping: asyncio.Event | None = None
        self._config_thread: threading.Thread | None = None
        self._config_stop = threading.Event()

    def _traffic_watch(self) -> TrafficWatch:
        options = self.options
        directory = os.path.abspath(options.request_log_dir) if options.request_log_dir else ""
        # Always there: a model_config_file reloaded later may add a logging_config.
        request_log = RequestLog(
            self.metrics.collector_registry,
            lambda name: log_target(directory, self.manager.model_config(name)),
            max_file_bytes=options.request_log_max_file_bytes,
            max_total_bytes=options.request_log_max_total_bytes,
        )
        return TrafficWatch(self.metrics.collector_registry, checks=options.data_checks,
                            request_log=request_log)

    def __repr__(self) -> str:
        return (f"ModelServer(grpc={self.options.host}:{self.grpc_port}, "
                f"rest={self.options.host}:{self.rest_port}, models={self.manager.model_names()})")

    # ---------------------------------------------------------------- models

    def load_models(self) -> None:
        """Loads every configured model; raises StartupError naming one that fails."""
        configure_tensorflow_threads(self.options)
        config = self.options.model_server_config()
        if self.options.model_config_file:
            with open(self.options.model_config_file, encoding="utf-8") as f:
                self._config_text = f.read()
        self.manager.apply_config(config, initial=True)
        self.manager.start()
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self._config_thread = threading.Thread(
                target=self._poll_config, name="model_config_poll", daemon=True
            )
            self._config_thread.start()

    def _poll_config(self) -> None:
        path = self.options.model_config_file
        while not self._config_stop.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if text == self._config_text:
                    continue
                self._config_text = text
                log.info("Reloading model config from %s", path)
                self.manager.apply_config(read_model_server_config(path))
            except Exception:  # noqa: BLE001 - a bad edit must not stop the server.
                log.exception("Failed to reload model config file %s", path)

    # ---------------------------------------------------------------- serving

    async def start(self) -> None:
        """Binds gRPC and (if enabled) REST on the running loop."""
        options = self.options
        self._stopping = asyncio.Event()
        await self.core.prime()
        self._grpc, self.grpc_port = await grpc_service.start_server(self.core, options)
        if options.rest_api_port != 0:
            console = None
            if options.console:
                from model_server.console import Console

                console = Console(self.core, grpc_target=f"{options.host}:{self.grpc_port}",
                                  body_timeout_ms=options.rest_api_body_timeout_in_ms)
            rest = RestApi(
                self.core,
                timeout_ms=options.rest_api_timeout_in_ms,
                max_body_bytes=options.rest_api_max_body_bytes,
                body_timeout_ms=options.rest_api_body_timeout_in_ms,
                num_threads=options.rest_api_num_threads,
                cors=options.rest_api_enable_cors_support,
                prometheus_path=options.prometheus_path(),
                console=console,
            )
            self._http = HttpServer(rest.application(),
                                    header_timeout_s=options.rest_api_header_timeout_in_ms / 1000)
            # -1 (a tfbake extension) picks a free port, reported by announce(); the
            # processes of --num_workers share theirs.
            self.rest_port = await self._http.start(options.host, options.rest_api_port,
                                                    reuse_port=options.worker_index >= 0)

    def announce(self) -> None:
        """Says on stdout where the server listens (tests and tools wait for it)."""
        announce(self.options, self.grpc_port, self.rest_port)

    async def wait_stopped(self) -> None:
        """Serves until :meth:`request_stop`, then shuts down gracefully."""
        await self._stopping.wait()
        await self.shutdown()

    def request_stop(self) -> None:
        """Asks a running server to stop (safe from a signal handler)."""
        if self._stopping is not None:
            self._stopping.set()

    async def shutdown(self) -> None:
        """Stops accepting; answers every request already received (within
        ``--shutdown_grace_period_in_ms``); releases everything."""
        grace_s = self.options.shutdown_grace_period_in_ms / 1000
        log.info("Stopping: answering the requests received, for up to %g s", grace_s)
        tasks = []
        if self._grpc is not None:
            tasks.append(self._grpc.stop(grace_s))
        if self._http is not None:
            tasks.append(self._http.stop(grace_s))
        await asyncio.gather(*tasks, return_exceptions=True)
        self._config_stop.set()
        self.manager.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.core.close)


def announce(options: ServerOptions, grpc_port: int, rest_port: int | None) -> None:
    """Prints tensorflow_model_server's start-up lines (see :func:`listening_address`)."""
    print(f"{GRPC_LISTENING}{options.host}:{grpc_port} ...", flush=True)
    if options.grpc_socket_path:
        print(f"{GRPC_SOCKET_LISTENING}{options.grpc_socket_path} ...", flush=True)
    if rest_port:
        print(f"{REST_LISTENING}{options.host}:{rest_port} ...", flush=True)


def configure_tensorflow_threads(options: ServerOptions) -> None:
    """TensorFlow's intra- and inter-op thread pools from the flags (and the session
    config file), as tensorflow_model_server sets its session's; possible only before
    TensorFlow has run an op in this process."""
    import tensorflow as tf

    session = options.session_config()
    intra = inter = options.tensorflow_session_parallelism
    if options.tensorflow_intra_op_parallelism or options.tensorflow_inter_op_parallelism:
        intra = options.tensorflow_intra_op_parallelism
        inter = options.tensorflow_inter_op_parallelism
    if session is not None:
        intra = intra or session.intra_op_parallelism_threads
        inter = inter or session.inter_op_parallelism_threads
        others = sorted(f.name for f, _ in session.ListFields()
                        if f.name not in ("intra_op_parallelism_threads",
                                          "inter_op_parallelism_threads"))
        if others:
            log.warning("%s: only the thread counts of a ConfigProto apply here; "
                        "ignored: %s", options.tensorflow_session_config_file, ", ".join(others))
    pools = tf.config.threading
    for value, current, setter, name in (
        (intra, pools.get_intra_op_parallelism_threads(),
         pools.set_intra_op_parallelism_threads, "intra"),
        (inter, pools.get_inter_op_parallelism_threads(),
         pools.set_inter_op_parallelism_threads, "inter"),
    ):
        if value and value != current:
            try:
                setter(value)
            except RuntimeError:
                log.warning("TensorFlow already runs in this process: its %s-op threads stay "
                            "%s (asked for %d)", name, current or "automatic", value)


async def _serve_until_signal(server: ModelServer) -> None:
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, server.request_stop)
    server.announce()
    await server.wait_stopped()


def main(argv: list[str] | None = None) -> int:
    """``python -m model_server`` / ``tfbake serve``: tensorflow_model_server's flags.

    Returns the exit status: 0 after a graceful stop (SIGTERM/SIGINT), 1 when the
    flags or configuration are wrong or a configured model cannot be loaded.
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        options = parse_flags(argv)
    except ConfigError as e:
        print(f"model_server: {e}", file=sys.stderr, flush=True)
        return 1
    # Several processes log to one stream: each line says which.
    process = " %(process)d" if options.num_workers > 1 else ""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname).1s{process} %(name)s] %(message)s",
        stream=sys.stderr,
    )
    if options.num_workers > 1 and options.worker_index < 0:
        from model_server import workers

        return workers.run(options, argv)
    try:
        server = ModelServer(options)
        server.load_models()
    except (ConfigError, StartupError) as e:
        print(f"model_server: {e}", file=sys.stderr, flush=True)
        return 1
    try:
        asyncio.run(_serve_until_signal(server))
    except OSError as e:
        print(f"model_server: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


class RunningServer:
    """A server running in a background thread (see :func:`serve`)."""

    def __init__(self, server: ModelServer):
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="model_server", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            self._error = e
            self._started.set()
            return
        self._started.set()
        self._loop.run_until_complete(self.server.wait_stopped())
        # As asyncio.run: what the stop cancelled finishes before the loop closes.
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    @property
    def rest_url(self) -> str | None:
        """``http://host:port`` of the REST API, or None when it is off."""
        port = self.server.rest_port
        return f"http://{self.server.options.host}:{port}" if port else None

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the gRPC API."""
        return f"{self.server.options.host}:{self.server.grpc_port}"

    def stop(self) -> None:
        """Graceful stop; returns when the server is down."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.server.request_stop)
            self._thread.join()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningServer(rest={self.rest_url}, grpc={self.grpc_target})"


def serve(
    model_base_path: str | None = None,
    *,
    model_name: str = "default",
    model_config_file: str | None = None,
    port: int = 0,
    rest_api_port: int | None = None,
    host: str = "127.0.0.1",
    **flags,
) -> RunningServer:
    """Starts a server in this process, in a background thread, and returns it loaded.

    ``port=0`` picks a free gRPC port; ``rest_api_port=None`` a free REST port (0
    turns REST off). Other keyword arguments are the flags of ``python -m
    model_server`` (``enable_batching=True``, ``batching_parameters_file=...``).
    Use as a context manager, or call ``.stop()``::

        with model_server.serve("artifacts/penguins/export", model_name="penguins") as s:
            model_server.Client(s.rest_url).classify("penguins", rows)
    """
    if flags.get("num_workers", 1) > 1:
        raise ConfigError("num_workers > 1 runs separate server processes: start them "
                          "with `python -m model_server --num_workers N` or `tfbake serve`")
    options = ServerOptions(
        port=port,
        rest_api_port=-1 if rest_api_port is None else rest_api_port,
        host=host,
        model_name=model_name,
        model_base_path=os.path.abspath(model_base_path) if model_base_path else None,
        model_config_file=model_config_file,
        **flags,
    )
    server = ModelServer(options)
    server.load_models()
    return RunningServer(server)
