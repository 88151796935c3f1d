"""``python -m sim2real.cli ARGS`` runs the ``sim2real`` command (what the console script
runs), e.g. for a child process started with this interpreter."""

import sys

from sim2real.cli.main import main

sys.exit(main())
