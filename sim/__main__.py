"""``python -m sim``: the simulated generator as its own process (see :mod:`sim.cli`)."""

import sys

from sim.cli import main

sys.exit(main())
