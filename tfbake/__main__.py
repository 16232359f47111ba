import sys

from tfbake.cli import main

sys.exit(main())
