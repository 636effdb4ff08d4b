"""Run ``python -m line_oa.simulator``."""

import sys

from line_oa.simulator.cli import main

sys.exit(main())
