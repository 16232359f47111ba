"""``python -m model_server``: a TF Serving-compatible model server."""

import sys

from model_server.server import main

if __name__ == "__main__":
    sys.exit(main())
