"""Reports for cases that could not report for themselves (crash, lost engine, ...).

Built by hand in pytest's serializable report format, so the controller replays them like
any other report: the terminal, JUnit XML and --lf see an ordinary failed case.
"""

from __future__ import annotations

from typing import Any

from pytest_gold.protocol.messages import Event, LogFinish, LogStart, ReportEvent


def plain_report(
    nodeid: str, location: tuple[str, int | None, str], when: str, outcome: str, longrepr: Any
) -> dict[str, Any]:
    """A serialized TestReport built by hand, for a case the worker could not run."""
    return {
        "$report_type": "TestReport",
        "nodeid": nodeid,
        "location": list(location),
        "keywords": {},
        "outcome": outcome,
        "longrepr": longrepr,
        "when": when,
        "user_properties": [],
        "sections": [],
        "duration": 0.0,
        "start": 0.0,
        "stop": 0.0,
    }


def failed_case_events(
    nodeid: str,
    location: tuple[str, int | None, str] | None,
    phases: dict[str, str],
    when: str | None,
    message: str,
) -> list[Event]:
    """Events that close a case that could not finish: a failure, then a teardown."""
    location = location or (nodeid.split("::", 1)[0], None, nodeid)
    if when is None:
        when = "setup" if "setup" not in phases else "call" if "call" not in phases else "teardown"
    events: list[Event] = []
    if not phases:
        events.append(LogStart(nodeid=nodeid, location=location))
    events.append(ReportEvent(data=plain_report(nodeid, location, when, "failed", message)))
    if when != "teardown":
        events.append(ReportEvent(data=plain_report(nodeid, location, "teardown", "passed", None)))
    events.append(LogFinish(nodeid=nodeid, location=location))
    return events
