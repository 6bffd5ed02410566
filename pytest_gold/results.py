"""The results table: one row per case, built and written on the controller.

Pure parts (a case's outcome, failure message and row) need only reports; the writers
append as cases finish, so a controller that dies loses nothing already written.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .serialization import from_jsonable, to_jsonable

#: Columns every row has, in this order; parametrize arguments follow ``nodeid``.
LEADING_COLUMNS = ["nodeid"]
TRAILING_COLUMNS = ["outcome", "duration", "host", "engine", "message"]
#: record_property names that fill the host and engine columns instead.
PLACEMENT_PROPERTIES = {"gold_host": "host", "gold_engine": "engine"}
#: Suffixes --gold-results understands.
FORMATS = (".csv", ".jsonl", ".parquet")


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


def _cell(value: Any) -> Any:
    """A parametrize value as a table cell: JSON-compatible values as they are, else str."""
    try:
        return from_jsonable(to_jsonable(value))  # numpy becomes plain; NaN stays a float
    except TypeError:
        return str(value)


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
    """Appends rows to a file; ``close`` finishes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

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
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.file = open(path, "w", encoding="utf-8")

    def write(self, row: Mapping[str, Any]) -> None:
        self.file.write(json.dumps(_json_row(row), ensure_ascii=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class CsvWriter(ResultsWriter):
    """CSV with a header; a row bringing a new column rewrites the file once (atomically).

    New columns appear with the first cases that record them, so rewrites are rare.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.columns: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self.file: Any = None

    def write(self, row: Mapping[str, Any]) -> None:
        cells = {key: _csv_cell(value) for key, value in row.items()}
        self.rows.append(cells)
        new = [key for key in cells if key not in self.columns]
        if new or self.file is None:
            self.columns.extend(new)
            self._rewrite()
        else:
            csv.DictWriter(self.file, self.columns).writerow(cells)
            self.file.flush()

    def _rewrite(self) -> None:
        if self.file is not None:
            self.file.close()
        partial = self.path.with_name(self.path.name + ".partial")
        with open(partial, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(partial, self.path)
        self.file = open(self.path, "a", newline="", encoding="utf-8")

    def close(self) -> None:
        if self.file is None:
            self._rewrite()
        self.file.close()


class ParquetWriter(ResultsWriter):
    """Parquet is written whole at the end; rows also go to a ``.jsonl`` beside it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.rows: list[dict[str, Any]] = []
        self.journal = JsonlWriter(path.with_suffix(".jsonl"))

    def write(self, row: Mapping[str, Any]) -> None:
        self.rows.append(_json_row(row))
        self.journal.write(row)

    def close(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.journal.close()
        pq.write_table(pa.Table.from_pylist(self.rows), self.path)


def writer_for(path: str) -> ResultsWriter:
    """The writer for a path's suffix; ValueError says what is supported."""
    target = Path(path).expanduser()
    suffix = target.suffix.lower()
    if suffix == ".csv":
        return CsvWriter(target)
    if suffix == ".jsonl":
        return JsonlWriter(target)
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(
                f"--gold-results {path}: writing .parquet needs pyarrow "
                "('pip install pyarrow'); or use .csv or .jsonl."
            ) from None
        return ParquetWriter(target)
    raise ValueError(
        f"--gold-results {path}: unknown format {suffix or '(no suffix)'!r}; "
        f"use one of {', '.join(FORMATS)}."
    )


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
