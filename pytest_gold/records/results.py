"""The results table: one row per case, built and written on the controller.

Pure parts (a case's outcome, failure message and row) need only reports; the writers
append as cases finish, so a controller that dies loses nothing already written.
"""

from __future__ import annotations

import csv
import json
import math
import os
import reprlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Columns every row has, in this order; parametrize arguments follow ``nodeid``.
LEADING_COLUMNS = ["nodeid"]
TRAILING_COLUMNS = ["outcome", "duration", "host", "engine", "message"]
#: record_property names that fill the host and engine columns instead.
PLACEMENT_PROPERTIES = {"gold_host": "host", "gold_engine": "engine"}
#: pytest-rerunfailures' outcome of a phase whose failure makes the case run again: the
#: reports of that attempt do not decide the case's outcome, its last attempt's do.
RERUN = "rerun"
#: Suffixes --gold-results understands.
FORMATS = (".csv", ".jsonl", ".parquet")
#: The most numbers and strings one cell takes from a list, dict or array; a larger value
#: (a field, a big parameter) is written as bounded text: it does not belong in a table,
#: and converting it would cost time and memory out of proportion.
MAX_CELL_VALUES = 10_000
#: The longest text a cell gets for a value that is not table data.
MAX_CELL_TEXT = 200
_CELL_SCALARS = (str, int, float, bool, type(None))


def case_outcome(reports: Sequence[Any]) -> str:
    """One word for a case, as pytest's summary would count it."""
    by_phase = {report.when: report for report in reports}
    if any(getattr(report, "gold_passed_before", False) for report in reports):
        return "passed-before"
    setup, call, teardown = (by_phase.get(when) for when in ("setup", "call", "teardown"))
    if setup is not None and setup.failed:
        return "error"
    if setup is not None and setup.skipped:
        return "xfailed" if hasattr(setup, "wasxfail") else "skipped"
    outcome = "passed"
    if call is not None:
        if call.failed:
            outcome = "failed"
        elif call.skipped:
            outcome = "xfailed" if hasattr(call, "wasxfail") else "skipped"
        elif hasattr(call, "wasxfail"):
            outcome = "xpassed"
    if teardown is not None and teardown.failed and outcome == "passed":
        return "error"
    return outcome


def failure_message(reports: Sequence[Any]) -> str:
    """The one-line reason of the first failed phase ('' when nothing failed)."""
    for report in reports:
        if not report.failed:
            continue
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None and getattr(crash, "message", None):
            return str(crash.message).splitlines()[0]
        text = str(report.longrepr or "").strip().splitlines()
        return text[0] if text else ""
    return ""


class _NotTableData(Exception):
    """A value that is not plain table data, or too large to be one."""


def _cell(value: Any) -> Any:
    """A parametrize or recorded value as a table cell: plain data (numbers, strings, and
    lists and dicts of them; numpy values become plain ones) when it is small, else
    bounded text. Never fails, never recurses without end, and never converts a large
    value (a 200 MB parameter array costs what its first elements do)."""
    if type(value) in _CELL_SCALARS:  # most cells: nothing to convert or bound
        return value
    try:
        return _table_data(value, [MAX_CELL_VALUES], set())
    except Exception:  # not table data, or user code (__iter__, __len__, ...) that raised
        return _bounded_text(value)


