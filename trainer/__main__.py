"""``python -m tfbake.trainer CONFIG``: train, evaluate and export a config's model."""

import sys

from tfbake.cli import main

code = main(["train", *sys.argv[1:]])
sys.exit(code or main(["export", *sys.argv[1:]]))
