"""``python -m tfbake.model_server``: a TF Serving-compatible model server."""

import sys

from tfbake.serving_runtime import import_tensorflow

import_tensorflow()
from tfbake.model_server.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
