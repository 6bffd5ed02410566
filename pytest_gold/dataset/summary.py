"""The dataset's pytest side on the controller: the collection before deselection, the
terminal summary, and the one-line message of a case."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_gold.dataset.writer import DatasetWriter

#: Problems listed one by one in the terminal summary; the rest are counted.
MAX_LISTED_PROBLEMS = 10


def cell_message(row: Mapping[str, Any], reports: Sequence[Any]) -> str:
    """The one-line reason of a case: its failure, else why it was skipped or xfailed."""
    if row.get("message"):
        return str(row["message"])
    for report in reports:
        reason = getattr(report, "wasxfail", None)
        if reason is not None:
            return f"xfail: {reason}" if reason else "xfail"
        if report.skipped and isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
            return str(report.longrepr[2]).removeprefix("Skipped: ").splitlines()[0]
    return ""


class DatasetPlugin:
    """Sees the collection before deselection (for the grid) and says in the terminal
    summary where the dataset is and what could not go into it."""

    def __init__(self, writer: DatasetWriter) -> None:
        self.writer = writer

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.writer.collected = list(items)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        writer = self.writer
        if writer.core is None:
            return
        cells = sum(writer.core.cells_written.values())
        terminalreporter.write_line(
            f"gold: dataset {writer.path}: {cells} cell{'s' if cells != 1 else ''} written "
            f"in {len(writer.groups)} group{'s' if len(writer.groups) != 1 else ''} "
            f"(python -m pytest_gold results show {writer.path})."
        )
        if writer.failure is not None:
            terminalreporter.write_line(
                f"gold: writing the dataset {writer.path} failed: {writer.failure!r}; "
                f"cells written before the failure are in {writer.store_path}.",
                red=True,
            )
        for note in writer.notes:
            terminalreporter.write_line(f"gold: dataset note: {note}")
        problems = writer.problems
        for problem in problems[:MAX_LISTED_PROBLEMS]:
            terminalreporter.write_line(f"gold: dataset: {problem}", yellow=True)
        if len(problems) > MAX_LISTED_PROBLEMS:
            terminalreporter.write_line(
                f"gold: dataset: ... and {len(problems) - MAX_LISTED_PROBLEMS} more (the "
                "record_error variable of each cell says why)",
                yellow=True,
            )
