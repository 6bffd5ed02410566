"""``--gold-log=compact``: a long run's log without a line per case.

pytest's progress output follows the order results come in: with many engines finishing
cases of different files, ``-q`` starts a new line whenever the file changes, and ``-v``
has a line per case; for 10^5 cases neither is a log one can read. In compact mode the
terminal reporter still gets every report (its counts, failure sections and summary are
as always), but writes nothing per case: the run shows its status line (every
--gold-status-interval seconds, or in place on a terminal), a line for each failure as it
comes in (the first MAX_FAILURE_LINES), and the summary at the end.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

# --gold-log's values are settings' (the controller's modules import it, not the reverse);
# the run loop imports LOG_COMPACT from here.
from pytest_gold.settings import LOG_COMPACT  # noqa: F401

#: Failures printed as they come in; the others are in the summary at the end.
MAX_FAILURE_LINES = 20


class MuteCaseOutput:
    """While a test report is being logged, the terminal reporter finds nothing to write:
    the report's status keeps its category (so pytest counts it) but has no letter or
    word. The final summary asks for the status again, outside of logging, and gets it
    whole."""

    def __init__(self) -> None:
        self.logging = False

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self) -> Generator[None, None, None]:
        self.logging = True
        try:
            return (yield)
        finally:
            self.logging = False

    @pytest.hookimpl(wrapper=True)
    def pytest_report_teststatus(self) -> Generator[None, Any, Any]:
        status = yield
        if self.logging and status:
            category = status[0]
            return category, "", ""
        return status


def failure_line(report: pytest.TestReport, message: str) -> str:
    """One line for a failure as it comes in, shaped like pytest's short summary."""
    word = "FAILED" if report.when == "call" else "ERROR"
    node = getattr(report, "node", None)
    tag = f"[{node.gateway.id}] " if node is not None else ""
    return f"{tag}{word} {report.nodeid}" + (f" - {message}" if message else "")
