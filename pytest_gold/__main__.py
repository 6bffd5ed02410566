"""``python -m pytest_gold``: the command line (see :mod:`pytest_gold.cli.main`)."""

import sys

from pytest_gold.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
