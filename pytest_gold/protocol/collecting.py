"""What a worker collects, so that its node ids are the controller's.

pytest names a file inside the rootdir by its path from the rootdir, but a file outside
it (``pytest --pyargs networkx``, ``pytest ../other/test_x.py``) by its path from the
collection argument it was found under. A worker therefore collects from the very
arguments the controller's collection started from (its ``config.args``), which gives the
same collection tree and the same node ids, and prunes every path that holds no selected
case (:class:`CollectionPruner`), so that it still imports only the files it may run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

#: Node ids of the worker quoted when a case was not found under the controller's.
QUOTED_NODEIDS = 5


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


def pinned_arguments(args: list[str], rootdir: str, inifile: str) -> list[str]:
    """The controller's command line, with its rootdir and configuration file named.

    A worker may start long after the controller (a campaign's replacement worker, an
    engine that joins late): an ini file or ``setup.py`` that appeared meanwhile in a
    parent directory would otherwise give it another rootdir, and so other node ids. The
    configuration file is named only if it is still there.
    """
    pinned = [*args, f"--rootdir={rootdir}"]
    if inifile and os.path.isfile(inifile):  # gone meanwhile: pytest would refuse to start
        pinned.append(f"--config-file={inifile}")
    return pinned


def not_collected_detail(
    nodeid: str,
    items: Mapping[str, pytest.Item],
    collect_errors: Mapping[str, str],
    rootpath: Path,
    controller_rootpath: Path,
) -> str:
    """What the worker's collection said about the file of a case it does not have."""
    path = nodeid.split("::", 1)[0]
    errors = [
        text
        for collector, text in collect_errors.items()
        # A collector above the file ("." is the rootdir), the file, or one inside it.
        if collector in ("", ".")
        or path.startswith(collector.rstrip("/") + "/")
        or collector == path
        or collector.startswith(path + "::")
    ]
    notes = []
    if rootpath != controller_rootpath:
        notes.append(f"its rootdir is {rootpath}, the controller's {controller_rootpath}")
    # The file may have been collected under other node ids.
    same_file = [
        other
        for other, item in items.items()
        if item.path == controller_rootpath / path and other != nodeid
    ]
    if same_file:
        notes.append(
            f"it collected {len(same_file)} other case(s) from {path}, e.g. "
            + ", ".join(same_file[:QUOTED_NODEIDS])
        )
    if not errors:
        errors.append("(no collection error was reported for its file)")
    return "\n".join([*errors, *notes])
