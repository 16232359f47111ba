"""A package's public names, imported on first use (PEP 562).

``import tfbake.transform`` (or ``trainer``, ``serving_input``) then costs nothing: a
command that only reads its config never loads Beam or TensorFlow, while
``transform.run`` still works as written.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping, Sequence


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` whose public names are
    ``exports`` (submodule, relative like ``".pipeline"`` -> the names it defines);
    its submodules are attributes too (``trainer.model``), imported on first use.

    A name that is also its submodule's (``trainer.warm_start``, the function of
    ``trainer/warm_start.py``) stays the name, as an eager ``from ... import`` binds
    it, when the submodule is imported later."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        module = module_of.get(name)
        if module is not None:
            return getattr(importlib.import_module(module, package), name)
        if importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")  # a submodule, as eagerly
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(module_of)

    def __setattr__(self, name: str, value) -> None:
        # The import system binds a submodule on its package when it is imported.
        if isinstance(value, types.ModuleType) and value.__name__ == f"{package}.{name}" and (
            module_of.get(name) == f".{name}"
        ):
            value = getattr(value, name)
        types.ModuleType.__setattr__(self, name, value)

    def __reduce__(self):
        # Pickled by name, as a plain module is (Beam pickles functions that use it).
        return importlib.import_module, (self.__name__,)

    sys.modules[package].__class__ = type(
        "LazyPackage", (types.ModuleType,), {"__setattr__": __setattr__, "__reduce__": __reduce__}
    )
    return __getattr__, __dir__
