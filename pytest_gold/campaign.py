"""Campaign parts of the controller: resume, durations, progress, live output.

A mixin of :class:`pytest_gold.session.GoldController`; it uses the controller's
``config``, ``settings``, ``state``, ``progress``, ``status_line`` and ``write_line``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from . import resume
from .messages import EngineInfo
from .progress import (
    STATUS_FILE_SECONDS,
    format_status,
    format_status_short,
    write_status_file,
)
from .reporting import ReplayOutcome
from .scheduling import DispatchQueue, merge_durations
from .statusline import REDRAW_SECONDS, StatusLine

#: Where each case's last duration is kept in pytest's cache (``--cache-clear`` resets it).
DURATIONS_CACHE_KEY = "gold/durations"
#: Collected tasks whose results are purged from the hub in one request.
PURGE_EVERY_TASKS = 200


def report_passed_before(config: pytest.Config, item: pytest.Item) -> None:
    """The reports of a case that passed in an earlier run, marked as such."""
    hook = config.hook
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
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


class CampaignParts:
    """Resume, durations, progress and live output (a mixin of GoldController)."""

    def skip_passed_before(self, items: list[pytest.Item]) -> list[pytest.Item]:
        """Report the cases that passed in earlier runs without running them."""
        cache = getattr(self.config, "cache", None)
        done = cache.get(resume.CACHE_KEY, []) if cache is not None else []
        results = self.config.pluginmanager.get_plugin("gold-results")
        stored = results.resume_done() if results is not None else None
        if stored is not None:  # a dataset knows which cells are done: it decides
            done = stored
        to_run, before = resume.partition([item.nodeid for item in items], done)
        by_id = {item.nodeid: item for item in items}
        for nodeid in before:
            report_passed_before(self.config, by_id[nodeid])
        self.state.passed_before = len(before)
        keep = set(to_run)
        return [item for item in items if item.nodeid in keep]

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> Any:
        if getattr(report, "gold_passed_before", False) and report.when == "call":
            return resume.PASSED_BEFORE, "p", ("PASSED-BEFORE", {"green": True})
        return None

    def recorded_durations(self) -> dict[str, float]:
        """Each case's duration in the last run that ran it (pytest's cache)."""
        cache = getattr(self.config, "cache", None)
        if cache is None:  # -p no:cacheprovider
            return {}
        stored = cache.get(DURATIONS_CACHE_KEY, {})
        if not isinstance(stored, dict):
            return {}
        return {k: float(v) for k, v in stored.items() if isinstance(v, (int, float))}

    def remember_durations(self) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is not None and self.state.durations:
            merged = merge_durations(self.recorded_durations(), self.state.durations)
            cache.set(DURATIONS_CACHE_KEY, merged)

    def relay_output(self, futures: Any = None) -> None:
        """With -s: what running cases print, as ipyparallel brings it in."""
        if not self.stream_output:
            return
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        for future in self.state.inflight if futures is None else futures:
            text = future.metadata.get("stdout") or ""
            seen = self.output_seen.get(future, 0)
            if len(text) <= seen:
                continue
            self.output_seen[future] = len(text)
            if terminal is None:
                sys.stdout.write(text[seen:])
                continue
            self.status_line.clear()
            terminal.ensure_newline()
            if self.config.get_terminal_writer().width_of_current_line:
                terminal.write("\n")
            terminal.write(text[seen:], flush=True)

    def forget(self, client: Any, future: Any) -> None:
        """Drop a collected task's result from the client's and (in bulk) the hub's
        memory: a campaign of 10^5 cases must not grow either without bound."""
        # By msg id: given the AsyncResult, ipyparallel's ``not jobs`` calls its
        # lru-cached ``__len__``, and that cache then kept the last 128 results (a
        # 20,000-case run's controller peaked at ~400 MiB instead of ~200).
        client.purge_local_results(jobs=list(future.msg_ids))
        self.collected.append(future.msg_ids[0])
        if len(self.collected) >= PURGE_EVERY_TASKS:
            collected, self.collected = self.collected, []
            try:
                client.purge_hub_results(collected)
            except Exception:  # memory only; never worth failing a run over
                pass

    def account(self, outcome: ReplayOutcome, engine: EngineInfo) -> None:
        if self.progress is None:
            return
        for nodeid, seconds in outcome.finished.items():
            self.progress.finished(engine.host, outcome.outcomes.get(nodeid, ""), seconds)

    def tick(self, queue: DispatchQueue, force: bool = False) -> None:
        """Now and then: the status on the terminal and a fresh --gold-status-file."""
        if self.progress is None:
            return
        now = time.monotonic()
        in_place = isinstance(self.status_line, StatusLine)
        interval = REDRAW_SECONDS if in_place else self.settings.status_interval
        line_due = not force and now - self.last_status_line >= interval
        file_due = self.settings.status_file and (
            force or now - self.last_status_file >= STATUS_FILE_SECONDS
        )
        if not (line_due or file_due):
            if in_place and not force and not self.status_line.shown:
                self.status_line.show()  # the last status again, below new output
            return
        state = self.state
        running = [n for _, batch in state.inflight.values() for n in batch.nodeids]
        snapshot = self.progress.snapshot(
            running=len(running),
            engines_busy=len(state.inflight),
            engines_available=len(state.engines),
            remaining_seconds=(queue.expected_seconds(n) for n in [*running, *queue.remaining()]),
        )
        if line_due:
            self.last_status_line = now
            if in_place:
                self.status_line.show(format_status_short(snapshot, self.status_line.width))
            else:
                self.write_line(format_status(snapshot))
        if file_due:
            self.last_status_file = now
            write_status_file(Path(self.settings.status_file), snapshot, self.status_state)
