"""A results table that already exists: refused, or read back to be carried forward.

pytest-gold never overwrites a results table silently. ``--gold-resume`` with the same
``--gold-results`` path carries the earlier rows forward (the file ends with one row per
case: the new row of a re-run case, else its earlier one); ``--gold-results-overwrite``
replaces the file; otherwise an existing file is a usage error.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pytest_gold.records.results import journal_path, require_pyarrow

#: The flag that lets a run replace an existing results table.
OVERWRITE_OPTION = "--gold-results-overwrite"
#: Where the results tables that earlier runs wrote are remembered (most recent first).
RESULTS_FILES_CACHE_KEY = "gold/results-files"
#: How many earlier results tables are remembered.
REMEMBERED_RESULTS_FILES = 10


class UnreadableTable(ValueError):
    """An existing results table that cannot be read back."""


def existing_files(path: Path) -> list[Path]:
    """The files of a results table at ``path`` that exist (a ``.parquet`` table has its
    ``.jsonl`` journal beside it, which holds the rows of a run that did not finish)."""
    candidates = [path]
    if path.suffix.lower() == ".parquet":
        candidates.append(journal_path(path))
    return [candidate for candidate in candidates if candidate.exists()]


def refusal(path: str, existing: list[Path]) -> str:
    """Why a run does not start when its results table exists, and what to do."""
    if len(existing) == 1 and existing[0] == Path(path).expanduser():
        files = "that file exists already"
    else:  # a .parquet table's journal, left by a run that did not finish
        files = " and ".join(str(file) for file in existing)
        files += f" exist{'s' if len(existing) == 1 else ''} already"
    return (
        f"--gold-results {path}: {files} (the results of an earlier run), and pytest-gold "
        "does not overwrite results silently. Give --gold-resume to run only what did not "
        f"pass and carry the earlier rows forward into it, {OVERWRITE_OPTION} to replace "
        "it, or another path."
    )


def read_table(path: Path) -> dict[str, dict[str, Any]]:
    """The last row of each case in an earlier table, in the order cases first appear.

    A ``.csv`` table gives its cells as text (they are written back as they were).
    UnreadableTable says what is wrong with a file that is not such a table.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _by_nodeid(path, _csv_rows(path))
        if suffix == ".jsonl":
            return _by_nodeid(path, _jsonl_rows(path))
        rows: dict[str, dict[str, Any]] = {}
        if path.exists():
            require_pyarrow(str(path))
            import pyarrow.parquet as pq

            rows = _by_nodeid(path, pq.read_table(path).to_pylist())
        journal = journal_path(path)
        if journal.exists():  # a run that did not finish left its rows only here
            rows.update(_by_nodeid(journal, _jsonl_rows(journal)))
        return rows
    except UnreadableTable:
        raise
    except (OSError, ValueError, csv.Error) as error:  # pyarrow's errors are ValueErrors
        raise UnreadableTable(f"{path}: {type(error).__name__}: {error}") from None


def _by_nodeid(path: Path, rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        nodeid = row.get("nodeid")
        if not isinstance(nodeid, str) or not nodeid:
            raise UnreadableTable(f"{path}: a row without a 'nodeid': {row!r:.200}")
        table[nodeid] = row
    return table


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            yield {key: "" if value is None else value for key, value in row.items()}


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines) and rows:
                return  # the last line of a run that was killed while writing it
            raise UnreadableTable(f"{path}, line {number}: {error}") from None
        if not isinstance(row, dict):
            raise UnreadableTable(f"{path}, line {number}: not a JSON object")
        rows += 1
        yield row


def remember(previous: Any, path: Path) -> list[str]:
    """The remembered results tables after a run wrote ``path`` (most recent first)."""
    earlier = [p for p in previous if isinstance(p, str)] if isinstance(previous, list) else []
    current = str(path.resolve())
    return [current, *(p for p in earlier if p != current)][:REMEMBERED_RESULTS_FILES]


def elsewhere(remembered: Any, path: Path) -> list[str]:
    """Results tables that earlier runs wrote, other than ``path``, that still exist."""
    if not isinstance(remembered, list):
        return []
    current = str(path.resolve())
    return [p for p in remembered if isinstance(p, str) and p != current and Path(p).exists()]
