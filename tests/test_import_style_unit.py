"""pytest-gold imports its own submodules by their full name, never as a package's attribute.

``from pytest_gold.policy import runjoin`` takes the package's ``runjoin`` attribute when it
has one; pytester's in-process runs restore ``sys.modules`` after each run but not the
attributes of packages imported before it, so a second ``pytest --gold`` in one process got
the first run's ``runjoin``: its actions were another class than the driver's, no engine was
ever checked, and the run waited ``--gold-wait`` for engines that had registered.
``import pytest_gold.policy.runjoin as runjoin`` imports the module again when it is gone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest_gold

PACKAGE = Path(pytest_gold.__file__).parent


def is_module(package: str, name: str) -> bool:
    folder = PACKAGE.parent.joinpath(*package.split("."))
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


def submodules_imported_as_attributes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_gold"):
            for alias in node.names:
                if node.level == 0 and is_module(node.module or "", alias.name):
                    found.append(
                        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: "
                        f"from {node.module} import {alias.name}"
                    )
    return found


def test_submodules_are_imported_by_their_full_name() -> None:
    found = [
        line
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in submodules_imported_as_attributes(path)
    ]
    assert not found, "use 'import pytest_gold.X.Y as Y':\n" + "\n".join(found)
