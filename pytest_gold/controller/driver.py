"""The driver of a run: ipyparallel on one side, the pure :class:`~pytest_gold.policy.run.Run`
on the other.

The driver polls the cluster (engines registered and gone, tasks done, the hub alive), feeds
what happened to the ``Run`` as events and carries out the actions it returns: send the
engine check or a batch, interrupt engines, report a case the controller fails on its
behalf, and say what happened on the terminal. Every rule of a run (who gets which batch,
what a lost engine costs, when the run stops, what is replayed when) is the ``Run``'s; the
driver keeps only what ipyparallel and pytest need (tasks in flight, engine descriptions,
results waiting for their turn).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from typing import Any

import pytest

import pytest_gold.controller.engineloss as engineloss
import pytest_gold.controller.tasks as tasks
from pytest_gold.controller.enginepool import (
    CHECK_POLL_SECONDS,
    EngineChecks,
    FailedCheck,
    expected_of,
)
from pytest_gold.controller.faults import (
    NO_ENGINE,
    controller_lost_cause,
    is_engine_lost,
    lost_case_message,
    signal_engines,
    supervisor_failed_message,
)
from pytest_gold.controller.jobcare import JobCare
from pytest_gold.controller.jobends import JobEnds, in_run_clock
from pytest_gold.controller.liveness import HubMonitor
from pytest_gold.controller.progress import Progress
from pytest_gold.controller.reporting import Replayer
from pytest_gold.controller.taskoutput import OutputRelay, TaskMemory, note_leftovers
from pytest_gold.controller.terminal import Terminal
from pytest_gold.controller.ticker import StatusTicker
from pytest_gold.controller.verdicts import failed_reports, finishes, stops
from pytest_gold.policy.run import (
    Abandoned,
    Action,
    BatchSummary,
    CheckEngine,
    Dispatch,
    EngineJoinedRun,
    EngineLeftOut,
    EngineLostNotice,
    EngineReleased,
    EngineState,
    FailCase,
    GiveUpWaiting,
    Interrupt,
    Run,
    StopKind,
)
from pytest_gold.protocol.identity import ControllerId
from pytest_gold.protocol.messages import (
    Batch,
    BatchResult,
    EngineInfo,
    ExitRequested,
    NotRun,
    result_from_wire,
    to_wire,
)
from pytest_gold.protocol.synthetic import failed_case_events
from pytest_gold.protocol.timing import CONTROLLER_POLL_SECONDS as POLL_SECONDS
from pytest_gold.protocol.xdistcompat import EngineNodes


def task_seconds(metadata: Any) -> float:
    """How long a task ran on its engine, as ipyparallel timed it there (0: not known)."""
    try:
        return float((metadata["completed"] - metadata["started"]).total_seconds())
    except (KeyError, TypeError, AttributeError):
        return 0.0


class TooFewEngines(Exception):
    """The first wait ended with fewer usable engines than --gold-min-engines."""


class Driver:
    """Carries out one :class:`Run` on the cluster of ``handle``."""

    def __init__(
        self,
        config: pytest.Config,
        handle: Any,
        run: Run,
        terminal: Terminal,
        progress: Progress,
        *,
        run_id: str,
        controller_id: ControllerId,
        engine_nodes: EngineNodes,
        replayer: Replayer,
        ticker: StatusTicker,
        stream_output: bool,
    ) -> None:
        self.config = config
        #: The cluster (a ClusterHandle: its client, and whether this run owns it).
        self.handle = handle
        self.client = client = handle.client
        self.run_id = run_id
        self.run = run
        self.terminal = terminal
        self.progress = progress
        self.engine_nodes = engine_nodes
        self.replayer = replayer
        self.ticker = ticker
        self.memory = TaskMemory(client)
        self.output = OutputRelay(client, run_id, terminal, self.memory, self.tag_of, stream_output)
        self.checks = EngineChecks(
            client, expected_of(config), run_id, controller_id, run.wait_seconds
        )
        self.machine = tasks.this_machine()
        #: The run spec on the wire (set when the run starts).
        self.wire_spec: dict[str, Any] = {}
        #: What each engine said in its check (joined or not), and the engines left out.
        self.info: dict[int, EngineInfo] = {}
        self.failed_check: dict[int, FailedCheck] = {}
        #: Engines lost during the run, as they were known.
        self.lost: dict[int, EngineInfo] = {}
        #: Tasks in flight (batches), with their engines, in the order sent; and the
        #: batch each carries.
        self.futures: dict[Any, int] = {}
        self.batches: dict[Any, Batch] = {}
        #: Results the Run holds back for pytest's order, by node id; and of those, the
        #: failures made up here (no duration to learn from).
        self.held_results: dict[str, BatchResult] = {}
        self.made_up: set[str] = set()
        #: During the first wait: failed checks are said together after it.
        self.initial = True
        self.exit_request: ExitRequested | None = None
        #: Duration of every case that finished in this run (remembered in the cache).
        self.durations: dict[str, float] = {}
        self.interrupted = False
        self.hard_stop = False
        self.controller_lost = False
        #: The pytest session (whether pytest stops the run: -x, --maxfail).
        self.session: pytest.Session | None = None
        #: The run's Slurm jobs (replacements, counts), for a cluster it started on Slurm.
        self.jobs: JobCare | None = None
        #: Slurm jobs that ended with engines of the run (said once per job).
        self.job_ends = JobEnds()

    def tag_of(self, eid: int) -> str:
        info = self.info.get(eid)
        return info.tag if info is not None else f"e{eid}"

    @property
    def engines(self) -> dict[int, EngineInfo]:
        """The engines taking part now (checked, not lost)."""
        return {eid: self.info[eid] for eid in self.run.usable}

    # -- engines -----------------------------------------------------------------------

    def discover(self, now: float) -> float:
        """Check engines that registered since last time; take in those that pass.

        During the first wait this waits for the answers: nothing runs before; but once
        --gold-min-engines engines passed, for at most :data:`CHECK_SETTLE_SECONDS` more:
        an engine busy with another run's case answers when that case ends, and joins
        then. Later it only looks at the answers that came in, so that engines still
        starting never hold up the cases already running. Returns the time it looked last.
        """
        run = self.run
        for eid in self.client.ids:
            if eid not in run.engines:
                self.apply(run.engine_registered(eid, now), now)
        if not self.checks.pending:
            return now
        settled = self.checks.settled_at()
        joined: list[EngineInfo] = []
        while True:
            requeued, answered = self.checks.answers(now)
            for eid in requeued:
                run.engine_check_queued(eid, now)
            for eid, info, problems in answered:
                if info is not None:
                    self.info[eid] = info
                    run.job_ends_at(eid, in_run_clock(info.job_end, now, time.time()))
                for action in run.engine_checked(eid, problems, now):
                    if isinstance(action, EngineJoinedRun):
                        joined.append(self.info[eid])
                    self.apply([action], now, answer=info)
            if not (self.initial and self.checks.pending):
                break
            enough = len(run.usable) >= run.min_engines
            if not enough or now > settled:
                break  # the first wait goes on waiting (and says so), or the run starts
            time.sleep(CHECK_POLL_SECONDS)
            now = time.monotonic()
        if joined:
            self.config.hook.pytest_gold_cluster_ready(
                config=self.config, client=self.client, engines=joined
            )
        return now

    def drop_lost_idle(self, now: float) -> None:
        """Idle engines that ipyparallel no longer has (the controller stopped hearing
        their heartbeat): lost, and never sent a batch (ipyparallel would refuse it)."""
        registered = set(self.client.ids)
        # (released engines too: their job's end is said)
        for eid in self.run.engines_in(EngineState.IDLE, EngineState.RELEASED):
            if eid not in registered:
                self.apply(engineloss.lose_engine(self, eid, "", now), now)

    # -- the loop ----------------------------------------------------------------------

    def loop(self, session: pytest.Session) -> None:
        self.session = session
        run = self.run
        monitor = HubMonitor(self.client, run.wait_seconds)
        while not run.over:
            silent = monitor.lost_for()
            if silent is not None:
                self.lose_controller(silent)
                return
            now = self.discover(time.monotonic())
            self.drop_lost_idle(now)
            self.apply(run.tick(now, session.testsfailed), now)
            self.poll()
            if not run.stopped:
                reason = session.shouldfail or session.shouldstop
                if reason:
                    self.apply(run.stop_requested(StopKind.FAILURES, str(reason), now), now)
            self.ticker.tick(run)
            if self.jobs is not None:
                self.apply(self.jobs.tick(run, self.progress.engine_time, now, self.info), now)
        engineloss.say_job_ends(self, final=True)

    def poll(self) -> None:
        """Wait a little for tasks to finish; take in those that did."""
        done, _ = concurrent.futures.wait(
            list(self.futures), timeout=POLL_SECONDS, return_when=concurrent.futures.FIRST_COMPLETED
        )
        self.output.take((future.metadata, eid) for future, eid in self.futures.items())
        # In the order sent: an engine's batches are taken in in the order it ran them.
        for future in [future for future in self.futures if future in done]:
            if future in self.futures:  # (not given up meanwhile)
                self.collect(future)

    def interrupt(self, session: pytest.Session | None) -> None:
        """Ctrl-C: interrupt the running cases and report what finished (in pytest's
        order where that matters, as in a plain run); a second Ctrl-C ends this at once."""
        self.session = session
        now = time.monotonic()
        self.apply(self.run.stop_requested(StopKind.INTERRUPT, "interrupted", now), now)
        self.interrupted = True
        while not self.run.over:
            self.poll()
            now = time.monotonic()
            self.apply(self.run.tick(now), now)

    def lose_controller(self, silent: float) -> None:
        """Every unfinished case becomes an error naming the cause; nothing waits on the
        dead controller again (no end-of-run teardown on the engines)."""
        cause = controller_lost_cause(silent, self.run.wait_seconds)
        self.controller_lost = True
        self.futures.clear()
        self.apply(self.run.controller_lost(cause), time.monotonic())
        self.terminal.write_line(f"gold: {cause.removeprefix('pytest-gold: ')}", problem=True)

    # -- results -----------------------------------------------------------------------

    def collect(self, future: Any) -> None:
        eid = self.futures.pop(future)
        batch = self.batches.pop(future, None)
        now = time.monotonic()
        try:
            data = future.get()
        except Exception as error:
            self.output.lost(future, eid)
            self.batch_failed(eid, error, now, batch)
            return
        result = result_from_wire(data)
        self.progress.engine_time.came_back(eid)
        self.progress.task_ran(eid, task_seconds(future.metadata))
        # Its output first, all of it (output and results travel apart).
        self.output.settle(future.metadata, eid, result)
        self.memory.forget(future)
        nodeids = batch.nodeids if batch is not None else []
        if self.run.in_order is not None and len(nodeids) == 1 and finishes(result, nodeids[0]):
            self.held_results[nodeids[0]] = result
            self.run.result_held(eid, nodeids[0], failed_reports(result), stops(result))
            self.release(now)
            return
        # (in a run in pytest's order, a case that did not run holds back the later ones
        # for good)
        self.apply(self.run.batch_returned(eid, now, batch), now)  # its next batch first
        try:
            summary = self.replay(result, measured=True)
        except BaseException:  # Ctrl-C in the replay: what was not replayed did not run
            finished = self.replayer.replaying.finished
            unreplayed = [nodeid for nodeid in nodeids if nodeid not in finished]
            summary = BatchSummary(finished, unreplayed, measured=False)
            self.run.batch_done(eid, summary, now, batch)
            raise
        self.apply(self.run.batch_done(eid, summary, now, batch), now)

    def release(self, now: float) -> None:
        """Replay the held-back results whose turn came."""
        session = self.session
        while (ready := self.run.release_next()) is not None:
            nodeid, eid = ready
            result = self.held_results.pop(nodeid)
            measured = nodeid not in self.made_up
            self.made_up.discard(nodeid)
            summary = self.replay(result, measured=measured)
            stopping = session is not None and (session.shouldfail or session.shouldstop)
            if stopping or self.exit_request is not None:
                self.run.hold_rest()  # pytest stops here; the loop stops the rest
            self.apply(self.run.case_released(nodeid, eid, summary, now), now)

    def replay(self, result: BatchResult, measured: bool) -> BatchSummary:
        """Replay through pytest's hooks; what the Run needs to know of it."""
        outcome = self.replayer.replay(result)
        note_leftovers(self.terminal, result)
        engine = result.engine
        for nodeid, seconds in outcome.finished.items():
            self.progress.finished(engine.host, outcome.outcomes.get(nodeid, ""), seconds)
        if measured:
            self.progress.engine_time.done(engine.engine_id, list(outcome.finished.values()))
            self.durations.update(outcome.finished)
        for crash in outcome.crashes:
            if crash.nodeid is None:
                self.terminal.write_line(
                    f"gold: the worker on {engine.tag} died between cases; the rest of "
                    f"its batch went to a new worker. {crash.cause}",
                    problem=True,
                )
        if outcome.exit_request is not None and self.exit_request is None:
            self.exit_request = outcome.exit_request
        cut_short = [n for e in result.events if isinstance(e, NotRun) for n in e.cut_short]
        return BatchSummary(
            finished=outcome.finished,
            not_run=outcome.not_run,
            cut_short=cut_short,
            exit_nodeid=outcome.exit_request.nodeid if outcome.exit_request else None,
            measured=measured,
        )

    def batch_failed(self, eid: int, error: Exception, now: float, batch: Batch | None) -> None:
        """A task raised instead of returning: its engine died, or the supervisor failed."""
        engine = self.info[eid]
        if not is_engine_lost(error):
            message = supervisor_failed_message(engine, error)
            self.apply(self.run.batch_errored(eid, message, batch), now)
            return
        actions = engineloss.lose_engine(self, eid, lost_case_message(engine), now)
        self.apply(
            [
                dataclasses.replace(a, message=f"{a.message}; {error}")
                if isinstance(a, FailCase)
                else a
                for a in actions
            ],
            now,
        )

    # -- actions -----------------------------------------------------------------------

    def apply(self, actions: list[Action], now: float, answer: EngineInfo | None = None) -> None:
        """Carry out the Run's actions (``answer``: what an engine said in its check)."""
        for action in actions:
            if isinstance(action, CheckEngine):
                self.checks.send(action.engine_id, now)
            elif isinstance(action, Dispatch):
                self.dispatch(action, now)
            elif isinstance(action, Interrupt):
                engines = {eid: self.info[eid] for eid in action.engine_ids}
                signal_engines(self.client, engines, tasks.INTERRUPT_SIGNAL)
            elif isinstance(action, FailCase):
                self.fail_case(action)
            elif isinstance(action, EngineJoinedRun):
                self.progress.add_engine(self.info[action.engine_id].host, action.engine_id)
            elif isinstance(action, EngineLeftOut):
                engineloss.check_failed(self, action, answer)
            elif isinstance(action, EngineLostNotice):
                engineloss.engine_lost(self, action)
            elif isinstance(action, EngineReleased):
                engineloss.released(self, action)
            elif isinstance(action, Abandoned):
                engineloss.abandoned(self, action)
            elif isinstance(action, GiveUpWaiting):
                raise TooFewEngines(action)
        if self.held_results:
            self.release(now)  # e.g. a failure made up here whose turn it is

    def dispatch(self, action: Dispatch, now: float) -> None:
        eid, batch = action.engine_id, action.batch
        if batch not in self.run.engines[eid].batches:
            return  # given back meanwhile (the engine's batch before it was refused)
        engine = self.info[eid]
        spec = self.engine_nodes.spec_for(
            engine, self.wire_spec, len(self.run.usable), self.machine
        )
        try:
            future = tasks.send_batch(self.client, eid, spec, to_wire(batch))
        except IndexError:  # unregistered (lost) since drop_lost_idle looked
            self.apply(self.run.dispatch_refused(eid, now, batch), now)
            return
        self.futures[future] = eid
        self.batches[future] = batch
        self.progress.engine_time.sent(eid)
        for nodeid in batch.nodeids:
            self.config.hook.pytest_gold_case_scheduled(
                config=self.config, nodeid=nodeid, engine=engine
            )

    def fail_case(self, action: FailCase) -> None:
        engine = NO_ENGINE if action.engine_id is None else self.info[action.engine_id]
        events = failed_case_events(action.nodeid, None, {}, action.when, action.message)
        result = BatchResult(engine=engine, events=events)
        if action.nodeid in self.run.held:  # its turn comes (pytest's order)
            self.held_results[action.nodeid] = result
            self.made_up.add(action.nodeid)
            return
        self.replay(result, measured=False)
