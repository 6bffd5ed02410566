"""The campaign log a ``--gold`` run leaves, and campaigns read back from what a run left.

The log is JSON lines, one record per line, appended and flushed as the run goes, so a
run that is killed leaves everything up to its last record (a torn last line is ignored
when reading). Records (``"event"``):

- ``run``: the command line, the cluster, the number of cases, the parametrize axes;
- ``engine``: an engine joined the run; ``lost``: an engine died (with its cases);
- ``case``: a case finished (times, where, outcome, message, failure, output, params);
- ``progress``: now and then: cases done, ETA, what the engines are running;
- ``end``: the run ended, and how.

A results table (``--gold-results``) has no times: a campaign built from it places each
engine's cases back to back, in the order they finished, ending when the table was last
written; the report says so.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from pytest_gold.report.model import (
    PASSED_BEFORE,
    Campaign,
    Case,
    Engine,
    Running,
    clean_text,
    function_of,
    label,
)

#: First record's ``format``: tells a campaign log from a results table.
LOG_FORMAT = "pytest-gold campaign log"
LOG_VERSION = 1
#: The campaign log beside a report or status file ``NAME.ext`` is ``NAME.events.jsonl``.
LOG_SUFFIX = ".events.jsonl"
#: Columns of a results table that are not parametrize arguments.
RESULTS_COLUMNS = ("nodeid", "outcome", "duration", "host", "engine", "message")


def log_path_beside(path: Path) -> Path:
    """The campaign log kept beside a report or status file."""
    name = path.name
    stem = name[: -len(path.suffix)] if path.suffix else name
    return path.with_name(stem + LOG_SUFFIX)


def partial_path(path: Path, pid: int) -> Path:
    """Where process ``pid`` writes ``path`` before it replaces it."""
    return path.with_name(f".{path.name}.{pid}.partial")


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one step: a browser reloading it never sees half a page."""
    partial = partial_path(path, os.getpid())
    try:
        with open(partial, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


class CampaignLogWriter:
    """Appends records; each is one flushed line, so readers see whole records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[str] | None = open(path, "w", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        if self.file is None:
            return
        # ASCII JSON: lone surrogates and any other character survive the round trip.
        self.file.write(json.dumps(record, ensure_ascii=True, allow_nan=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def read_records(lines: Iterable[str]) -> tuple[list[dict[str, Any]], int]:
    """The records of a log, and how many lines were damaged (skipped).

    A last line without its newline is a record being written (or the run was killed while
    writing it): it is left out without counting as damage.
    """
    records: list[dict[str, Any]] = []
    damaged = 0
    for line in lines:
        if not line.endswith("\n"):
            break
        try:
            record = json.loads(line)
        except ValueError:
            damaged += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        elif line.strip():
            damaged += 1
    return records, damaged


def is_campaign_log(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            first = json.loads(file.readline() or "null")
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and first.get("format") == LOG_FORMAT


def read_log(path: Path) -> Campaign:
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        records, damaged = read_records(file)
    campaign = campaign_from_records(records)
    if damaged:
        campaign.notes.append(f"{damaged} damaged line(s) of {path.name} were skipped.")
    return campaign


def campaign_from_records(records: Iterable[Mapping[str, Any]]) -> Campaign:
    campaign = Campaign()
    for record in records:
        apply_record(campaign, record)
    return campaign


def _float(value: Any, default: float = 0.0) -> float:
    if type(value) is float:  # the common case, first: a log has 10^5 records
        return value if value == value else default  # NaN -> default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number == number else default


def _engine_id(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _engine_of(record: Mapping[str, Any], now: float) -> Engine:
    engine = _engine_id(record.get("engine"))
    return Engine(clean_text(record.get("host", "")), -1 if engine is None else engine, now)


def apply_record(campaign: Campaign, record: Mapping[str, Any]) -> None:
    kind = record.get("event")
    now = _float(record.get("time"))
    campaign.updated = max(campaign.updated, now)
    if kind == "run":
        campaign.command = clean_text(record.get("command", ""))
        campaign.cluster = clean_text(record.get("cluster", ""))
        profile = record.get("profile")
        campaign.profile = clean_text(profile) if profile else None
        campaign.started = now
        campaign.utc_offset = _float(record.get("utc_offset"))
        campaign.total = int(_float(record.get("total")))
        results = record.get("results")
        campaign.results = clean_text(results) if results else None
        axes = record.get("axes") or {}
        campaign.axes = {
            clean_text(function): {
                clean_text(arg): [label(value) for value in values]
                for arg, values in arguments.items()
            }
            for function, arguments in axes.items()
            if isinstance(arguments, dict)
        }
    elif kind == "engine":
        engine = _engine_of(record, now)
        campaign.engines.setdefault(engine.tag, engine)
    elif kind == "lost":
        lost = _engine_of(record, now)
        known = campaign.engines.setdefault(lost.tag, lost)
        known.lost = now
        known.lost_cases = [clean_text(nodeid) for nodeid in record.get("cases", [])]
        since = record.get("since")
        known.lost_since = min(_float(since, now), now) if since is not None else None
        campaign.running = [run for run in campaign.running if run.tag != lost.tag]
    elif kind == "case":
        case = case_from_record(record)
        campaign.cases.append(case)
        campaign.updated = max(campaign.updated, case.stop)
    elif kind == "progress":
        eta = record.get("eta")
        campaign.eta_seconds = _float(eta) if eta is not None else None
        campaign.running = [
            Running(
                host=clean_text(run.get("host", "")),
                engine=_engine_id(run.get("engine")) or 0,
                since=_float(run.get("since")),
                cases=int(_float(run.get("cases"), 1)),
                first=clean_text(run.get("first", "")),
            )
            for run in record.get("running", [])
        ]
    elif kind == "end":
        campaign.state = clean_text(record.get("state") or "finished")
        campaign.running = []
        campaign.eta_seconds = None


def case_from_record(record: Mapping[str, Any]) -> Case:
    get = record.get
    params = get("params") or {}
    engine = get("engine")
    return Case(
        nodeid=clean_text(get("nodeid", "")),
        outcome=clean_text(get("outcome", "")),
        start=_float(get("start")),
        stop=_float(get("stop")),
        duration=_float(get("duration")),
        host=clean_text(get("host") or ""),
        engine=engine if type(engine) is int else _engine_id(engine),
        message=clean_text(get("message") or ""),
        longrepr=clean_text(get("longrepr") or ""),
        output=clean_text(get("output") or ""),
        params={clean_text(k): label(v) for k, v in params.items()},
    )


# -- a campaign from a results table ----------------------------------------------------


def read_results(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a ``--gold-results`` table (.csv, .jsonl or .parquet)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, encoding="utf-8", errors="surrogateescape") as file:
            records, _ = read_records(file)
        yield from records
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as file:
            yield from csv.DictReader(file)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq  # a .parquet table was written with pyarrow

        yield from pq.read_table(path).to_pylist()
    else:
        raise ValueError(f"{path}: not a results table (.csv, .jsonl or .parquet)")


def campaign_from_results(rows: Iterable[Mapping[str, Any]], written: float) -> Campaign:
    """A campaign from results rows (in the order cases finished): each engine's cases
    back to back, the last one ending at ``written`` (when the table was last written)."""
    campaign = Campaign(state=None)
    cases: list[Case] = []
    for row in rows:
        nodeid = clean_text(row.get("nodeid") or "")
        if not nodeid:
            continue
        engine = _engine_id(row.get("engine"))
        params = {}
        for column, value in row.items():
            if column == "outcome":
                break  # parametrize arguments come between nodeid and outcome
            if column != "nodeid" and value not in (None, ""):
                params[clean_text(column)] = label(value)
        outcome = clean_text(row.get("outcome") or "")
        cases.append(
            Case(
                nodeid=nodeid,
                outcome=outcome,
                duration=_float(row.get("duration")),
                host=clean_text(row.get("host") or ""),
                engine=engine if outcome != PASSED_BEFORE else None,
                message=clean_text(row.get("message") or ""),
                params=params,
            )
        )
    lanes: dict[str, float] = {}
    for case in cases:
        if case.engine is None or case.engine < 0:
            continue
        case.start = lanes.get(case.tag, 0.0)
        case.stop = lanes[case.tag] = case.start + max(case.duration, 0.0)
    span = max(lanes.values(), default=0.0)
    shift = written - span
    for case in cases:
        if case.engine is not None and case.engine >= 0:
            case.start += shift
            case.stop += shift
            campaign.engines.setdefault(case.tag, Engine(case.host, case.engine, shift))
    campaign.cases = cases
    campaign.started = shift
    campaign.updated = written
    campaign.total = len(cases)
    campaign.utc_offset = local_utc_offset(written)
    campaign.axes = axes_of(cases)
    campaign.notes.append(
        "Built from a results table, which has no times: each engine's cases are placed "
        "back to back in the order they finished, the last ending when the table was "
        "last written."
    )
    return campaign


def axes_of(cases: Iterable[Case]) -> dict[str, dict[str, list[str]]]:
    """Parametrize axes seen in cases, values in order of first appearance."""
    axes: dict[str, dict[str, dict[str, None]]] = {}
    for case in cases:
        if not case.params:
            continue
        arguments = axes.setdefault(function_of(case.nodeid), {})
        for arg, value in case.params.items():
            arguments.setdefault(arg, {})[value] = None
    return {f: {a: list(v) for a, v in args.items()} for f, args in axes.items()}


def local_utc_offset(when: float) -> float:
    """This machine's offset from UTC at ``when``, in seconds."""
    import time

    return float(time.localtime(when).tm_gmtoff)


def file_time(path: Path) -> float:
    return os.stat(path).st_mtime
