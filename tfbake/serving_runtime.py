"""TensorFlow for a model server, without the training libraries its import pulls in.

``import tensorflow`` also imports Keras (Keras 3, or tf_keras where
``TF_USE_LEGACY_KERAS`` is set, as tf.Transform sets it for its child processes) so that
the optimizers Keras registers are known to SavedModels that hold one; Keras 3 brings
pandas and matplotlib along. It imports Google's API client too, for a cluster resolver
on Google Compute Engine. Together that is about 1 s of TensorFlow's 4 s import on a
2-core machine, and a server uses none of it: it never builds or trains a Keras model,
and it loads a SavedModel's graph into a TF1 session, as TensorFlow Serving (which has
no Keras at all) does, which needs no Python class of any object saved. So the serving
commands import TensorFlow with those packages hidden; they stay importable after it
(the first use of ``tf.keras`` imports Keras then).
"""

from __future__ import annotations

import sys

# What `import tensorflow` imports only when it finds them installed.
NOT_FOR_SERVING = ("keras", "tf_keras", "googleapiclient")


def import_tensorflow() -> None:
    """Imports TensorFlow (once per process) with :data:`NOT_FOR_SERVING` hidden."""
    if "tensorflow" in sys.modules:
        return
    hidden = [name for name in NOT_FOR_SERVING if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # an import of it raises ImportError, which TF handles
    try:
        import tensorflow  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
