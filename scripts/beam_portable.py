"""Beam's portable runner on this machine: a job server and an SDK worker pool.

    python scripts/beam_portable.py job_server --port 8099 --num_workers 2
    python scripts/beam_portable.py worker_pool --port 50000
    tfbake run CONFIG --runner=PortableRunner --job_endpoint=127.0.0.1:8099 \\
        --environment_type=EXTERNAL --environment_config=127.0.0.1:50000 \\
        --workers_see_local_files

The same Fn API that Flink, Spark and Dataflow speak, with SDK workers in other
processes started from another folder, so a job that passes here does not depend on
the launcher's folder, its ``sys.path`` or its memory. Both listen on 127.0.0.1 only
(the runner inside the job server opens its data-plane ports on every interface, as
Beam's FnApiRunner always does). Run them with this Python's ``bin`` first on
``PATH``: the SDK workers are started as ``python``.

- ``job_server``: Beam's local job service, whose FnApiRunner starts one SDK worker
  whatever the pipeline's ``--direct_num_workers`` or ``--sdk_worker_parallelism``
  say; here each job gets ``--num_workers``, and every stage's bundles are split
  among them.
- ``worker_pool``: Beam's external worker pool, starting each SDK worker through
  ``scripts/beam_sdk_boot.py`` (the SDK container's boot contract), which installs the
  job's ``--setup_file``/``--extra_package``/``--requirements_file`` on the worker and
  sends the worker's log to the job server's.

:func:`portable_runner` starts both for a test or a benchmark and stops them by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BOOT = Path(__file__).resolve().parent / "beam_sdk_boot.py"
LOOPBACK = "127.0.0.1"
WORK_DIR_ENV = "BEAM_WORKER_WORK_DIR"  # read by beam_sdk_boot.py


def job_server(port: int, num_workers: int) -> None:
    """Serves Beam's job API on 127.0.0.1:``port``; each job runs on ``num_workers``
    SDK workers."""
    from apache_beam.portability.api import beam_job_api_pb2
    from apache_beam.runners.portability import local_job_service
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    class Job(local_job_service.BeamJob):
        def _invoke_runner(self):
            self.set_state(beam_job_api_pb2.JobState.RUNNING)
            runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
            # What FnApiRunner.run_pipeline sets from --direct_num_workers; the job
            # service calls run_via_runner_api, which never reads it.
            runner._num_workers = num_workers
            return runner.run_via_runner_api(self._pipeline_proto, self.pipeline_options())

    class Servicer(local_job_service.LocalJobServicer):
        def get_service_address(self):
            return LOOPBACK

    servicer = Servicer(beam_job_type=Job)
    port = servicer.start_grpc_server(port)
    _serve(f"Beam job server on {LOOPBACK}:{port}, {num_workers} SDK workers per job")
    servicer.stop()


def worker_pool(port: int) -> None:
    """Serves Beam's external worker pool on 127.0.0.1:``port``, booting each SDK worker
    with ``beam_sdk_boot.py`` in a work folder removed on exit."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker import worker_pool_main
    from apache_beam.utils import thread_pool_executor

    work_dir = tempfile.mkdtemp(prefix="beam-worker-pool-")
    os.environ[WORK_DIR_ENV] = work_dir  # the workers inherit it
    pool = worker_pool_main.BeamFnExternalWorkerPoolServicer(
        use_process=True, container_executable=str(BOOT)
    )
    server = grpc.server(thread_pool_executor.shared_unbounded_instance())
    port = server.add_insecure_port(f"{LOOPBACK}:{port}")
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    try:
        _serve(f"Beam worker pool on {LOOPBACK}:{port}")
    finally:
        server.stop(0)
        # As Beam's own worker_pool_main does at exit: stop the workers still running.
        for process in list(pool._worker_processes.values()):
            worker_pool_main.kill_process_gracefully(process)
        shutil.rmtree(work_dir, ignore_errors=True)


def _serve(banner: str) -> None:
    """Prints ``banner`` (how a starter learns the port) and waits for SIGTERM/SIGINT."""
    print(banner, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        return


def _start(args: list[str], cwd: Path, log: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """Starts this script with ``args``; returns the process and its ``host:port``."""
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, __file__, *args], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=err, text=True,
        )
    banner = process.stdout.readline()
    if not banner:
        process.wait()
        raise RuntimeError(f"{args[0]} exited {process.returncode}: {log.read_text()[-3000:]}")
    return process, banner.split(" on ", 1)[1].split(",")[0].strip()


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def portable_runner(work_dir: Path, num_workers: int = 2) -> Iterator[dict]:
    """Starts a job server (``num_workers`` SDK workers per job) and a worker pool, both
    in ``work_dir`` (their logs: ``job_server.log``, ``worker_pool.log``); yields
    ``{"beam_args": [...], "job_server": Popen, "worker_pool": Popen, "job_log": Path,
    "pool_log": Path}``; stops both by pid."""
    work_dir = Path(work_dir)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    job_log, pool_log = work_dir / "job_server.log", work_dir / "worker_pool.log"
    pool, pool_address = _start(["worker_pool", "--port=0"], work_dir, pool_log, env)
    try:
        server, job_address = _start(
            ["job_server", "--port=0", f"--num_workers={num_workers}"], work_dir, job_log, env
        )
        try:
            yield {
                "beam_args": [
                    "--runner=PortableRunner",
                    f"--job_endpoint={job_address}",
                    "--environment_type=EXTERNAL",
                    f"--environment_config={pool_address}",
                ],
                "job_server": server,
                "worker_pool": pool,
                "job_log": job_log,
                "pool_log": pool_log,
            }
        finally:
            _stop(server)
    finally:
        _stop(pool)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("job_server", help="Beam's job API with N SDK workers per job")
    server.add_argument("--port", type=int, default=8099, help="0: any free port")
    server.add_argument("--num_workers", type=int, default=2)
    pool = sub.add_parser("worker_pool", help="Beam's external SDK worker pool")
    pool.add_argument("--port", type=int, default=50000, help="0: any free port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "job_server":
        job_server(args.port, args.num_workers)
    else:
        worker_pool(args.port)


if __name__ == "__main__":
    main()
