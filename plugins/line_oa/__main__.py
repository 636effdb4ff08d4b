"""Run the command line: ``python -m line_oa validate``, ``python -m line_oa render FILE``."""

import sys

from line_oa.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
