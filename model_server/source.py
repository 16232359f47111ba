"""FileSystemStoragePathSource: the versions found under a model's base path.

A child folder whose name parses as an integer is a version (``0001`` is version 1;
``v1`` is ignored), as in TF Serving. A folder without ``saved_model.pb`` (or
``.pbtxt``) yet is skipped until it has one, so a version being copied in is not
loaded half-written; write versions atomically (copy, then rename) all the same.
"""

from __future__ import annotations

import logging
import os

from tfbake.serving_input.export_layout import SAVED_MODEL_FILES, version_of

log = logging.getLogger(__name__)


class BasePathNotFound(FileNotFoundError):
    """The model's base path does not exist."""


class FileSystemSource:
    """Lists the integer-named versions under one base path."""

    def __init__(self, servable_name: str, base_path: str):
        self.servable_name = servable_name
        self.base_path = base_path
        self._warned_empty = False

    def __repr__(self) -> str:
        return f"FileSystemSource({self.servable_name!r}, {self.base_path!r})"

    def scan(self) -> dict[int, str]:
        """Version -> folder path, for every complete version folder present now."""
        try:
            names = os.listdir(self.base_path)
        except FileNotFoundError:
            raise BasePathNotFound(
                f"Could not find base path {self.base_path} for servable {self.servable_name}"
            ) from None
        versions: dict[int, str] = {}
        for name in names:
            version = version_of(name)
            if version is None:
                continue
            path = os.path.join(self.base_path, name)
            if not any(os.path.exists(os.path.join(path, f)) for f in SAVED_MODEL_FILES):
                continue
            # Two folders for one version ("1" and "0001"): the first seen wins, as
            # TF Serving keeps one path per version.
            versions.setdefault(version, path)
        if not versions and not self._warned_empty:
            log.warning(
                "No versions of servable %s found under base path %s",
                self.servable_name, self.base_path,
            )
        self._warned_empty = not versions
        return versions
