"""The controller's run loop: hand batches to idle engines, replay what comes back.

Registered as a plugin when ``--gold`` is on. It replaces pytest's ``pytest_runtestloop``
only after collection, so ``--collect-only`` and runs that select nothing never start a
cluster.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_gold.conflicts import runs_without_cluster
from pytest_gold.controller.campaign import CampaignParts
from pytest_gold.controller.enginepool import EnginePool
from pytest_gold.controller.faults import (
    EVERY_ENGINE_LOST,
    INTERRUPT_GRACE_SECONDS,
    POLL_SECONDS,
    FaultHandling,
    sigterm_as_keyboard_interrupt,
)
from pytest_gold.controller.liveness import HubMonitor
from pytest_gold.controller.progress import Progress, format_host_table
from pytest_gold.controller.reporting import Replayer
from pytest_gold.controller.statusline import NoStatusLine, StatusLine, in_place
from pytest_gold.controller.verdicts import VerdictOrder, first_cases, stops_on_failure
from pytest_gold.engine import remote as engine_module
from pytest_gold.engine.engineruns import ControllerId
from pytest_gold.launch.attaching import attach, keep_message
from pytest_gold.launch.cluster import ClusterError, ClusterHandle, start_embedded
from pytest_gold.launch.keptcluster import open_kept
from pytest_gold.policy.scheduling import DispatchQueue, InOrderRelease, dispatch_order
from pytest_gold.protocol.collecting import selected_paths
from pytest_gold.protocol.messages import (
    Batch,
    BatchResult,
    EngineInfo,
    ExitRequested,
    RunSpec,
    result_from_wire,
    to_wire,
)
from pytest_gold.protocol.xdistcompat import EngineNodes, pytest_environment
from pytest_gold.settings import DEFAULT_WORKER_ENV, LEFTOVERS_END, GoldSettings, time_limits

#: Cases listed by name in end-of-run notes (more are counted, not listed).
MAX_LISTED_CASES = 10
#: How long the end-of-run teardown on the engines may take.
FINISH_TIMEOUT_SECONDS = engine_module.WORKER_FINISH_SECONDS + 30


@dataclass
class RunState:
    """Bookkeeping of one run on the controller."""

    engines: dict[int, EngineInfo] = field(default_factory=dict)
    idle: list[int] = field(default_factory=list)
    inflight: dict[Any, tuple[int, Batch]] = field(default_factory=dict)
    used_engines: set[int] = field(default_factory=set)
    not_run: list[str] = field(default_factory=list)
    lost_engines: set[int] = field(default_factory=set)
    #: Engine checks sent and not answered yet, with when they were sent.
    engine_checks: dict[int, tuple[Any, float]] = field(default_factory=dict)
    #: Engines left out because the engine check failed: (what they said, what differs).
    failed_check: dict[int, tuple[EngineInfo | None, list[str]]] = field(default_factory=dict)
    #: Cases that were running when the run stopped, with where they ran.
    cut_short: list[str] = field(default_factory=list)
    #: Cases that finished on other engines after the point where the run stopped (-x,
    #: --maxfail, --sw): left out, as a plain run would not have run them.
    left_out: list[str] = field(default_factory=list)
    #: How often each case was lost with its engine (resubmitted up to --gold-retries).
    losses: dict[str, int] = field(default_factory=dict)
    controller_lost: bool = False
    #: Cases reported as passed-before by --gold-resume.
    passed_before: int = 0
    #: Duration of every case that finished in this run (remembered in the cache).
    durations: dict[str, float] = field(default_factory=dict)
    #: Interrupted (Ctrl-C): nothing more is waited for than the grace periods allow.
    interrupted: bool = False
    hard_stop: bool = False
    stop_reason: str | None = None
    #: After a stop: when batches that have not answered are given up.
    stop_deadline: float | None = None
    #: Engines that did not answer after a stop: nothing more is sent to them.
    unresponsive: set[int] = field(default_factory=set)
    exit_request: Any = None
    #: Engines lost during the run (as they were known), and what became of their cases.
    lost: dict[int, EngineInfo] = field(default_factory=dict)
    cases_resent: int = 0
    cases_failed_lost: int = 0


class GoldController(EnginePool, FaultHandling, CampaignParts, VerdictOrder):
    """The controller-side plugin of a ``--gold`` run."""

    def __init__(self, config: pytest.Config, settings: GoldSettings) -> None:
        self.config = config
        self.settings = settings
        self.session: pytest.Session | None = None
        self.handle: ClusterHandle | None = None
        self.state = RunState()
        self.run_id = uuid.uuid4().hex
        self.controller_id = ControllerId.of_this_process()
        self.time_limits: dict[str, float] = {}
        self.progress: Progress | None = None
        self.last_status_line = self.last_status_file = time.monotonic()
        self.status_state = "running"
        self.live_output = self.make_live_output()
        self.collected: list[str] = []
        self.stream_output = config.getoption("capture") == "no"
        self.status_line: StatusLine | NoStatusLine = NoStatusLine()
        #: pytest-xdist's protocol: one node per engine, for xdist-aware plugins.
        self.engine_nodes = EngineNodes(config, self.run_id, self.write_line)
        self.machine = engine_module.this_machine()
        #: The one-line failure message of every case that failed, by node id.
        self.failures: dict[str, str] = {}
        #: What becomes of the kept embedded cluster, for the end of the summary.
        self.kept_line: str | None = None

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
            for line in format_host_table(progress.hosts, progress.wall_seconds):
                terminalreporter.write_line(line)
        if self.state.passed_before:
            count = self.state.passed_before
            terminalreporter.write_line(
                f"gold: {count} case{'s' if count != 1 else ''} passed in an earlier run and "
                "did not run again (--gold-resume; --cache-clear forgets them)."
            )
        if self.state.not_run:
            count = len(self.state.not_run)
            terminalreporter.write_line(
                f"gold: {count} selected case{'s' if count != 1 else ''} did not run "
                f"({self.state.stop_reason or 'the run stopped early'}).",
                yellow=True,
            )
            for case in self.state.cut_short[:MAX_LISTED_CASES]:
                terminalreporter.write_line(f"gold: cut short while running: {case}", yellow=True)
        for line in self.lost_recap():
            terminalreporter.write_line(line, yellow=True)
        self.summarize_left_out(terminalreporter, MAX_LISTED_CASES)
        self.summarize_failures(terminalreporter)
        if self.kept_line:
            terminalreporter.write_line(self.kept_line)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self) -> None:
        self.status_line.clear()  # before the terminal reporter writes

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.status_line.clear()
        self.note_failure(report)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close_cluster()

    # -- the run loop --------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        self.session = session
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
        self.start_compact_log()
        if self.config.getoption("gold_resume"):
            items = self.skip_passed_before(items)
            if not items:
                return True
        self.time_limits = time_limits(items, self.settings.timeout_seconds)
        self.progress = Progress(total=len(items))
        # A SIGTERM (a scheduler, kill) from here on stops what this run started, also
        # while the cluster is still starting.
        with sigterm_as_keyboard_interrupt():
            try:
                self.handle = self.open_cluster()
            except ClusterError as error:
                raise pytest.UsageError(str(error)) from None
            try:
                self.run(session, items)
            finally:
                self.remember_durations()
                self.close_cluster()
        if self.state.exit_request is not None:
            request = self.state.exit_request
            pytest.exit(request.reason, request.returncode)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if self.state.stop_reason == EVERY_ENGINE_LOST:
            raise session.Failed(
                f"{EVERY_ENGINE_LOST}; {len(self.state.not_run)} cases did not run"
            )
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

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
            settings, self.config.rootpath, lambda text: self.write_line(f"gold: {text}")
        )
        return kept or start_embedded(settings.engines, settings.wait_seconds)

    def close_cluster(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            state = self.state
            handle.close(at_once=state.interrupted or state.hard_stop or state.controller_lost)
            for note in handle.stop_notes:
                self.write_line(f"gold: {note}", problem=True)
            if handle.keep and self.settings.profile:
                self.write_line(keep_message(self.settings.profile, self.settings.cluster_id))
            if handle.kept is not None:  # said with the summary, after the progress
                self.kept_line = f"gold: {handle.kept.closing_line()}"

    def write_line(self, text: str, *, problem: bool = False, always: bool = False) -> None:
        """A line on the terminal; with -q only problems (lost engines, ...) and lines
        that are ``always`` shown."""
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None and (problem or always or self.config.get_verbosity() >= 0):
            self.status_line.clear()
            terminal.ensure_newline()
            if self.config.get_terminal_writer().width_of_current_line:
                terminal.write("\n")  # after progress dots
            terminal.write_line(text, yellow=problem)

    def make_status_line(self) -> StatusLine | NoStatusLine:
        """In place on a terminal (--gold-status-line), not without pytest's terminal
        reporter, nor with -q unless --gold-log=compact (where the status is the log)."""
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None or (self.config.get_verbosity() < 0 and not self.compact):
            return NoStatusLine()
        if not in_place(self.settings.status_line, sys.stdout, os.environ):
            return NoStatusLine()
        # pytest's terminal reporter writes to the sys.stdout of its start, which is this
        # one: pytest's capturing is suspended while the run loop runs.
        return StatusLine(self.config.get_terminal_writer(), sys.stdout)

    def run(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        assert self.handle is not None
        client = self.handle.client
        replayer = Replayer(self.config, compact=self.compact)
        self.wait_for_engines(client)
        self.announce()
        if self.progress is not None:  # utilisation and status lines count from here
            self.progress.start()
            self.last_status_line = time.monotonic()
        self.status_line = self.make_status_line()
        spec = RunSpec(
            run_id=self.run_id,
            invocation_dir=str(self.config.invocation_params.dir),
            rootdir=str(self.config.rootpath),
            inifile=str(self.config.inipath or ""),
            args=[str(arg) for arg in self.config.invocation_params.args],
            collect_paths=selected_paths(items),
            collect_args=list(self.config.args),
            engine_count=len(self.state.engines),
            env={**pytest_environment(), **self.settings.env},
            default_env=DEFAULT_WORKER_ENV,
            stream_output=self.stream_output,
            end_leftovers=self.settings.leftovers == LEFTOVERS_END,
            controller=dataclasses.asdict(self.controller_id),
        )
        wire_spec = to_wire(spec)
        known = self.recorded_durations()
        nodeids = [item.nodeid for item in items]
        in_order = stops_on_failure(self.config)
        if in_order:
            # pytest's order, one case per task: see pytest_gold.controller.verdicts.
            self.in_order = InOrderRelease(nodeids)
        else:
            first = first_cases(self.config, nodeids)
            nodeids = dispatch_order(nodeids, known, self.settings.order, first=first)
        queue = DispatchQueue(
            nodeids,
            engine_count=len(self.state.engines),
            target_batch_seconds=self.settings.batch_seconds,
            known_seconds=known,
            max_batch_cases=1 if in_order else None,
            keep_order=in_order,
        )
        try:
            try:
                self.loop(session, client, queue, wire_spec, replayer)
            except KeyboardInterrupt:
                try:
                    self.interrupted(client, queue, replayer)
                except KeyboardInterrupt:
                    self.state.hard_stop = True  # a second Ctrl-C: leave at once
                raise
        finally:
            self.status_line.clear()
            self.status_line = NoStatusLine()
            self.state.left_out = self.left_out()
            try:
                self.finish(client, replayer)
            finally:
                self.engine_nodes.all_down()
            if self.progress is not None:  # engine use ends here, not after the cluster stops
                self.progress.stop()
            self.status_state = self.state.stop_reason or "finished"
            self.tick(queue, force=True)

    def loop(
        self,
        session: pytest.Session,
        client: Any,
        queue: DispatchQueue,
        wire_spec: dict[str, Any],
        replayer: Replayer,
    ) -> None:
        state = self.state
        monitor = HubMonitor(client, self.settings.wait_seconds)
        while queue or state.inflight:
            silent = monitor.lost_for()
            if silent is not None:
                self.controller_lost(silent, queue, replayer)
                return
            self.dispatch(client, queue, wire_spec)
            done, _ = concurrent.futures.wait(
                list(state.inflight),
                timeout=POLL_SECONDS,
                return_when=concurrent.futures.FIRST_COMPLETED,
            )
            self.relay_output()
            for future in done:
                self.collect(future, queue, replayer, client, wire_spec)
            if state.stop_reason is None:
                self.check_stop(session, queue, client)
            elif state.inflight and time.monotonic() > (state.stop_deadline or math.inf):
                self.abandon_unanswered()
            self.discover_engines(client)
            self.tick(queue)

    def dispatch(self, client: Any, queue: DispatchQueue, wire_spec: dict[str, Any]) -> None:
        state = self.state
        self.drop_lost_idle(client, queue)
        while state.idle and queue and state.stop_reason is None:
            # Not what a plain run never reaches (pytest_gold.controller.verdicts); with nothing in
            # flight that could still release the results held back, never wait forever.
            if state.inflight and not self.may_dispatch(queue.head):
                break
            eid = state.idle.pop(0)
            batch = queue.next_batch()
            assert batch is not None
            limits = {n: self.time_limits[n] for n in batch.nodeids if n in self.time_limits}
            batch = dataclasses.replace(batch, time_limits=limits)
            engine = state.engines[eid]
            spec = self.engine_nodes.spec_for(engine, wire_spec, len(state.engines), self.machine)
            try:
                future = client[eid].apply_async(
                    engine_module.remote_run_batch, spec, to_wire(batch)
                )
            except IndexError:  # unregistered (lost) since drop_lost_idle looked
                queue.requeue(list(batch.nodeids))
                state.idle.insert(0, eid)
                self.drop_lost_idle(client, queue)
                continue
            state.inflight[future] = (eid, batch)
            state.used_engines.add(eid)
            self.batch_sent(eid)
            for nodeid in batch.nodeids:
                self.config.hook.pytest_gold_case_scheduled(
                    config=self.config, nodeid=nodeid, engine=engine
                )

    def collect(
        self,
        future: Any,
        queue: DispatchQueue,
        replayer: Replayer,
        client: Any,
        wire_spec: dict[str, Any] | None = None,
    ) -> None:
        state = self.state
        try:
            data = future.get()
        except Exception as error:
            eid, batch = state.inflight.pop(future)
            self.output_lost(future, eid)
            self.batch_failed(eid, batch, error, queue, replayer)
            return
        eid, batch = state.inflight.pop(future)
        result = result_from_wire(data)
        # Its output first, all of it (output and results travel apart).
        self.settle_output(client, future.metadata, eid, result)
        self.forget(client, future)
        state.idle.append(eid)
        if wire_spec is not None and self.in_order is None and not stops_run(result):
            # The engine's next batch goes out before this one is replayed: the engine
            # works meanwhile instead of waiting for the controller (issue 12).
            self.dispatch(client, queue, wire_spec)
        self.take_result(
            batch.nodeids, result, lambda: self.replay_result(result, queue, client, replayer)
        )

    def replay_result(
        self, result: BatchResult, queue: DispatchQueue, client: Any, replayer: Replayer
    ) -> None:
        state = self.state
        outcome = replayer.replay(result)
        self.note_leftovers(result)
        self.account(outcome, result.engine, batch_done=True)
        queue.record(outcome.finished.values())
        state.durations.update(outcome.finished)
        for crash in outcome.crashes:
            if crash.nodeid is None:
                self.write_line(
                    f"gold: the worker on {result.engine.tag} died between cases; the rest of "
                    f"its batch went to a new worker. {crash.cause}",
                    problem=True,
                )
        if outcome.not_run:
            state.not_run.extend(outcome.not_run)
            state.cut_short.extend(outcome.cut_short)
        if outcome.exit_request is not None and state.exit_request is None:
            state.exit_request = outcome.exit_request
            self.stop(f"pytest.exit() in {outcome.exit_request.nodeid}", queue, client)

    def finish(self, client: Any, replayer: Replayer) -> None:
        """End the workers: last teardowns (reported), then their pytest sessions."""
        state = self.state
        busy = {eid for eid, _ in state.inflight.values()}
        used = sorted(state.used_engines - state.lost_engines - state.unresponsive - busy)
        if not used or state.controller_lost or state.hard_stop:
            return
        # A worker ahead for the next run only where the engines outlive this one.
        handle = self.handle
        prepare_next = handle is None or not handle.owned or handle.keep
        result = client[used].apply_async(
            engine_module.remote_finish_run,
            self.run_id,
            prepare_next,
            self.engine_nodes.wants_output,
        )
        timeout = INTERRUPT_GRACE_SECONDS if state.interrupted else FINISH_TIMEOUT_SECONDS
        try:
            outcomes = self.await_finish(client, result, used, timeout)
        except Exception as error:  # the run's results stand; say what was not torn down
            self.write_line(
                f"gold: the end-of-run teardown on the engines failed: {error}", problem=True
            )
            return
        for eid, metadata, data in outcomes:
            finished = result_from_wire(data)
            self.settle_output(client, metadata, eid, finished)
            replayer.replay(self.without_left_out(finished))
            self.note_leftovers(finished)
            self.engine_nodes.node_down(finished.engine.engine_id, finished.workeroutput)


def stops_run(result: BatchResult) -> bool:
    """A case of the batch called ``pytest.exit()``: nothing more is sent."""
    return any(isinstance(event, ExitRequested) for event in result.events)
