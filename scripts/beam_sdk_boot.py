#!/usr/bin/env python3
"""Boots one Beam Python SDK worker as Beam's SDK container does, without the container.

Beam's worker pool (``worker_pool_main --container_executable=THIS``) runs it with the
Fn API container contract's flags (``--id``, ``--provision_endpoint``,
``--artifact_endpoint``, ``--logging_endpoint``, ``--control_endpoint``). Like the
container's boot program it

1. asks the runner for the job's provision info (pipeline options, staged files);
2. retrieves the staged files into ``<work dir>/staged``: ``--setup_file``'s sdist
   (``workflow.tar.gz``), ``--extra_package``s (listed in ``extra_packages.txt``), a
   saved main session;
3. installs the packages with pip into ``<work dir>/site``, offline and without their
   dependencies, which the worker's environment (this Python, the launcher's) already
   holds; for the same reason a ``--requirements_file`` is not installed (said in the
   log);
4. becomes ``python -m apache_beam.runners.worker.sdk_worker_main`` with that folder on
   ``PYTHONPATH`` and the contract's environment, so the worker applies the pipeline
   options and sends its log to the runner (the job's log).

Without it, the stock pool starts workers that install nothing and log nowhere. The
work dir is ``$BEAM_WORKER_WORK_DIR/<worker id>`` (set by ``beam_portable.py
worker_pool``, which removes it), else a new temporary folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import grpc
from apache_beam.portability import common_urns
from apache_beam.portability.api import (
    beam_artifact_api_pb2,
    beam_artifact_api_pb2_grpc,
    beam_provision_api_pb2,
    beam_provision_api_pb2_grpc,
    beam_runner_api_pb2,
    endpoints_pb2,
)
from apache_beam.runners.portability.stager import (
    EXTRA_PACKAGES_FILE,
    REQUIREMENTS_FILE,
    WORKFLOW_TARBALL_FILE,
)
from google.protobuf import json_format, text_format

WORK_DIR_ENV = "BEAM_WORKER_WORK_DIR"


def log(message: str) -> None:
    print(f"beam_sdk_boot[pid {os.getpid()}]: {message}", file=sys.stderr, flush=True)


def provision_info(endpoint: str, worker_id: str) -> beam_provision_api_pb2.ProvisionInfo:
    with grpc.insecure_channel(endpoint) as channel:
        stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
        request = beam_provision_api_pb2.GetProvisionInfoRequest()
        return stub.GetProvisionInfo(request, metadata=[("worker_id", worker_id)]).info


def retrieve(endpoint: str, dependencies, staged_dir: str) -> list[str]:
    """Writes each staged file into ``staged_dir`` under its staged name; returns the names."""
    os.makedirs(staged_dir, exist_ok=True)
    names = []
    options = [("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(endpoint, options=options) as channel:
        stub = beam_artifact_api_pb2_grpc.ArtifactRetrievalServiceStub(channel)
        for artifact in dependencies:
            if artifact.role_urn != common_urns.artifact_roles.STAGING_TO.urn:
                continue
            name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                artifact.role_payload
            ).staged_name
            with open(os.path.join(staged_dir, name), "wb") as f:
                request = beam_artifact_api_pb2.GetArtifactRequest(artifact=artifact)
                for chunk in stub.GetArtifact(request):
                    f.write(chunk.data)
            names.append(name)
    return names


def pip_install(site_dir: str, args: list[str]) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-index", "--no-build-isolation", "--target", site_dir, *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        log(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        sys.exit(1)


def install(staged_dir: str, names: list[str], site_dir: str) -> None:
    """Installs the staged packages: the extra packages, then the setup file's sdist (the
    order of Beam's container boot)."""
    if REQUIREMENTS_FILE in names:
        # Installed into site_dir, they would shadow the environment's own copies
        # (TensorFlow...), which this worker shares with the launcher.
        log(f"{REQUIREMENTS_FILE} is not installed: this worker has the launcher's packages")
    packages = []
    if EXTRA_PACKAGES_FILE in names:
        with open(os.path.join(staged_dir, EXTRA_PACKAGES_FILE)) as f:
            packages += [os.path.join(staged_dir, line.strip()) for line in f if line.strip()]
    if WORKFLOW_TARBALL_FILE in names:
        packages.append(os.path.join(staged_dir, WORKFLOW_TARBALL_FILE))
    if packages:
        pip_install(site_dir, ["--no-deps", *packages])
        log(f"installed {', '.join(os.path.basename(p) for p in packages)} into {site_dir}")


def descriptor(url: str) -> str:
    return text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag in ("id", "provision_endpoint", "artifact_endpoint", "logging_endpoint",
                 "control_endpoint"):
        parser.add_argument(f"--{flag}", required=True)
    parser.add_argument("--semi_persist_dir", default=None)
    args, _ = parser.parse_known_args(argv)
    # The pool reads nothing from the worker's stdout; keep every line in its log.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    work_dir = args.semi_persist_dir
    if work_dir is None and os.environ.get(WORK_DIR_ENV):
        work_dir = os.path.join(os.environ[WORK_DIR_ENV], args.id)
    work_dir = work_dir or tempfile.mkdtemp(prefix=f"beam-{args.id}-")
    os.makedirs(work_dir, exist_ok=True)
    info = provision_info(args.provision_endpoint, args.id)
    staged_dir = os.path.join(work_dir, "staged")  # where sdk_worker_main looks too
    site_dir = os.path.join(work_dir, "site")
    install(staged_dir, retrieve(args.artifact_endpoint, info.dependencies, staged_dir), site_dir)

    env = dict(os.environ)
    env.update(
        WORKER_ID=args.id,
        PIPELINE_OPTIONS=json_format.MessageToJson(info.pipeline_options),
        SEMI_PERSISTENT_DIRECTORY=work_dir,
        LOGGING_API_SERVICE_DESCRIPTOR=descriptor(args.logging_endpoint),
        CONTROL_API_SERVICE_DESCRIPTOR=descriptor(args.control_endpoint),
        RUNNER_CAPABILITIES=" ".join(info.runner_capabilities),
        PYTHONPATH=os.pathsep.join(p for p in (site_dir, env.get("PYTHONPATH")) if p),
    )
    if info.HasField("status_endpoint"):
        env["STATUS_API_SERVICE_DESCRIPTOR"] = descriptor(info.status_endpoint.url)
    log(f"SDK worker {args.id} starting in {work_dir}")
    command = [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"]
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()
