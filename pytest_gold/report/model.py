"""What a campaign report shows, as plain data (no I/O, no plotting library)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Outcome words (as in the results table) that count as failures.
FAILED_OUTCOMES = frozenset({"failed", "error"})
#: Outcome of a case reported as passed in an earlier run (--gold-resume).
PASSED_BEFORE = "passed-before"

# What went wrong with a case pytest-gold reported as failed on its behalf; found in its
# message, which pytest-gold words itself (relay.py, faults.py, engine.py).
FAULT_CRASH = "crash"
FAULT_TIME_LIMIT = "time limit"
FAULT_ENGINE_LOST = "engine lost"
FAULT_CONTROLLER_LOST = "controller lost"
FAULT_NOT_RUN = "not run"
FAULT_SUPERVISOR = "supervisor error"
_FAULT_MARKS = [
    ("exceeded its time limit", FAULT_TIME_LIMIT),
    ("crashed its worker", FAULT_CRASH),
    ("pytest-gold: engine lost", FAULT_ENGINE_LOST),
    ("controller stopped answering", FAULT_CONTROLLER_LOST),
    ("was collected by the controller but not on engine", FAULT_NOT_RUN),
    ("the supervisor on", FAULT_SUPERVISOR),
]

#: Every kind a case can be shown as, worst first: a grid cell takes its worst case's kind.
KINDS_BY_SEVERITY = [
    FAULT_CRASH,
    FAULT_TIME_LIMIT,
    FAULT_ENGINE_LOST,
    FAULT_CONTROLLER_LOST,
    FAULT_SUPERVISOR,
    FAULT_NOT_RUN,
    "failed",
    "error",
    "xpassed",
    "skipped",
    "xfailed",
    "passed",
    PASSED_BEFORE,
]


#: How the messages of crashes, time limits and lost engines begin (their cause first).
_FAULT_STARTS = [
    ("crashed its worker:", FAULT_CRASH),
    ("exceeded its time limit of", FAULT_TIME_LIMIT),
    ("engine lost:", FAULT_ENGINE_LOST),
]


def fault_kind(message: str) -> str:
    """What went wrong, for the failures pytest-gold reports itself; '' for others."""
    for start, kind in _FAULT_STARTS:
        if message.startswith(start):
            return kind
    if not message.startswith("pytest-gold:"):
        return ""
    for mark, kind in _FAULT_MARKS:
        if mark in message:
            return kind
    return ""


def clean_text(value: Any) -> str:
    """Text that can be written as UTF-8: undecodable bytes that reached a ``str`` as
    lone surrogates (``surrogateescape``) become visible ``\\udcff`` escapes."""
    text = value if isinstance(value, str) else str(value)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def label(value: Any) -> str:
    """A parametrize value as a grid label: strings as they are, others as JSON."""
    if isinstance(value, str):
        return clean_text(value)
    if type(value) in (int, float):  # as JSON writes them, without its overhead
        return repr(value)
    try:
        return clean_text(json.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError):
        return clean_text(value)


def function_of(nodeid: str) -> str:
    """The test function of a case: its node id without the parametrize id."""
    # The id starts at the first '[' after the file's path (an id may hold '::').
    path, sep, rest = nodeid.partition("::")
    return f"{path}{sep}{rest.split('[', 1)[0]}"


@dataclass
class Case:
    """One finished case."""

    nodeid: str
    outcome: str
    #: Epoch seconds (the worker's clock); 0 when unknown.
    start: float = 0.0
    stop: float = 0.0
    #: Seconds of its setup, call and teardown, as pytest measured them.
    duration: float = 0.0
    host: str = ""
    engine: int | None = None
    message: str = ""
    #: The failure as pytest shows it (longrepr), and what the case printed.
    longrepr: str = ""
    output: str = ""
    #: Parametrize argument -> value label.
    params: dict[str, str] = field(default_factory=dict)
    #: What went wrong (see :func:`fault_kind`), and how the case is shown: its fault if
    #: it has one, else its outcome (worked out once: a campaign has 10^5 cases).
    fault: str = field(init=False, default="")
    kind: str = field(init=False, default="")
    tag: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.fault = fault_kind(self.message) if self.outcome in FAILED_OUTCOMES else ""
        self.kind = self.fault or self.outcome
        self.tag = engine_tag(self.host, self.engine)

    @property
    def placed(self) -> bool:
        """Ran on an engine, with known times (passed-before cases did not)."""
        return self.engine is not None and self.engine >= 0 and self.stop > 0


def engine_tag(host: str, engine: int | None) -> str:
    return f"{host}:e{engine}" if engine is not None else host


@dataclass
class Engine:
    host: str
    engine: int
    #: When it joined the run, and when it was lost (``None``: it was not).
    joined: float
    lost: float | None = None
    #: Cases it was running when it was lost, and since when it ran them.
    lost_cases: list[str] = field(default_factory=list)
    lost_since: float | None = None

    @property
    def tag(self) -> str:
        return engine_tag(self.host, self.engine)


@dataclass
class Running:
    """A batch an engine is running: since when, how many cases, the first of them."""

    host: str
    engine: int
    since: float
    cases: int
    first: str

    @property
    def tag(self) -> str:
        return engine_tag(self.host, self.engine)


#: States of a run; any other text is the reason it stopped early.
STATE_RUNNING = "running"
STATE_FINISHED = "finished"


@dataclass
class Campaign:
    """Everything a report shows about one run."""

    command: str = ""
    cluster: str = ""
    profile: str | None = None
    #: Epoch seconds; the controller's offset from UTC, so times show as its local time.
    started: float = 0.0
    utc_offset: float = 0.0
    total: int = 0
    results: str | None = None
    #: Test function -> argument -> value labels in collection order.
    axes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)
    engines: dict[str, Engine] = field(default_factory=dict)
    running: list[Running] = field(default_factory=list)
    eta_seconds: float | None = None
    #: Time of the newest record.
    updated: float = 0.0
    #: ``None`` while the log has no end record (running, or the run was killed).
    state: str | None = None
    #: Where the data came from, when that limits what is shown.
    notes: list[str] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        """Cases per outcome word."""
        return Counter(case.outcome for case in self.cases)

    @property
    def done(self) -> int:
        return len(self.cases)

    @property
    def end(self) -> float:
        """The end of the time axis: the newest record."""
        return max(self.updated, self.started)
