"""The controller plugin of ``--gold-report``: keeps the campaign log, rewrites the report.

It learns everything from pytest-gold's hooks (engines joining and lost, cases sent and
finished) and appends it to the campaign log as it happens. During the run the page is
redrawn from the log in a process of its own (:mod:`.redraw`); the last page is drawn in
this process when the session ends.
"""

from __future__ import annotations

import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_gold.controller.campaign import DURATIONS_CACHE_KEY
from pytest_gold.protocol.messages import EngineInfo
from pytest_gold.records.results import case_outcome, failure_message
from pytest_gold.report.campaignlog import (
    LOG_FORMAT,
    LOG_VERSION,
    CampaignLogWriter,
    local_utc_offset,
)
from pytest_gold.report.model import FAILED_OUTCOMES, PASSED_BEFORE, function_of, label
from pytest_gold.report.options import ReportSettings
from pytest_gold.report.redraw import Redrawer


@dataclass
class _Busy:
    """What one engine is running: the cases sent to it and not finished."""

    since: float
    cases: dict[str, None] = field(default_factory=dict)


class CampaignRecorder:
    def __init__(
        self, config: pytest.Config, settings: ReportSettings, cluster: str, profile: str | None
    ) -> None:
        self.config = config
        self.settings = settings
        self.cluster = cluster
        self.profile = profile
        self.lock = threading.Lock()
        self.log: CampaignLogWriter | None = None
        self.params: dict[str, dict[str, str]] = {}
        self.busy: dict[EngineInfo, _Busy] = {}
        self.engines: set[EngineInfo] = set()
        self.lost: set[EngineInfo] = set()
        self.total = self.done = 0
        #: Cases already recorded: a case is recorded once.
        self.finished: set[str] = set()
        # ETA: the recorded durations of the cases not finished, plus the mean of this
        # run's cases for those without one (kept up to date as cases finish).
        self.expected: dict[str, float] = {}
        self.expected_left = 0.0
        self.unknown_left = 0
        self.seconds_done = 0.0
        self.timed_done = 0
        self.redrawer = (
            Redrawer(settings.log, settings.report, settings.interval, self.write_progress)
            if settings.report is not None
            else None
        )
        self.final_problem: str | None = None

    # -- the run -------------------------------------------------------------------

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.config.option.collectonly or not session.items:
            return
        axes: dict[str, dict[str, dict[str, None]]] = {}
        for item in dict.fromkeys(session.items):
            callspec = getattr(item, "callspec", None)
            params = {n: label(v) for n, v in callspec.params.items()} if callspec else {}
            self.params[item.nodeid] = params
            arguments = axes.setdefault(function_of(item.nodeid), {})
            for name, value in params.items():
                arguments.setdefault(name, {})[value] = None
        self.total = len(self.params)
        cache = getattr(self.config, "cache", None)
        known = cache.get(DURATIONS_CACHE_KEY, {}) if cache is not None else {}
        for nodeid in self.params:
            seconds = known.get(nodeid) if isinstance(known, dict) else None
            if isinstance(seconds, (int, float)):
                self.expected[nodeid] = float(seconds)
                self.expected_left += float(seconds)
            else:
                self.unknown_left += 1
        self.log = CampaignLogWriter(self.settings.log)
        now = time.time()
        self.write(
            {
                "event": "run",
                "format": LOG_FORMAT,
                "version": LOG_VERSION,
                "time": now,
                "utc_offset": local_utc_offset(now),
                "command": shlex.join(["pytest", *self.config.invocation_params.args]),
                "cluster": self.cluster,
                "profile": self.profile,
                "total": self.total,
                "results": self.results_path(),
                "axes": {f: {a: list(v) for a, v in args.items()} for f, args in axes.items()},
            }
        )

    def results_path(self) -> str | None:
        results = self.config.getoption("gold_results")
        if not results:
            return None
        return str((self.config.invocation_params.dir / Path(results).expanduser()).resolve())

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Cases --gold-resume reports as passed before: part of the grid, not run."""
        if getattr(report, "gold_passed_before", False) and report.when == "call":
            self.finished_case(report.nodeid, PASSED_BEFORE)
            self.write(
                {
                    "event": "case",
                    "nodeid": report.nodeid,
                    "outcome": PASSED_BEFORE,
                    "params": self.params.get(report.nodeid, {}),
                }
            )

    def pytest_gold_cluster_ready(self, engines: list[EngineInfo]) -> None:
        now = time.time()
        for engine in engines:
            with self.lock:  # the redrawing thread counts them for the ETA
                self.engines.add(engine)
            self.write(
                {"event": "engine", "time": now, "host": engine.host, "engine": engine.engine_id}
            )
        if self.redrawer is not None:
            self.redrawer.start()

    def pytest_gold_case_scheduled(self, nodeid: str, engine: EngineInfo) -> None:
        with self.lock:
            busy = self.busy.get(engine)
            if busy is None or not busy.cases:
                busy = self.busy[engine] = _Busy(since=time.time())
            busy.cases[nodeid] = None

    def pytest_gold_case_finished(
        self, nodeid: str, reports: list[pytest.TestReport], engine: EngineInfo
    ) -> None:
        now = time.time()
        with self.lock:
            if nodeid in self.finished:
                return  # a late teardown error of a finished case (the results table too)
            self.finished.add(nodeid)
            busy = self.busy.get(engine)
            since = busy.since if busy is not None else now
            if busy is not None:
                busy.cases.pop(nodeid, None)
                busy.since = now
        self.write(self.case_record(nodeid, reports, engine, since, now))
        self.warn_if_needed()

    def pytest_gold_engine_lost(self, engine: EngineInfo, cases: list[str]) -> None:
        now = time.time()
        with self.lock:
            busy = self.busy.pop(engine, None)
            self.lost.add(engine)
        self.write(
            {
                "event": "lost",
                "time": now,
                "host": engine.host,
                "engine": engine.engine_id,
                "cases": list(cases),
                # Since when it ran them: their time was lost with it.
                "since": busy.since if busy is not None else now,
            }
        )
        self.warn_if_needed()

    def case_record(
        self,
        nodeid: str,
        reports: list[pytest.TestReport],
        engine: EngineInfo,
        since: float,
        now: float,
    ) -> dict[str, Any]:
        starts = [r.start for r in reports if getattr(r, "start", 0)]
        stops = [r.stop for r in reports if getattr(r, "stop", 0)]
        if len(stops) < len(reports):  # made up after a crash or time limit: it ended now
            stops.append(now)
        duration = sum(r.duration for r in reports)
        outcome = case_outcome(reports)
        self.finished_case(nodeid, outcome, duration)
        record: dict[str, Any] = {
            "event": "case",
            "nodeid": nodeid,
            "outcome": outcome,
            # A case pytest-gold reported on its behalf (a crash, a lost engine) has no
            # times of its own: it ran from when its engine turned to it until now.
            "start": min(starts) if starts else since,
            "stop": max(stops) if stops else now,
            "duration": duration,
            "host": engine.host,
            "engine": engine.engine_id,
            "params": self.params.get(nodeid, {}),
        }
        if outcome in FAILED_OUTCOMES:
            record["message"] = failure_message(reports)
            record["longrepr"] = "\n\n".join(r.longreprtext for r in reports if r.failed)
            sections: dict[str, str] = {}
            for report in reports:  # each phase repeats the output of the phases before
                sections.update(report.sections)
            record["output"] = "\n".join(f"----- {t} -----\n{c}" for t, c in sections.items())
        return record

    def finished_case(self, nodeid: str, outcome: str, seconds: float | None = None) -> None:
        with self.lock:
            self.done += 1
            if nodeid in self.expected:
                self.expected_left -= self.expected.pop(nodeid)
            elif nodeid in self.params and self.unknown_left:
                self.unknown_left -= 1
            if seconds is not None and outcome != PASSED_BEFORE:
                self.seconds_done += seconds
                self.timed_done += 1

    def eta(self) -> float | None:
        engines = len(self.engines - self.lost)
        if not engines or not self.timed_done:
            return None
        mean = self.seconds_done / self.timed_done
        return max(self.expected_left + self.unknown_left * mean, 0.0) / engines

    def write(self, record: dict[str, Any]) -> None:
        with self.lock:
            if self.log is not None:
                self.log.write(record)

    # -- redrawing -----------------------------------------------------------------

    def write_progress(self) -> None:
        """A progress record (called by the redrawing thread before each redraw)."""
        with self.lock:
            running = [
                {
                    "host": engine.host,
                    "engine": engine.engine_id,
                    "since": busy.since,
                    "cases": len(busy.cases),
                    "first": next(iter(busy.cases)),
                }
                for engine, busy in self.busy.items()
                if busy.cases
            ]
            record = {
                "event": "progress",
                "time": time.time(),
                "done": self.done,
                "eta": self.eta(),
                "running": running,
            }
            if self.log is not None:
                self.log.write(record)

    def warn_if_needed(self) -> None:
        """A failed redraw: one warning line (from the main thread, between results)."""
        warning = self.redrawer.warning() if self.redrawer is not None else None
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if warning is not None and terminal is not None:
            terminal.ensure_newline()
            terminal.write_line(warning, yellow=True)

    # -- the end -------------------------------------------------------------------

    def stop_redrawing(self) -> None:
        if self.redrawer is not None:
            self.redrawer.stop()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.stop_redrawing()
        if self.log is None:
            return
        self.write(
            {
                "event": "end",
                "time": time.time(),
                "state": self.end_state(session, exitstatus),
                "exit_status": int(exitstatus),
            }
        )
        with self.lock:
            self.log.close()
            self.log = None
        if self.settings.report is not None:
            from pytest_gold.report.cli import draw

            try:
                draw(self.settings.log, self.settings.report)
            except Exception as error:  # the run's results stand; say what is missing
                self.final_problem = f"{type(error).__name__}: {error}"

    def end_state(self, session: pytest.Session, exitstatus: int) -> str:
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            return "interrupted"
        if exitstatus in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR):
            return f"the run failed ({pytest.ExitCode(exitstatus).name.lower().replace('_', ' ')})"
        reason = session.shouldfail or session.shouldstop
        if reason:
            return str(reason)
        if self.done < self.total:
            return f"stopped early: {self.total - self.done} of {self.total} cases did not run"
        return "finished"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        report = self.settings.report
        if report is None:
            return
        if self.final_problem is not None:
            terminalreporter.write_line(
                f"gold: warning: the campaign report {report} could not be written: "
                f"{self.final_problem}",
                yellow=True,
            )
        elif self.config.get_verbosity() >= 0 and report.exists():
            terminalreporter.write_line(f"gold: campaign report: {report}")

    def pytest_unconfigure(self) -> None:
        self.stop_redrawing()
        with self.lock:
            if self.log is not None:
                self.log.close()
                self.log = None
