"""``python -m tfbake.model_server``: a TF Serving-compatible model server."""

import sys

from tfbake.model_server.server import main

if __name__ == "__main__":
    sys.exit(main())
