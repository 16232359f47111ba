"""A TensorFlow Serving-compatible model server and its client.

``python -m model_server --model_name=m --model_base_path=/models/m --rest_api_port=8501``
serves an export folder of integer-named SavedModel versions (or any SavedModel) over
TF Serving's REST and gRPC APIs, with every flag of ``tensorflow_model_server`` (see
docs/tf_serving.md); ``tfbake serve`` is the same command.

- :func:`main`: the command line (tensorflow_model_server's flags);
- :func:`serve`: a server in this process, for scripts and tests;
- :class:`Client`: REST or gRPC, plain dicts / tf.Examples / tensors in;
- :func:`predict_file` / :func:`cli_predict`: a CSV or JSONL file through a server.

The modules follow TF Serving's concepts: :mod:`~model_server.source`,
:mod:`~model_server.version_policy`, :mod:`~model_server.loader`,
:mod:`~model_server.manager`, :mod:`~model_server.core` (one request-handling core),
:mod:`~model_server.rest` and :mod:`~model_server.grpc_service` (thin adapters),
:mod:`~model_server.http_server` (timeouts, draining on SIGTERM),
:mod:`~model_server.batching`, :mod:`~model_server.metrics`;
:mod:`~model_server.workers` runs several server processes on the same ports.
"""

from model_server.client import Client, cli_predict, predict_file
from model_server.config import ServerOptions
from model_server.errors import ServingError
from model_server.server import RunningServer, listening_address, main, serve

__all__ = [
    "Client",
    "RunningServer",
    "ServerOptions",
    "ServingError",
    "cli_predict",
    "listening_address",
    "main",
    "predict_file",
    "serve",
]
