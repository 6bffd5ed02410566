"""Sphinx configuration for the pytest-gold documentation.

Build with:  sphinx-build -W -b html docs docs/_build/html
The pages are hand-written; the build does not import pytest_gold or ipyparallel.
"""

from __future__ import annotations

import re
from pathlib import Path

project = "pytest-gold"
author = "the pytest-gold authors"
copyright = "the pytest-gold authors"


def _version() -> str:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
    except OSError:
        return ""
    return match.group(1) if match else ""


release = version = _version()

extensions: list[str] = []
root_doc = "index"
exclude_patterns = ["_build"]
highlight_language = "none"

html_theme = "alabaster"
html_title = f"pytest-gold {release}".strip()
html_theme_options = {
    "description": "Run pytest simulation sweeps on an IPython Parallel cluster",
    "fixed_sidebar": True,
}