def _table_data(value: Any, budget: list[int], open_containers: set[int]) -> Any:
    """``value`` as plain data; raises _NotTableData past ``budget[0]`` values, on a
    value that contains itself, or on anything else."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _NotTableData
    if isinstance(value, _CELL_SCALARS):
        return value
    if type(value).__module__ == "numpy" and callable(getattr(value, "tolist", None)):
        if getattr(value, "size", 1) > budget[0] + 1:
            raise _NotTableData  # before converting: tolist() of a big array is the cost
        return _table_data(value.tolist(), budget, open_containers)
    if not isinstance(value, (list, tuple, Mapping)):
        raise _NotTableData
    if id(value) in open_containers or len(value) > budget[0]:
        raise _NotTableData
    open_containers.add(id(value))
    try:
        if isinstance(value, Mapping):
            if not all(isinstance(key, str) for key in value):
                raise _NotTableData
            return {k: _table_data(v, budget, open_containers) for k, v in value.items()}
        return [_table_data(item, budget, open_containers) for item in value]
    finally:
        open_containers.discard(id(value))


_CELL_REPR = reprlib.Repr()
_CELL_REPR.maxlevel = 3
_CELL_REPR.maxstring = _CELL_REPR.maxother = MAX_CELL_TEXT


def _bounded_text(value: Any) -> str:
    """Text for a value that is not table data: containers abbreviated (reprlib: bounded
    work, self-references shown as ``...``), anything else as its ``str()``, cut short."""
    try:
        if isinstance(value, (list, tuple, dict, set, frozenset)):
            text = _CELL_REPR.repr(value)
        else:
            text = str(value)
    except Exception:  # a broken __str__ must not cost the row
        text = object.__repr__(value)
    if len(text) > MAX_CELL_TEXT:
        text = text[: MAX_CELL_TEXT - 1] + "…"
    return text


def build_row(
    nodeid: str,
    params: Mapping[str, Any],
    reports: Sequence[Any],
    record: Mapping[str, Any],
) -> dict[str, Any]:
    row: dict[str, Any] = {"nodeid": nodeid}
    row.update({name: _cell(value) for name, value in params.items()})
    row["outcome"] = case_outcome(reports)
    row["duration"] = round(sum(report.duration for report in reports), 6)
    row["host"] = row["engine"] = None
    row["message"] = failure_message(reports)
    properties = reports[-1].user_properties if reports else []
    recorded: dict[str, Any] = {}
    for name, value in properties:
        if name in PLACEMENT_PROPERTIES:
            row[PLACEMENT_PROPERTIES[name]] = value
        else:
            recorded[name] = value
    recorded.update(record)
    for name, value in recorded.items():
        column = f"record_{name}" if name in row else name
        row[column] = _cell(value)
    return row


class ResultsWriter:
    """Appends rows to a file as cases finish; ``close`` finishes it.

    ``earlier`` (node id -> row, in file order) are rows carried forward from an earlier
    run into the same file: they are written first, a new row of the same case replaces
    its earlier row, and ``close`` leaves one row per case. Until then a re-run case may
    have two rows, the earlier one and, after it, the new one (the last row counts).
    """

    def __init__(self, path: Path, earlier: Mapping[str, Mapping[str, Any]] | None = None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        #: Every row by node id, when ``close`` has to write them again (else None).
        self.rows: dict[str, Any] | None = dict(earlier) if earlier else None
        #: A case's new row went after its earlier one: ``close`` compacts the file.
        self.replaced = False

    def keep(self, row: Mapping[str, Any], stored: Any) -> None:
        """Remember ``stored`` (the row as this writer stores it) for compaction."""
        if self.rows is not None:
            self.replaced = self.replaced or row["nodeid"] in self.rows
            self.rows[row["nodeid"]] = stored

    #: Whether the results keep the values of passed-before cases themselves (a dataset
    #: reopened by --gold-resume), so that their passed-before rows change nothing.
    keeps_earlier_values = False

    def start(self, items: Sequence[Any]) -> None:
        """The selected cases, once collected (a dataset lays out its grid)."""

    def write(self, row: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def write_case(self, row: Mapping[str, Any], reports: Sequence[Any]) -> None:
        """A finished case: its row, and its reports for writers that need more."""
        self.write(row)

    def resume_done(self) -> set[str] | None:
        """Cases the results already hold as done (for --gold-resume), if they know."""
        return None

    def close(self) -> None:
        pass


class JsonlWriter(ResultsWriter):
    def __init__(self, path: Path, earlier: Mapping[str, Mapping[str, Any]] | None = None):
        super().__init__(path, earlier)
        if self.rows is not None:
            self._rewrite()
        self.file = open(path, "a" if self.rows is not None else "w", encoding="utf-8")

    def write(self, row: Mapping[str, Any]) -> None:
        self.file.write(_json_line(row))
        self.file.flush()
        self.keep(row, dict(row))

    def _rewrite(self) -> None:
        assert self.rows is not None
        partial = self.path.with_name(self.path.name + ".partial")
        with open(partial, "w", encoding="utf-8") as file:
            file.writelines(_json_line(row) for row in self.rows.values())
        os.replace(partial, self.path)

    def close(self) -> None:
        self.file.close()
        if self.replaced:
            self._rewrite()


class CsvWriter(ResultsWriter):
    """CSV with a header; a row bringing a new column rewrites the file once (atomically).

    New columns appear with the first cases that record them, so rewrites are rare.
    """

    def __init__(self, path: Path, earlier: Mapping[str, Mapping[str, Any]] | None = None):
        super().__init__(path, earlier)
        self.columns: list[str] = []
        self.file: Any = None
        if self.rows is None:
            self.rows = {}  # a CSV writer keeps every row: a new column rewrites them all
        else:
            for row in self.rows.values():
                self.columns.extend(key for key in row if key not in self.columns)
            self._rewrite()

    def write(self, row: Mapping[str, Any]) -> None:
        cells = {key: _csv_cell(value) for key, value in row.items()}
        self.keep(row, cells)
        new = [key for key in cells if key not in self.columns]
        if new or self.file is None:
            self.columns.extend(new)
            self._rewrite()
        else:
            csv.DictWriter(self.file, self.columns).writerow(cells)
            self.file.flush()

    def _rewrite(self) -> None:
        assert self.rows is not None
        if self.file is not None:
            self.file.close()
        partial = self.path.with_name(self.path.name + ".partial")
        with open(partial, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, self.columns)
            writer.writeheader()
            writer.writerows(self.rows.values())
        os.replace(partial, self.path)
        self.file = open(self.path, "a", newline="", encoding="utf-8")
        self.replaced = False  # the file just written has one row per case

    def close(self) -> None:
        if self.file is None or self.replaced:
            self._rewrite()
        self.file.close()


class ParquetWriter(ResultsWriter):
    """Parquet is written whole at the end; rows also go to a ``.jsonl`` beside it."""

    def __init__(self, path: Path, earlier: Mapping[str, Mapping[str, Any]] | None = None):
        super().__init__(path, earlier)
        if self.rows is None:
            self.rows = {}
        self.journal = JsonlWriter(journal_path(path), earlier)

    def write(self, row: Mapping[str, Any]) -> None:
        self.keep(row, _json_row(row))
        self.journal.write(row)

    def close(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        assert self.rows is not None
        self.journal.close()
        rows = list(self.rows.values())
        # Every column any row has: from_pylist would take only the first row's.
        columns = list(dict.fromkeys(key for row in rows for key in row))
        table = pa.Table.from_pydict({key: [row.get(key) for row in rows] for key in columns})
        pq.write_table(table, self.path)


def journal_path(path: Path) -> Path:
    """The ``.jsonl`` file beside a ``.parquet`` table that has its rows during the run."""
    return path.with_suffix(".jsonl")


def writer_for(path: str, earlier: Mapping[str, Mapping[str, Any]] | None = None) -> ResultsWriter:
    """The writer for a path's suffix; ValueError says what is supported."""
    check_format(path)
    target = Path(path).expanduser()
    suffix = target.suffix.lower()
    if suffix == ".csv":
        return CsvWriter(target, earlier)
    if suffix == ".jsonl":
        return JsonlWriter(target, earlier)
    return ParquetWriter(target, earlier)


def check_format(path: str) -> None:
    """ValueError unless pytest-gold can write a table at ``path`` (its suffix)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"--gold-results {path}: unknown format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(FORMATS)}."
        )
    if suffix == ".parquet":
        require_pyarrow(path)


def require_pyarrow(path: str) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ValueError(
            f"--gold-results {path}: writing .parquet needs pyarrow "
            "('pip install pyarrow'); or use .csv or .jsonl."
        ) from None


#: One encoder for every row (``json.dumps`` with options builds one per call).
_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False)


def _json_line(row: Mapping[str, Any]) -> str:
    return _ROW_ENCODER.encode(_json_row(row)) + "\n"


def _json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _finite_or_none(value) for key, value in row.items()}


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN; a NaN or infinite result becomes null rather than invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    return value


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else value
