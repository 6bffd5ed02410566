"""Failures grouped by kind for the end of a long run: ``12 SIGSEGV in test_rt`` (pure).

A kind is read from a failure's one-line message: the signal that killed a worker, a
time limit, a lost engine or controller, an exit code, else the exception's type. For
exceptions the message is part of the group (``3 ValueError in test_x: bad grid``);
crash and time-limit messages name their case and engine, so only their kind is.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

#: Groups listed; the others are counted in one last line.
MAX_GROUPS = 10
#: Test functions named for a group; more are counted.
MAX_TESTS_NAMED = 3
#: Characters of an exception's message shown.
MAX_DETAIL = 60

_TIME_LIMIT = re.compile(r"\btime limit\b", re.IGNORECASE)
_SIGNAL = re.compile(r"\b(SIG[A-Z]{2,}[0-9]*)\b")
_EXIT_CODE = re.compile(r"\bexited with (?:exit )?code (-?\d+)")
_LOST_ENGINE = re.compile(r"\bengine lost\b|\blost engine\b|\bdied while running\b")
_LOST_CONTROLLER = re.compile(r"\bcontroller stopped answering\b")
_NOT_COLLECTED = re.compile(r"\bcollected by the controller but not on engine\b")
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*): ?(.*)$")
#: Kinds that are not a signal's or an exception's name.
TIME_LIMIT = "time limit"
LOST_ENGINE = "lost with their engine"
LOST_CONTROLLER = "unfinished when the controller was lost"
NOT_COLLECTED = "not collected on their engine"
OTHER = "other"


def classify(message: str) -> tuple[str, str]:
    """(kind, detail) of a failure's one-line message."""
    if _TIME_LIMIT.search(message):
        return TIME_LIMIT, ""
    if _LOST_CONTROLLER.search(message):
        return LOST_CONTROLLER, ""
    if _LOST_ENGINE.search(message):
        return LOST_ENGINE, ""
    if _NOT_COLLECTED.search(message):
        return NOT_COLLECTED, ""
    signal = _SIGNAL.search(message)
    if signal:
        return signal.group(1), ""
    exit_code = _EXIT_CODE.search(message)
    if exit_code:
        return f"exit code {exit_code.group(1)}", ""
    text = message.strip()
    if text.startswith("assert "):  # pytest shortens a rewritten assert's message so
        return "AssertionError", text
    match = _EXCEPTION.match(text)
    if match and (match.group(1)[0].isupper() or "." in match.group(1)):
        return match.group(1).rsplit(".", 1)[-1], match.group(2).strip()
    return OTHER, text


def _plural(kind: str, count: int) -> str:
    """``time limit`` -> ``time limits``; the other kinds read as they are."""
    return kind + "s" if kind == TIME_LIMIT and count != 1 else kind


def case_function(nodeid: str) -> str:
    """``sims/test_rt.py::TestX::test_bt[a-b]`` -> ``test_bt``."""
    return nodeid.split("::")[-1].split("[", 1)[0]


def summarize(failures: Iterable[tuple[str, str]]) -> list[str]:
    """Lines, most frequent first, for (node id, message) of every failed case."""
    groups: dict[tuple[str, str], list[str]] = {}
    for nodeid, message in failures:
        groups.setdefault(classify(message), []).append(nodeid)
    ranked = sorted(groups.items(), key=lambda group: -len(group[1]))
    width = len(str(len(ranked[0][1]))) if ranked else 1
    lines = []
    for (kind, detail), nodeids in ranked[:MAX_GROUPS]:
        tests = Counter(case_function(nodeid) for nodeid in nodeids)
        named = [name for name, _ in tests.most_common(MAX_TESTS_NAMED)]
        where = ", ".join(named)
        if len(tests) > len(named):
            where += f" and {len(tests) - len(named)} more"
        detail = detail if len(detail) <= MAX_DETAIL else detail[: MAX_DETAIL - 3] + "..."
        lines.append(
            f"{len(nodeids):>{width}} {_plural(kind, len(nodeids))} in {where}"
            + (f": {detail}" if detail else "")
        )
    rest = ranked[MAX_GROUPS:]
    if rest:
        count = sum(len(nodeids) for _, nodeids in rest)
        lines.append(f"{count:>{width}} more in {len(rest)} other kinds")
    return lines
