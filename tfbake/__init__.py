"""tfbake: the config model and the CLI, the only package that knows every stage."""

import importlib.abc as _abc
import importlib.util as _util
import os as _os
import sys as _sys

# The stage packages. Installed, they are subpackages of this one (setup.py's
# package_dir); a source checkout keeps their folders at the top of the repository,
# beside this one, and this finder imports them from there as tfbake.<stage>.
STAGES = ("transform", "trainer", "serving_input", "model_server")
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))


class _CheckoutStages(_abc.MetaPathFinder):
    """Finds ``tfbake.<stage>`` in a source checkout's ``<stage>/`` folder."""

    def find_spec(self, fullname, path=None, target=None):
        stage = fullname.removeprefix(__name__ + ".")
        folder = _os.path.join(_checkout, stage)
        if stage not in STAGES or not _os.path.isfile(_os.path.join(folder, "__init__.py")):
            return None
        return _util.spec_from_file_location(
            fullname, _os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
        )


if not _os.path.isdir(_os.path.join(__path__[0], "trainer")) and not any(
    isinstance(f, _CheckoutStages) for f in _sys.meta_path
):
    _sys.meta_path.append(_CheckoutStages())
