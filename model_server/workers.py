"""Several server processes sharing the gRPC and REST ports (``--num_workers N``).

One Python process answers requests on one core (its event loop decodes JSON and
protobufs, writes sockets and schedules the model calls). With ``--num_workers N``
the process started becomes a parent that:

- reserves the gRPC and REST ports (a free one where the flags ask for one);
- starts N ``python -m model_server`` processes with the same flags and those ports,
  each loading every model itself and binding both ports with ``SO_REUSEPORT``: the
  kernel spreads new connections over the N listeners (a connection stays with the
  process that accepted it);
- announces the addresses once every process has loaded its models and listens;
- passes SIGTERM and SIGINT on to every process, each of which answers what it has
  received and stops as a lone server does, and exits 0 when all of them did.
  A process that dies on its own stops the others, and the parent exits 1 (for a
  supervisor to restart the whole).

Each process watches the model base paths itself (``--file_system_poll_wait_seconds``):
for a new version, processes may differ for up to one poll interval plus the load.
Metrics are summed over the processes (prometheus-client's multiprocess mode, in a
temporary folder removed when the parent exits). ``--grpc_socket_path`` is served
by the first process only (a UNIX socket cannot be shared), and
``HandleReloadConfigRequest`` is refused (it would reach one process).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from model_server.config import ServerOptions

log = logging.getLogger("model_server")

# How often the parent looks at its children.
_POLL_S = 0.2


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (``port`` < 1: a free one) in the port's
    SO_REUSEPORT group, not listening: it holds the port until the workers bind it.
    Raises OSError when another program holds the port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, max(port, 0)))
    except OSError as e:
        sock.close()
        raise OSError(f"Could not bind {host}:{port}: {e}") from e
    return sock


class _Worker:
    """One server process and the lines it printed."""

    def __init__(self, index: int, command: list[str], env: dict, lines: queue.Queue):
        self.index = index
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        self.addresses: dict[str, str] = {}
        self._reader = threading.Thread(target=self._read, args=(lines,), daemon=True,
                                        name=f"worker{index}_stdout")
        self._reader.start()

    def _read(self, lines: queue.Queue) -> None:
        from model_server.server import GRPC_SOCKET_LISTENING, listening_address

        for line in self.process.stdout:
            kind_and_address = listening_address(line)
            if kind_and_address is not None:
                lines.put((self, *kind_and_address))
            elif not line.startswith(GRPC_SOCKET_LISTENING):  # the parent announces it
                sys.stdout.write(line)  # anything else a worker prints is passed on
                sys.stdout.flush()
        lines.put((self, None, None))

    def signal(self, sig: int) -> None:
        """Sends ``sig`` unless the process has exited."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def __repr__(self) -> str:
        return f"worker {self.index} (pid {self.process.pid})"


def run(options: ServerOptions, argv: list[str]) -> int:
    """Runs ``options.num_workers`` server processes started with ``argv`` (the
    parent's own flags) until SIGTERM/SIGINT; returns the exit status."""
    from model_server.server import announce

    try:
        grpc_socket = reserve_port(options.host, options.port)
        rest_socket = (reserve_port(options.host, options.rest_api_port)
                       if options.rest_api_port != 0 else None)
    except OSError as e:
        print(f"model_server: {e}", file=sys.stderr, flush=True)
        return 1
    grpc_port = grpc_socket.getsockname()[1]
    rest_port = rest_socket.getsockname()[1] if rest_socket is not None else 0
    metrics_dir = tempfile.mkdtemp(prefix="tfbake-serving-metrics-")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=metrics_dir)
    command = [sys.executable, "-m", "model_server", *argv,
               f"--port={grpc_port}", f"--rest_api_port={rest_port}"]
    workers: list[_Worker] = []
    stopping = threading.Event()

    def stop(signum, frame):
        stopping.set()
        for worker in workers:
            worker.signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    lines: queue.Queue = queue.Queue()
    try:
        for index in range(options.num_workers):
            workers.append(_Worker(index, [*command, f"--worker_index={index}"], env, lines))
        if stopping.is_set():  # a signal came while they were being started
            stop(None, None)
        expected = {"grpc", "rest"} if rest_socket is not None else {"grpc"}
        ready = 0
        while ready < len(workers):
            worker, kind, address = lines.get()
            if kind is None:
                status = worker.process.wait()
                if stopping.is_set():
                    return _wait_all(workers, status)
                log.error("%s exited with status %s before serving; stopping the others",
                          worker, status)
                stop(None, None)
                _wait_all(workers, status)
                return 1
            worker.addresses[kind] = address
            if set(worker.addresses) == expected:
                ready += 1
        grpc_socket.close()
        if rest_socket is not None:
            rest_socket.close()
        log.info("%d server processes serve: %s", len(workers),
                 ", ".join(f"pid {w.process.pid}" for w in workers))
        announce(options, grpc_port, rest_port)
        return _supervise(workers, stopping, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for worker in workers:  # only after an error: each has exited otherwise
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
        grpc_socket.close()
        if rest_socket is not None:
            rest_socket.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(workers: list[_Worker], stopping: threading.Event, stop) -> int:
    """Waits until every worker has exited: 0 when they stopped on a signal and
    each exited 0."""
    while not stopping.is_set():
        for worker in workers:
            status = worker.process.poll()
            if status is not None and not stopping.is_set():
                log.error("%s exited with status %s; stopping the others", worker, status)
                stop(None, None)
                _wait_all(workers, status)
                return 1
        time.sleep(_POLL_S)
    return _wait_all(workers, 0)


def _wait_all(workers: list[_Worker], status: int) -> int:
    """Waits for every worker; 0 when ``status`` and every exit status are 0."""
    statuses = [worker.process.wait() for worker in workers]
    return 0 if status == 0 and not any(statuses) else 1
