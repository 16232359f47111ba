"""TensorFlow's start-up logs, quiet unless ``--verbose``.

Importing TensorFlow prints C++ log lines (oneDNN, CUDA drivers not found, a
``cuInit`` error on a machine without a GPU) before it reads any setting, and its
Python loggers warn about deprecations. A ``tfbake`` command shows none of that
unless given ``--verbose``: ``TF_CPP_MIN_LOG_LEVEL`` (when the user has not set it)
hides the C++ logs from then on, and what the import itself writes to the process's
stderr is held back, and shown only if the import fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence

VERBOSE = "--verbose"


def is_verbose(argv: Sequence[str]) -> bool:
    """Whether the command line asks for TensorFlow's logs."""
    return VERBOSE in argv


@contextlib.contextmanager
def tensorflow_import(argv: Sequence[str]) -> Iterator[None]:
    """Wrap the first import of TensorFlow: quiet unless ``argv`` holds ``--verbose``."""
    if is_verbose(argv):
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    held = tempfile.TemporaryFile()
    os.dup2(held.fileno(), 2)  # C++ writes to the file descriptor, not sys.stderr
    try:
        yield
    except BaseException:
        os.dup2(saved, 2)
        held.seek(0)
        sys.stderr.write(held.read().decode("utf-8", "replace"))
        raise
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        held.close()
    import logging

    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
