"""Paths in a config: one rule, whichever process reads them.

A relative path is relative to the directory you run ``tfbake`` from, and is made
absolute when the config loads: Beam workers and training workers run in folders of
their own and must open the same files. Paths with a scheme (``gs://``, ``hdfs://``,
``s3://``) are left as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator

# The tfbake flag that says a non-local Beam runner's workers do see this machine's
# files (a shared mount, or workers on this machine).
WORKERS_SEE_LOCAL_FILES = "--workers_see_local_files"


def is_remote(path: str) -> bool:
    """Whether ``path`` names a file system by scheme (``gs://bucket/x``), not a local file."""
    return "://" in path


def absolute(path: str) -> str:
    """A local ``path`` resolved against the current folder; a remote one unchanged."""
    return path if is_remote(path) else os.path.abspath(path)


# A config field holding a file, folder or glob.
ConfigPath = Annotated[str, AfterValidator(absolute)]


class LocalPathError(ValueError):
    """A local path given to a Beam job whose workers may not see this machine's files."""


def check_workers_can_read(paths: Mapping[str, str], runner: str) -> None:
    """Raises :class:`LocalPathError` naming the first config key (of ``paths``: key ->
    path) that holds a local path, for a job on ``runner``'s remote workers."""
    for key, path in paths.items():
        if not is_remote(path):
            raise LocalPathError(
                f"{key}: {path} is a path on this machine, but the Beam job runs on "
                f"{runner}, whose workers may not see this machine's files. Put it on "
                "storage every worker reads (gs://, hdfs://, s3://...), or, when the "
                "workers do see these files (a shared mount, workers on this machine), "
                f"pass {WORKERS_SEE_LOCAL_FILES}"
            )
