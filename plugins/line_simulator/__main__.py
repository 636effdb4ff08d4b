"""Run ``python -m line_simulator``."""

import sys

from line_simulator.cli import main

sys.exit(main())
