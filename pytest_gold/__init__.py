"""pytest-gold: run pytest simulation sweeps on the engines of an IPython Parallel cluster.

PYTEST_DONT_REWRITE: the plugin has no assertions to rewrite, and its own tests load it
in-process more than once.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pytest-gold")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
