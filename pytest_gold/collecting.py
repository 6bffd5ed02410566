"""What a worker collects, so that its node ids are the controller's.

pytest names a file inside the rootdir by its path from the rootdir, but a file outside
it (``pytest --pyargs networkx``, ``pytest ../other/test_x.py``) by its path from the
collection argument it was found under. A worker therefore collects from the very
arguments the controller's collection started from (its ``config.args``), which gives the
same collection tree and the same node ids, and prunes every path that holds no selected
case (:class:`CollectionPruner`), so that it still imports only the files it may run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest


def selected_paths(items: Iterable[pytest.Item]) -> list[str]:
    """The paths of the selected cases and of every collector above them, in order.

    The collectors' paths count too: a plugin's item may carry a path that is not the
    file its collector read (a notebook cell, a data file).
    """
    paths: dict[str, None] = {}
    seen: set[int] = set()
    for item in items:
        paths[str(item.path)] = None
        node = item.parent
        while node is not None and id(node) not in seen and not isinstance(node, pytest.Session):
            seen.add(id(node))
            paths[str(node.path)] = None
            node = node.parent
    return list(paths)


class CollectionPruner:
    """A worker's plugin: directories and files that hold no selected case are not
    collected (the collection arguments themselves always are: pytest never asks
    ``pytest_ignore_collect`` about them)."""

    def __init__(self, paths: Iterable[str]) -> None:
        keep: set[Path] = set()
        for text in paths:
            path = Path(text)
            keep.add(path)
            keep.update(path.parents)
        self.keep = frozenset(keep)

    @pytest.hookimpl(tryfirst=True)
    def pytest_ignore_collect(self, collection_path: Path) -> bool | None:
        # None: the other implementations (--ignore, collect_ignore, ...) decide, as they
        # did on the controller.
        return None if collection_path in self.keep else True
