"""``python -m tfbake.transform CONFIG [BEAM FLAGS...]``: the Beam job, as ``tfbake transform``."""

import sys

from tfbake.cli import main

sys.exit(main(["transform", *sys.argv[1:]]))
