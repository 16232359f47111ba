"""A package's public names, imported on first use (PEP 562).

``import transform`` (or ``trainer``, ``serving_input``) then costs nothing: a
command that only reads its config never loads Beam or TensorFlow, while
``transform.run`` still works as written.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` whose public names are
    ``exports`` (submodule, relative like ``".pipeline"`` -> the names it defines)."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    def __dir__() -> list[str]:
        return sorted(module_of)

    return __getattr__, __dir__
