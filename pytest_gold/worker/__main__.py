"""``python -m pytest_gold.worker``: how an engine's supervisor starts a worker."""

import sys

from pytest_gold.worker.startup import main

if __name__ == "__main__":
    sys.exit(main())
