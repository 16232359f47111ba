"""A TensorFlow Serving-compatible model server and its client.

``python -m tfbake.model_server --model_name=m --model_base_path=/models/m --rest_api_port=8501``
serves an export folder of integer-named SavedModel versions (or any SavedModel) over
TF Serving's REST and gRPC APIs, with every flag of ``tensorflow_model_server`` (see
docs/tf_serving.md); ``tfbake serve`` is the same command.

- :func:`main`: the command line (tensorflow_model_server's flags);
- :func:`serve`: a server in this process, for scripts and tests;
- :class:`Client`: REST or gRPC (two transports behind one interface), plain dicts /
  tf.Examples / tensors in (``tfbake predict`` streams a file through it).

The modules follow TF Serving's concepts: :mod:`~tfbake.model_server.source`,
:mod:`~tfbake.model_server.version_policy`, :mod:`~tfbake.model_server.loader`,
:mod:`~tfbake.model_server.manager`, :mod:`~tfbake.model_server.core` (one request-handling core),
:mod:`~tfbake.model_server.rest` and :mod:`~tfbake.model_server.grpc_service` (thin adapters),
:mod:`~tfbake.model_server.http_server` (timeouts, draining on SIGTERM),
:mod:`~tfbake.model_server.batching`, :mod:`~tfbake.model_server.metrics`;
:mod:`~tfbake.model_server.workers` runs several server processes on the same ports.

Each name is imported on first use, so ``python -m tfbake.model_server`` imports
TensorFlow as its ``__main__`` says (:mod:`tfbake.serving_runtime`).
"""

from tfbake.serving_input.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".client": ["Client"],
    ".config": ["ServerOptions"],
    ".errors": ["ServingError"],
    ".server": ["RunningServer", "listening_address", "main", "serve"],
})
__all__ = __dir__()
