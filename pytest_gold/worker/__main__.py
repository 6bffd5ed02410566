"""``python -m pytest_gold.worker``: how an engine's supervisor starts a worker."""

import sys

from pytest_gold.worker.runner import main

if __name__ == "__main__":
    sys.exit(main())
