"""Campaign parts of the controller: resume, durations, progress, live output.

A mixin of :class:`pytest_gold.controller.session.GoldController`; it uses the controller's
``config``, ``settings``, ``state``, ``progress``, ``status_line`` and ``write_line``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_gold.controller.compactlog import (
    LOG_COMPACT,
    MAX_FAILURE_LINES,
    MuteCaseOutput,
    failure_line,
)
from pytest_gold.controller.liveoutput import Fetch, LiveOutput
from pytest_gold.controller.progress import (
    STATUS_FILE_SECONDS,
    format_status,
    format_status_short,
    write_status_file,
)
from pytest_gold.controller.reporting import ReplayOutcome, logstart_caller
from pytest_gold.controller.statusline import REDRAW_SECONDS, StatusLine
from pytest_gold.engine import remote as engine_module
from pytest_gold.engine.outputspool import READ_MAX_BYTES
from pytest_gold.policy import resume
from pytest_gold.policy.failurekinds import summarize
from pytest_gold.policy.scheduling import DispatchQueue, merge_durations
from pytest_gold.protocol.messages import BatchResult, EngineInfo
from pytest_gold.protocol.timing import CONTROLLER_POLL_SECONDS as POLL_SECONDS
from pytest_gold.records.cachedata import DURATIONS_CACHE_KEY, read_done, read_durations
from pytest_gold.records.results import failure_message

#: Collected tasks whose results are purged from the hub in one request.
PURGE_EVERY_TASKS = 200
#: How long a read of live output that did not come live may take (the engine is idle).
OUTPUT_READ_TIMEOUT_SECONDS = 30.0
#: Processes left behind by tests listed by pid and command (more are counted).
MAX_LISTED_LEFTOVERS = 5
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


class CampaignParts:
    """Resume, durations, progress and live output (a mixin of GoldController)."""

    @property
    def compact(self) -> bool:
        """--gold-log=compact: no output per case (see :mod:`pytest_gold.controller.compactlog`)."""
        return self.settings.log == LOG_COMPACT

    def start_compact_log(self) -> None:
        if self.compact and not self.config.pluginmanager.has_plugin(COMPACT_PLUGIN_NAME):
            self.config.pluginmanager.register(MuteCaseOutput(), COMPACT_PLUGIN_NAME)

    def note_failure(self, report: pytest.TestReport) -> None:
        """Remember a case's failure (its first failed report) for the summary by kind;
        in compact mode, say it at once (the first MAX_FAILURE_LINES)."""
        if not report.failed or report.nodeid in self.failures:
            return
        message = failure_message([report])
        self.failures[report.nodeid] = message
        if not self.compact:
            return
        shown = len(self.failures)
        if shown <= MAX_FAILURE_LINES:
            self.write_line(failure_line(report, message), always=True)
        if shown == MAX_FAILURE_LINES:
            self.write_line(
                f"gold: {MAX_FAILURE_LINES} failures shown; the others are in the summary at "
                "the end (--gold-log=compact)",
                always=True,
            )

    def summarize_failures(self, terminalreporter: Any) -> None:
        if not self.failures:
            return
        terminalreporter.section("gold: failures by kind", sep="-")
        for line in summarize(self.failures.items()):
            terminalreporter.write_line(line)

    def skip_passed_before(self, items: list[pytest.Item]) -> list[pytest.Item]:
        """Report the cases that passed in earlier runs without running them."""
        done = read_done(self.config)
        results = self.config.pluginmanager.get_plugin("gold-results")
        stored = results.resume_done() if results is not None else None
        if stored is not None:  # a dataset knows which cells are done: it decides
            done = stored
        to_run, before = resume.partition([item.nodeid for item in items], done)
        by_id = {item.nodeid: item for item in items}
        logstart = logstart_caller(self.config, without_terminal=self.compact)
        for nodeid in before:
            report_passed_before(self.config, by_id[nodeid], logstart)
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
        return read_durations(self.config)

    def remember_durations(self) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is not None and self.state.durations:
            merged = merge_durations(self.recorded_durations(), self.state.durations)
            cache.set(DURATIONS_CACHE_KEY, merged)

    def make_live_output(self) -> LiveOutput:
        return LiveOutput(self.write_output, lambda text: self.write_line(text, problem=True))

    def engine_tag(self, eid: int) -> str:
        engine = self.state.engines.get(eid)
        return engine.tag if engine is not None else f"e{eid}"

    def relay_output(self) -> None:
        """With -s: what running cases print, as it comes in."""
        if not self.stream_output:
            return
        for future, (eid, _) in list(self.state.inflight.items()):
            self.live_output.take(future.metadata, eid, self.engine_tag(eid))

    def settle_output(self, client: Any, metadata: Any, eid: int, result: BatchResult) -> None:
        """With -s: a result came in; first every byte its engine printed up to it."""
        if self.stream_output:
            fetch = self.output_reader(client, eid)
            self.live_output.settle(
                metadata, eid, result.engine.tag, result.output_end, result.output_path, fetch
            )

    def output_lost(self, future: Any, eid: int) -> None:
        if self.stream_output:
            self.live_output.lost(future, eid, self.engine_tag(eid))

    def output_reader(self, client: Any, eid: int) -> Fetch:
        """Reads output an engine has and the controller did not get live (a task: it
        cannot be lost the way IOPub messages can)."""

        def fetch(start: int) -> tuple[int, bytes]:
            future = client[eid].apply_async(
                engine_module.remote_read_output, self.run_id, start, READ_MAX_BYTES
            )
            answer = future.get(timeout=OUTPUT_READ_TIMEOUT_SECONDS)
            self.forget(client, future)
            return answer["start"], answer["data"]

        return fetch

    def write_output(self, text: str) -> None:
        if not text:
            return
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            sys.stdout.write(text)
            return
        self.status_line.clear()
        terminal.ensure_newline()
        if self.config.get_terminal_writer().width_of_current_line:
            terminal.write("\n")
        terminal.write(text, flush=True)

    def await_finish(
        self, client: Any, result: Any, engines: list[int], timeout: float
    ) -> list[tuple[int, Any, Any]]:
        """The end-of-run results of ``engines`` (one task each, ``result``), with each
        task's metadata; with -s, what the last teardowns print is shown meanwhile."""
        deadline = time.monotonic() + timeout
        metadata = [client.metadata[msg_id] for msg_id in result.msg_ids]
        while not result.ready():
            if self.stream_output:
                for eid, md in zip(engines, metadata, strict=True):
                    self.live_output.take(md, eid, self.engine_tag(eid))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            result.wait(min(remaining, POLL_SECONDS))
        outcomes = result.get(timeout=0)
        return list(zip(engines, metadata, outcomes, strict=True))

    def note_leftovers(self, result: BatchResult) -> None:
        """Say which processes left running by tests the engine ended."""
        ended = result.leftovers
        if not ended:
            return
        listed = ", ".join(ended[:MAX_LISTED_LEFTOVERS])
        unlisted = len(ended) - MAX_LISTED_LEFTOVERS
        more = f" and {unlisted} more" if unlisted > 0 else ""
        self.write_line(
            f"gold: ended {len(ended)} process{'es' if len(ended) != 1 else ''} left behind "
            f"by tests on {result.engine.tag}: {listed}{more}",
            problem=True,
        )

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
            for msg_id in collected:  # live output that came after the task was forgotten
                client.metadata.pop(msg_id, None)
            try:
                client.purge_hub_results(collected)
            except Exception:  # memory only; never worth failing a run over
                pass

    def batch_sent(self, engine_id: int) -> None:
        if self.progress is not None:
            self.progress.engine_time.sent(engine_id)

    def account(self, outcome: ReplayOutcome, engine: EngineInfo, batch_done: bool = False) -> None:
        """Count finished cases; ``batch_done``: they are the result of a batch the engine
        ran (what it cost the engine teaches the ETA)."""
        if self.progress is None:
            return
        for nodeid, seconds in outcome.finished.items():
            self.progress.finished(engine.host, outcome.outcomes.get(nodeid, ""), seconds)
        if batch_done:
            self.progress.engine_time.done(engine.engine_id, list(outcome.finished.values()))

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
        engine_time = self.progress.engine_time
        running_left: list[float | None] = []
        for eid, batch in state.inflight.values():
            expected = [queue.expected_seconds(n) for n in batch.nodeids]
            known = [seconds for seconds in expected if seconds is not None]
            running_left.append(
                engine_time.left(eid, known) if len(known) == len(expected) else None
            )
        queued = [queue.expected_seconds(n) for n in queue.remaining()]
        known = [seconds for seconds in queued if seconds is not None]
        snapshot = self.progress.snapshot(
            running=sum(len(batch.nodeids) for _, batch in state.inflight.values()),
            engines_busy=len(state.inflight),
            engines_available=len(state.engines),
            queued_seconds=queued,
            running_left=running_left,
            queued_tasks=queue.planned_batches(known) if len(known) == len(queued) else None,
        )
        if line_due:
            self.last_status_line = now
            if in_place:
                self.status_line.show(format_status_short(snapshot, self.status_line.width))
            else:  # in compact mode it is the run's log, even with -q
                self.write_line(format_status(snapshot), always=self.compact)
        if file_due:
            self.last_status_file = now
            write_status_file(Path(self.settings.status_file), snapshot, self.status_state)
