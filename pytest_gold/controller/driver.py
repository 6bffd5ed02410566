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
import time
from typing import Any

import pytest

import pytest_gold.controller.engineloss as engineloss
import pytest_gold.controller.taskresults as taskresults
import pytest_gold.controller.tasks as tasks
from pytest_gold.controller.enginepool import (
    CHECK_POLL_SECONDS,
    EngineChecks,
    FailedCheck,
    expected_of,
)
from pytest_gold.controller.faults import (
    controller_lost_cause,
    signal_engines,
)
from pytest_gold.controller.jobcare import JobCare
from pytest_gold.controller.jobends import JobEnds, in_run_clock
from pytest_gold.controller.liveness import HubMonitor
from pytest_gold.controller.progress import Progress
from pytest_gold.controller.reporting import Replayer
from pytest_gold.controller.taskoutput import OutputRelay, TaskMemory
from pytest_gold.controller.terminal import Terminal
from pytest_gold.controller.ticker import StatusTicker
from pytest_gold.policy.run import (
    Abandoned,
    Action,
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
    BatchResult,
    EngineInfo,
    ExitRequested,
    to_wire,
)
from pytest_gold.protocol.timing import CONTROLLER_POLL_SECONDS as POLL_SECONDS
from pytest_gold.protocol.xdistcompat import EngineNodes


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
        #: Tasks in flight (batches), in the order sent: the engine and batch of each.
        self.sent: dict[Any, taskresults.SentBatch] = {}
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
            list(self.sent), timeout=POLL_SECONDS, return_when=concurrent.futures.FIRST_COMPLETED
        )
        self.output.take((future.metadata, sent.engine_id) for future, sent in self.sent.items())
        # In the order sent: an engine's batches are taken in in the order it ran them.
        for future in [future for future in self.sent if future in done]:
            if future in self.sent:  # (not given up meanwhile)
                taskresults.collect(self, future)

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
        self.sent.clear()
        self.apply(self.run.controller_lost(cause), time.monotonic())
        self.terminal.write_line(f"gold: {cause.removeprefix('pytest-gold: ')}", problem=True)

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
                taskresults.fail_case(self, action)
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
            taskresults.release(self, now)  # e.g. a failure made up here whose turn it is

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
        self.sent[future] = taskresults.SentBatch(eid, batch)
        self.progress.engine_time.sent(eid)
        for nodeid in batch.nodeids:
            self.config.hook.pytest_gold_case_scheduled(
                config=self.config, nodeid=nodeid, engine=engine
            )
