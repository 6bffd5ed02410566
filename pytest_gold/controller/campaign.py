"""Campaign parts of the controller: resume, durations, the failures by kind, the compact log.

Plain objects and functions with what they need passed in (see
:mod:`pytest_gold.controller.taskoutput` for output, :mod:`pytest_gold.controller.ticker` for
the status).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

import pytest_gold.policy.resume as resume
from pytest_gold.controller.compactlog import MAX_FAILURE_LINES, MuteCaseOutput, failure_line
from pytest_gold.controller.reporting import logstart_caller
from pytest_gold.controller.terminal import Terminal
from pytest_gold.policy.failurekinds import summarize
from pytest_gold.policy.scheduling import merge_durations
from pytest_gold.records.cachedata import DURATIONS_CACHE_KEY, read_done, read_durations
from pytest_gold.records.results import failure_message

__all__ = ["DURATIONS_CACHE_KEY"]  # read by the campaign report's recorder
#: Name of the plugin that mutes pytest's per-case output (--gold-log=compact).
COMPACT_PLUGIN_NAME = "gold-compact-log"


def report_passed_before(config: pytest.Config, item: pytest.Item, logstart: Any) -> None:
    """The reports of a case that passed in an earlier run, marked as such."""
    hook = config.hook
    logstart(nodeid=item.nodeid, location=item.location)
    for when in ("setup", "call", "teardown"):
        report = pytest.TestReport(
            nodeid=item.nodeid,
            location=item.location,
            keywords={name: 1 for name in item.keywords},
            outcome="passed",
            longrepr=None,
            when=when,
            user_properties=[("gold_outcome", resume.PASSED_BEFORE)],
            gold_passed_before=True,
        )
        hook.pytest_runtest_logreport(report=report)
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def start_compact_log(config: pytest.Config) -> None:
    """--gold-log=compact: mute pytest's per-case output (once)."""
    if not config.pluginmanager.has_plugin(COMPACT_PLUGIN_NAME):
        config.pluginmanager.register(MuteCaseOutput(), COMPACT_PLUGIN_NAME)


def skip_passed_before(
    config: pytest.Config, items: list[pytest.Item], compact: bool
) -> tuple[list[pytest.Item], int]:
    """Report the cases that passed in earlier runs without running them: the items left
    to run, and how many passed before."""
    done = read_done(config)
    results = config.pluginmanager.get_plugin("gold-results")
    stored = results.resume_done() if results is not None else None
    if stored is not None:  # a dataset knows which cells are done: it decides
        done = stored
    to_run, before = resume.partition([item.nodeid for item in items], done)
    by_id = {item.nodeid: item for item in items}
    logstart = logstart_caller(config, without_terminal=compact)
    for nodeid in before:
        report_passed_before(config, by_id[nodeid], logstart)
    keep = set(to_run)
    return [item for item in items if item.nodeid in keep], len(before)


class Durations:
    """Each case's duration in the last run that ran it, in pytest's cache."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def recorded(self) -> dict[str, float]:
        return read_durations(self.config)

    def remember(self, durations: Mapping[str, float]) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is not None and durations:
            cache.set(DURATIONS_CACHE_KEY, merge_durations(self.recorded(), dict(durations)))


class FailureNotes:
    """The one-line failure message of every case that failed, by node id; said at once in
    compact mode (the first MAX_FAILURE_LINES), summarized by kind at the end."""

    def __init__(self, terminal: Terminal, compact: bool) -> None:
        self.terminal = terminal
        self.compact = compact
        self.failures: dict[str, str] = {}

    def note(self, report: pytest.TestReport) -> None:
        if not report.failed or report.nodeid in self.failures:
            return
        message = failure_message([report])
        self.failures[report.nodeid] = message
        if not self.compact:
            return
        shown = len(self.failures)
        if shown <= MAX_FAILURE_LINES:
            self.terminal.write_line(failure_line(report, message), always=True)
        if shown == MAX_FAILURE_LINES:
            self.terminal.write_line(
                f"gold: {MAX_FAILURE_LINES} failures shown; the others are in the summary at "
                "the end (--gold-log=compact)",
                always=True,
            )

    def summarize(self, terminalreporter: Any) -> None:
        if not self.failures:
            return
        terminalreporter.section("gold: failures by kind", sep="-")
        for line in summarize(self.failures.items()):
            terminalreporter.write_line(line)
