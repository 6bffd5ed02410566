"""The controller-side plugin of a ``--gold`` run: pytest's hooks, nothing else.

Registered as a plugin when ``--gold`` is on. It replaces pytest's ``pytest_runtestloop``
only after collection, so ``--collect-only`` and runs that select nothing never start a
cluster. The run itself is :class:`pytest_gold.policy.run.Run` (the rules) carried out by
:class:`pytest_gold.controller.driver.Driver` (ipyparallel); see
:mod:`pytest_gold.controller.running`.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import pytest_gold.controller.heap as heap
import pytest_gold.policy.resume as resume
from pytest_gold.conflicts import runs_without_cluster
from pytest_gold.controller.campaign import (
    Durations,
    FailureNotes,
    skip_passed_before,
    start_compact_log,
)
from pytest_gold.controller.compactlog import LOG_COMPACT
from pytest_gold.controller.driver import Driver
from pytest_gold.controller.faults import (
    lost_recap,
    sigterm_as_keyboard_interrupt,
)
from pytest_gold.controller.jobcare import job_care
from pytest_gold.controller.progress import Progress, format_host_table
from pytest_gold.controller.reporting import Replayer
from pytest_gold.controller.running import drive, left_out, make_run, run_spec, wait_for_engines
from pytest_gold.controller.terminal import Terminal
from pytest_gold.controller.ticker import StatusTicker
from pytest_gold.controller.verdicts import summarize_left_out
from pytest_gold.controller.walltimecheck import check_profile_jobs
from pytest_gold.launch.attaching import attach, keep_message
from pytest_gold.launch.cluster import ClusterError, ClusterHandle, start_embedded
from pytest_gold.launch.keptcluster import open_kept
from pytest_gold.policy.run import StopKind
from pytest_gold.protocol.identity import ControllerId
from pytest_gold.protocol.messages import to_wire
from pytest_gold.protocol.xdistcompat import EngineNodes
from pytest_gold.settings import GoldSettings, time_limits

#: Cases listed by name in end-of-run notes (more are counted, not listed).
MAX_LISTED_CASES = 10


class GoldController:
    """The controller-side plugin of a ``--gold`` run."""

    def __init__(self, config: pytest.Config, settings: GoldSettings) -> None:
        self.config = config
        self.settings = settings
        self.handle: ClusterHandle | None = None
        self.run_id = uuid.uuid4().hex
        self.controller_id = ControllerId.of_this_process()
        self.compact = settings.log == LOG_COMPACT
        self.terminal = Terminal(config)
        self.failures = FailureNotes(self.terminal, self.compact)
        self.durations = Durations(config)
        self.progress: Progress | None = None
        self.driver: Driver | None = None
        #: Cases reported as passed-before by --gold-resume.
        self.passed_before = 0
        #: What becomes of the kept embedded cluster, for the end of the summary.
        self.kept_line: str | None = None
        # Registered before pytest's own plugins add theirs (this runs in an earlier
        # pytest_configure), so it runs after them: the full collections pytest makes at
        # its end (for unraisable exceptions) skip the run's frozen heap.
        config.add_cleanup(heap.thaw_and_freeze_at_exit)

    # -- reporting hooks -----------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> str | None:
        if runs_without_cluster(config):
            return None  # the output is a plain run's
        return f"gold: {self.settings.describe()}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        # The progress line is finished before the summary: else the terminal finishes
        # it with the first line written after the section title, as a blank line.
        terminalreporter.ensure_newline()
        progress = self.progress
        if progress is not None and progress.hosts and progress.done:
            terminalreporter.section("gold: per-host summary", sep="-")
            table = format_host_table(progress.hosts, progress.wall_seconds, progress.occupied())
            for line in table:
                terminalreporter.write_line(line)
        if self.passed_before:
            count = self.passed_before
            terminalreporter.write_line(
                f"gold: {count} case{'s' if count != 1 else ''} passed in an earlier run and "
                "did not run again (--gold-resume; --cache-clear forgets them)."
            )
        driver = self.driver
        if driver is None:
            self.failures.summarize(terminalreporter)
            self.say_kept(terminalreporter)
            return
        run = driver.run
        if run.not_run:
            count = len(run.not_run)
            terminalreporter.write_line(
                f"gold: {count} selected case{'s' if count != 1 else ''} did not run "
                f"({run.stop_reason or 'the run stopped early'}).",
                yellow=True,
            )
            for nodeid, eid in run.cut_short[:MAX_LISTED_CASES]:
                terminalreporter.write_line(
                    f"gold: cut short while running: {nodeid} (on {driver.tag_of(eid)})",
                    yellow=True,
                )
        for line in lost_recap(driver.lost, progress, run.cases_resent, run.cases_failed_lost):
            terminalreporter.write_line(line, yellow=True)
        summarize_left_out(terminalreporter, left_out(run), MAX_LISTED_CASES)
        self.failures.summarize(terminalreporter)
        self.say_kept(terminalreporter)

    def say_kept(self, terminalreporter: Any) -> None:
        if self.kept_line:
            terminalreporter.write_line(self.kept_line)

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> Any:
        if getattr(report, "gold_passed_before", False) and report.when == "call":
            return resume.PASSED_BEFORE, "p", ("PASSED-BEFORE", {"green": True})
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self) -> None:
        self.terminal.status_line.clear()  # before the terminal reporter writes

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.terminal.status_line.clear()
        self.failures.note(report)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close_cluster()

    # -- the run loop --------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(
                f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} "
                "during collection"
            )
        if runs_without_cluster(self.config):
            return None  # pytest's own loop, in this process, as in a plain run
        if not session.items:
            return True
        items = list(dict.fromkeys(session.items))
        # The collected items live to the end of the run: full collections during the
        # run no longer scan them.
        heap.freeze_run()
        if self.compact:
            start_compact_log(self.config)
        if self.config.getoption("gold_resume"):
            items, self.passed_before = skip_passed_before(self.config, items, self.compact)
            if not items:
                return True
        limits = time_limits(items, self.settings.timeout_seconds)
        check_profile_jobs(self.settings, [item.nodeid for item in items], self.durations, limits)
        self.progress = Progress(total=len(items))
        # A SIGTERM (a scheduler, kill) from here on stops what this run started, also
        # while the cluster is still starting.
        with sigterm_as_keyboard_interrupt():
            try:
                self.handle = self.open_cluster()
            except ClusterError as error:
                raise pytest.UsageError(str(error)) from None
            try:
                self.run(session, items, limits)
            finally:
                if self.driver is not None:
                    self.durations.remember(self.driver.durations)
                self.close_cluster()
        driver = self.driver
        assert driver is not None
        if driver.exit_request is not None:
            request = driver.exit_request
            pytest.exit(request.reason, request.returncode)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if driver.run.stop_kind is StopKind.NO_ENGINES:
            raise session.Failed(
                f"{driver.run.stop_reason}; {len(driver.run.not_run)} cases did not run"
            )
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    def run(
        self, session: pytest.Session, items: list[pytest.Item], limits: dict[str, float]
    ) -> None:
        """Set up the Run and its Driver, wait for the engines, and drive the run."""
        assert self.handle is not None and self.progress is not None
        config, settings = self.config, self.settings
        stream_output = config.getoption("capture") == "no"
        run = make_run(
            config, settings, [item.nodeid for item in items], self.durations.recorded(), limits
        )
        ticker = StatusTicker(
            self.progress,
            self.terminal,
            interval=settings.status_interval,
            status_file=settings.status_file,
            compact=self.compact,
        )
        self.driver = driver = Driver(
            config,
            self.handle,
            run,
            self.terminal,
            self.progress,
            run_id=self.run_id,
            controller_id=self.controller_id,
            # pytest-xdist's protocol: one node per engine, for xdist-aware plugins.
            engine_nodes=EngineNodes(config, self.run_id, self.terminal.write_line),
            replayer=Replayer(config, compact=self.compact, items=items),
            ticker=ticker,
            stream_output=stream_output,
        )
        driver.jobs = ticker.jobs = job_care(
            self.handle, settings.max_jobs, self.terminal, settings.wait_seconds
        )
        wait_for_engines(driver, self.handle, settings)
        self.progress.start()  # utilisation and status lines count from here
        ticker.restart()
        self.terminal.start_status_line(settings.status_line, self.compact)
        engine_count = len(run.usable)
        run.queue.engine_count = engine_count
        spec = run_spec(
            config,
            settings,
            items,
            run_id=self.run_id,
            controller_id=self.controller_id,
            engine_count=engine_count,
            stream_output=stream_output,
        )
        driver.wire_spec = to_wire(spec)
        drive(driver, session)

    def open_cluster(self) -> ClusterHandle:
        settings = self.settings
        if settings.connection_file or settings.profile:
            return attach(
                connection_file=settings.connection_file,
                profile=settings.profile,
                cluster_id=settings.cluster_id,
                wait_seconds=settings.wait_seconds,
                keep_cluster=settings.keep_cluster,
                min_engines=settings.min_engines,
            )
        kept = open_kept(
            settings, self.config.rootpath, lambda text: self.terminal.write_line(f"gold: {text}")
        )
        return kept or start_embedded(
            settings.engines, settings.wait_seconds, fork=settings.fork_engines
        )

    def close_cluster(self) -> None:
        if self.handle is None:
            return
        handle, self.handle = self.handle, None
        driver = self.driver
        at_once = driver is not None and (
            driver.interrupted or driver.hard_stop or driver.controller_lost
        )
        if driver is not None and driver.jobs is not None and not handle.keep:
            driver.jobs.jobs.cancel()  # every job the run submitted, replacements too
        handle.close(at_once=at_once)
        for note in handle.stop_notes:
            self.terminal.write_line(f"gold: {note}", problem=True)
        if handle.keep and self.settings.profile:
            self.terminal.write_line(keep_message(self.settings.profile, self.settings.cluster_id))
        if handle.kept is not None:  # said with the summary, after the progress
            self.kept_line = f"gold: {handle.kept.closing_line()}"
