"""One run on the controller as a pure state machine: events in, actions out.

:class:`Run` knows the engines (and what state each is in), the cases not yet dispatched,
the batches in flight, and the run's phase. It does no I/O, has no clock of its own (every
event that depends on time carries ``now``) and never talks to ipyparallel or pytest: the
controller's driver polls the cluster, feeds what happened to the ``Run`` and carries out
the actions it returns. That makes every rule of a run — who gets which batch, what a lost
engine costs, what a stop does — testable without processes (tests/test_run_machine.py
checks them over random interleavings of joins, losses, results, stops and time).

Invariants (checked by :meth:`Run.check_invariants`):

- every selected case ends exactly once: finished (its reports came back), failed on
  the controller's behalf (:class:`FailCase`), named as not run, or — in a run that stops
  on failures — left out (it finished after the point where a plain run stops);
- nothing is dispatched after a stop, or to an engine that is lost, unresponsive, left
  out or not yet checked, or to an engine that is still busy;
- a case is sent again only when its engine was lost, and at most ``retries`` times.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from pytest_gold.policy.runchecks import check_invariants, describe_state
from pytest_gold.policy.runtypes import (
    EVERY_ENGINE_LOST,
    USABLE_STATES,
    Abandoned,
    Action,
    BatchSummary,
    CheckEngine,
    Dispatch,
    EngineJoinedRun,
    EngineLeftOut,
    EngineLostNotice,
    EngineRecord,
    EngineState,
    FailCase,
    GiveUpWaiting,
    Interrupt,
    Phase,
    StopKind,
    summary_of,
)
from pytest_gold.policy.scheduling import DispatchQueue, InOrderRelease
from pytest_gold.protocol.messages import Batch

__all__ = [
    "EVERY_ENGINE_LOST",
    "USABLE_STATES",
    "Abandoned",
    "Action",
    "BatchSummary",
    "CheckEngine",
    "Dispatch",
    "EngineJoinedRun",
    "EngineLeftOut",
    "EngineLostNotice",
    "EngineRecord",
    "EngineState",
    "FailCase",
    "GiveUpWaiting",
    "Interrupt",
    "Phase",
    "Run",
    "StopKind",
    "describe_state",
    "summary_of",
]


@dataclass
class Run:
    """The state of one run; see the module docstring."""

    queue: DispatchQueue
    #: Engines that must pass the check before the first dispatch.
    min_engines: int = 1
    #: How often a case lost with its engine is sent again.
    retries: int = 1
    #: How long a check, or the whole first wait, may take (--gold-wait).
    wait_seconds: float = 60.0
    #: After a stop, how long batches in flight get to report before they are given up.
    stop_grace_seconds: float = 15.0
    #: After Ctrl-C, the same (shorter: the user is waiting).
    interrupt_grace_seconds: float = 10.0
    #: Run-time limit of each case that has one.
    time_limits: Mapping[str, float] = field(default_factory=dict)
    #: When the run began waiting for engines.
    started_at: float = 0.0
    #: Once enough engines passed the first check, how long the run waits for the other
    #: first checks' answers before it starts (counted from the first check sent).
    settle_seconds: float = 0.0
    #: Runs that stop on failures (-x, --maxfail, --sw): results are replayed in
    #: pytest's order (see pytest_gold.controller.verdicts), one case per batch.
    in_order: InOrderRelease[str] | None = None
    #: --maxfail (0: none) and how many failures stepwise allows (0: not stepwise).
    maxfail: int = 0
    stepwise_allowed: int = 0

    phase: Phase = Phase.WAITING
    engines: dict[int, EngineRecord] = field(default_factory=dict)
    #: Engine ids in the order they became idle (the next batch goes to the first).
    idle_order: list[int] = field(default_factory=list)
    stop_kind: StopKind | None = None
    stop_reason: str | None = None
    stop_deadline: float = math.inf
    #: The case that called pytest.exit() (the first one, if several did).
    exit_nodeid: str | None = None
    #: How often each case was lost with its engine.
    losses: dict[str, int] = field(default_factory=dict)
    #: Cases named as not run, in the order they were given up; and those cut short.
    not_run: list[str] = field(default_factory=list)
    cut_short: list[tuple[str, int]] = field(default_factory=list)
    #: Every case and how it ended ("finished", "failed", "not run").
    ended: dict[str, str] = field(default_factory=dict)
    #: Every case selected for the run.
    selected: frozenset[str] = frozenset()
    #: Too few engines within the first wait: the run fails before anything ran.
    gave_up: bool = False
    #: Failures pytest counted so far (``session.testsfailed``, fed with ticks).
    failures_reported: int = 0
    #: When the first engine check was sent (the settle time counts from there).
    first_check_at: float | None = None
    #: In-order runs: cases whose results came back and wait for earlier ones.
    held: dict[str, int] = field(default_factory=dict)
    #: Cases that finished after the point where the run stopped, in pytest's order.
    left_out: list[str] = field(default_factory=list)
    #: How many engine losses sent cases elsewhere / failed them (for the recap).
    cases_resent: int = 0
    cases_failed_lost: int = 0

    def __post_init__(self) -> None:
        self.selected = frozenset(self.queue.remaining())

    # -- queries -----------------------------------------------------------------------

    def engines_in(self, *states: EngineState) -> list[int]:
        return [eid for eid, record in self.engines.items() if record.state in states]

    @property
    def usable(self) -> list[int]:
        return self.engines_in(*USABLE_STATES)

    @property
    def busy(self) -> dict[int, Batch]:
        return {
            eid: record.batch
            for eid, record in self.engines.items()
            if record.state is EngineState.BUSY and record.batch is not None
        }

    @property
    def running(self) -> list[str]:
        return [nodeid for batch in self.busy.values() for nodeid in batch.nodeids]

    @property
    def stopped(self) -> bool:
        return self.stop_kind is not None

    @property
    def over(self) -> bool:
        """Nothing is in flight and nothing more will be dispatched."""
        return self.phase is Phase.DONE

    def engines_to_finish(self) -> list[int]:
        """Engines whose workers get the end-of-run teardown: every engine that ran a
        batch and is still there and answering."""
        return sorted(
            eid
            for eid, record in self.engines.items()
            if record.used and record.state is EngineState.IDLE
        )

    # -- events ------------------------------------------------------------------------

    def engine_registered(self, engine_id: int, now: float) -> list[Action]:
        """A new engine id appeared in the cluster: check it first."""
        if engine_id in self.engines or self.phase is Phase.DONE:
            return []
        self.engines[engine_id] = EngineRecord(state=EngineState.CHECKING, checked_at=now)
        if self.first_check_at is None:
            self.first_check_at = now
        return [CheckEngine(engine_id)]

    def engine_check_queued(self, engine_id: int, now: float) -> None:
        """The engine's check waits behind another run's task there: not overdue, its
        turn comes (the wait for its answer starts again)."""
        record = self.engines.get(engine_id)
        if record is not None and record.state is EngineState.CHECKING:
            record.checked_at = now

    def engine_checked(self, engine_id: int, problems: Sequence[str], now: float) -> list[Action]:
        """The engine check's answer: no problems, and the engine joins the run."""
        record = self.engines.get(engine_id)
        if record is None or record.state is not EngineState.CHECKING:
            return []
        if problems:
            record.state, record.problems = EngineState.LEFT_OUT, tuple(problems)
            return [EngineLeftOut(engine_id, record.problems), *self._stop_if_no_engines(now)]
        record.state = EngineState.IDLE
        self.idle_order.append(engine_id)
        self._maybe_start(now)
        return [EngineJoinedRun(engine_id)]

    def _maybe_start(self, now: float) -> None:
        """Leave the first wait once ``min_engines`` passed the check and the other first
        checks answered (or the settle time is over: they join later)."""
        if self.phase is not Phase.WAITING or len(self.usable) < self.min_engines:
            return
        settled = (self.first_check_at or now) + self.settle_seconds
        if not self.engines_in(EngineState.CHECKING) or now >= settled:
            self.phase = Phase.RUNNING

    def batch_done(self, engine_id: int, summary: BatchSummary, now: float) -> list[Action]:
        """A batch came back and its reports were replayed."""
        batch = self._returned(engine_id)
        if batch is None:
            return []
        return self._ended_by(engine_id, batch.nodeids, summary, now)

    def result_held(self, engine_id: int, nodeid: str, failures: int, stops: bool) -> None:
        """In-order runs: the one case of the engine's batch finished; its result waits
        until every case before it in pytest's order was replayed (see
        :meth:`release_next`). ``failures``: failed reports in it; ``stops``: it called
        pytest.exit()."""
        assert self.in_order is not None
        batch = self._returned(engine_id)
        if batch is None:
            return
        self.in_order.add(nodeid, nodeid, failures=failures, stops=stops)
        self.held[nodeid] = engine_id

    def release_next(self) -> tuple[str, int] | None:
        """The next held result to replay now (node id, engine), if any; the driver
        replays it and reports with :meth:`case_released`."""
        if self.in_order is None:
            return None
        nodeid = self.in_order.pop_ready()
        if nodeid is None:
            return None
        return nodeid, self.held.pop(nodeid)

    def case_released(
        self, nodeid: str, engine_id: int, summary: BatchSummary, now: float
    ) -> list[Action]:
        """A held result was replayed."""
        return self._ended_by(engine_id, [nodeid], summary, now)

    def hold_rest(self) -> None:
        """pytest stops the run (a released result was its last failure): no more held
        result is released; what finished after that point is left out."""
        if self.in_order is not None:
            self.in_order.close()

    def _returned(self, engine_id: int) -> Batch | None:
        """The engine's batch came back: the engine is idle again."""
        record = self.engines.get(engine_id)
        if record is None or record.batch is None:
            return None
        batch, record.batch = record.batch, None
        if record.state is EngineState.BUSY:
            record.state = EngineState.IDLE
            self.idle_order.append(engine_id)
        return batch

    def _ended_by(
        self, engine_id: int, nodeids: Sequence[str], summary: BatchSummary, now: float
    ) -> list[Action]:
        actions: list[Action] = []
        if summary.measured:
            self.queue.record(summary.finished.values())
        not_run = set(summary.not_run)
        for nodeid in nodeids:
            # The case that called pytest.exit() has no end of its own (a plain run's
            # reports do not close it either): what it reported stands.
            if nodeid in summary.finished or nodeid == summary.exit_nodeid:
                self._end(nodeid, "finished")
            elif nodeid in not_run:
                self._end(nodeid, "not run")
                self.not_run.append(nodeid)
            else:
                # The engine's supervisor guarantees one or the other; a case it forgot
                # must still end, as a failure that says so.
                self._end(nodeid, "failed")
                actions.append(
                    FailCase(
                        nodeid,
                        engine_id,
                        "pytest-gold: the engine returned its batch without a result for "
                        "this case (this is a bug in pytest-gold, please report it)",
                    )
                )
        self.cut_short.extend((nodeid, engine_id) for nodeid in summary.cut_short)
        if summary.exit_nodeid is not None and self.exit_nodeid is None:
            self.exit_nodeid = summary.exit_nodeid
            actions += self.stop_requested(
                StopKind.EXIT, f"pytest.exit() in {summary.exit_nodeid}", now
            )
        self._settle()
        return actions

    def batch_errored(self, engine_id: int, message: str) -> list[Action]:
        """A task raised although its engine lives (a supervisor bug): its cases fail and
        the engine stays in the run."""
        batch = self._returned(engine_id)
        if batch is None:
            return []
        actions: list[Action] = []
        for nodeid in batch.nodeids:
            actions.append(self._fail(nodeid, engine_id, message))
        self._settle()
        return actions

    def engine_lost(self, engine_id: int, message: str, now: float) -> list[Action]:
        """An engine died. Its batch's cases go to other engines up to ``retries`` times
        (never after a stop); the others fail with ``message``."""
        record = self.engines.get(engine_id)
        if record is None or record.state in (EngineState.LOST, EngineState.LEFT_OUT):
            return []
        batch, record.batch = record.batch, None
        record.state = EngineState.LOST
        if engine_id in self.idle_order:
            self.idle_order.remove(engine_id)
        actions: list[Action] = []
        retry: list[str] = []
        nodeids = batch.nodeids if batch is not None else []
        if nodeids:
            for nodeid in nodeids:
                self.losses[nodeid] = self.losses.get(nodeid, 0) + 1
                if self.losses[nodeid] <= self.retries and not self.stopped:
                    retry.append(nodeid)
                else:
                    failure = f"{message} ({self.losses[nodeid]} time(s))"
                    actions.append(self._fail(nodeid, engine_id, failure))
            self.queue.requeue(retry)
            self.cases_resent += len(retry)
            self.cases_failed_lost += len(nodeids) - len(retry)
        actions.append(EngineLostNotice(engine_id, len(nodeids), len(retry), tuple(nodeids)))
        actions += self._stop_if_no_engines(now)
        self._settle()
        return actions

    def dispatch_refused(self, engine_id: int, now: float) -> list[Action]:
        """ipyparallel refused the batch of a :class:`Dispatch` (the engine unregistered
        meanwhile): its cases go back to the queue, never having run, and the engine is
        lost while idle."""
        record = self.engines.get(engine_id)
        if record is None or record.batch is None:
            return []
        batch, record.batch = record.batch, None
        record.state = EngineState.IDLE
        self.queue.requeue(list(batch.nodeids))
        return self.engine_lost(engine_id, "", now)

    def _stop_if_no_engines(self, now: float) -> list[Action]:
        """Once running, a run with cases left and no engine that could take them (none
        usable, none being checked) stops."""
        if (
            self.phase is Phase.RUNNING
            and self.queue
            and not self.engines_in(EngineState.IDLE, EngineState.BUSY, EngineState.CHECKING)
        ):
            return self.stop_requested(StopKind.NO_ENGINES, EVERY_ENGINE_LOST, now)
        return []

    def stop_requested(self, kind: StopKind, reason: str, now: float) -> list[Action]:
        """Stop: nothing new starts; every case not yet dispatched is not run; running
        batches are interrupted and get a grace period (from ``now``) to report."""
        if self.phase is Phase.DONE:
            return []
        if self.stopped:
            if kind is StopKind.INTERRUPT and self.stop_kind is not StopKind.INTERRUPT:
                # Ctrl-C while stopping: say so, and wait no longer than Ctrl-C allows.
                self.stop_kind, self.stop_reason = kind, reason
                self.stop_deadline = min(self.stop_deadline, now + self._grace())
            return []
        self.stop_kind, self.stop_reason = kind, reason
        self.phase = Phase.STOPPING
        if kind is not StopKind.INTERRUPT:
            # A plain run stops before the held-back results (Ctrl-C: what finished
            # before it is still reported, in pytest's order).
            self.hold_rest()
        for nodeid in self.queue.drain():
            self._end(nodeid, "not run")
            self.not_run.append(nodeid)
        self.stop_deadline = now + self._grace()
        busy = tuple(sorted(self.busy))
        self._settle()
        return [Interrupt(busy)] if busy and kind is not StopKind.NO_ENGINES else []

    def controller_lost(self, message: str) -> list[Action]:
        """The hub stopped answering: every case not finished fails with ``message``;
        nothing waits on the dead controller again."""
        actions: list[Action] = []
        for eid, batch in sorted(self.busy.items()):
            for nodeid in batch.nodeids:
                self._end(nodeid, "failed")
                actions.append(FailCase(nodeid, eid, message, when="setup"))
            record = self.engines[eid]
            record.batch, record.state = None, EngineState.UNRESPONSIVE
        for nodeid in self.queue.drain():
            self._end(nodeid, "failed")
            actions.append(FailCase(nodeid, None, message, when="setup"))
        self.stop_kind, self.stop_reason = StopKind.CONTROLLER_LOST, "the controller was lost"
        self.phase = Phase.DONE
        self._leave_out_held()
        return actions

    def tick(self, now: float, failures_reported: int | None = None) -> list[Action]:
        """Time passed: dispatch to idle engines, give up on overdue checks, the first
        wait, and batches that did not answer after a stop. ``failures_reported``: the
        failures pytest counted so far (what --maxfail has left)."""
        if self.phase is Phase.DONE:
            return []
        if failures_reported is not None:
            self.failures_reported = failures_reported
        actions: list[Action] = []
        self._maybe_start(now)
        for eid in self.engines_in(EngineState.CHECKING):
            if now - self.engines[eid].checked_at > self.wait_seconds:
                actions += self.engine_checked(
                    eid, [f"no answer to the engine check within {self.wait_seconds:g} s"], now
                )
        if self.phase is Phase.WAITING:
            if now - self.started_at > self.wait_seconds:
                self.phase, self.gave_up = Phase.DONE, True
                actions.append(GiveUpWaiting(len(self.usable), self.min_engines))
            return actions
        if self.phase is Phase.STOPPING and self.busy and now > self.stop_deadline:
            actions += self._abandon_unanswered()
        actions += self._dispatch()
        self._settle()
        return actions

    # -- internals ---------------------------------------------------------------------

    def _dispatch(self) -> list[Action]:
        actions: list[Action] = []
        while self.phase is Phase.RUNNING and self.idle_order and self.queue:
            # Nothing a plain run never reaches; with nothing in flight that could still
            # release the results held back, never wait forever.
            if self.busy and not self.may_dispatch(self.queue.head):
                break
            eid = self.idle_order.pop(0)
            record = self.engines[eid]
            if record.state is not EngineState.IDLE:
                continue
            batch = self.queue.next_batch()
            assert batch is not None
            limits = {n: self.time_limits[n] for n in batch.nodeids if n in self.time_limits}
            batch = replace(batch, time_limits=limits)
            record.state, record.batch, record.used = EngineState.BUSY, batch, True
            actions.append(Dispatch(eid, batch))
        return actions

    def failure_budget(self) -> float:
        """Failed reports still to come before pytest stops the run."""
        budget = math.inf
        if self.maxfail:
            budget = self.maxfail - self.failures_reported
        if self.stepwise_allowed and self.in_order is not None:
            budget = min(budget, self.stepwise_allowed - self.in_order.released_failures)
        return budget

    def may_dispatch(self, nodeid: str | None) -> bool:
        """Nothing is sent that a plain run would not reach: no case after a failure (or
        ``pytest.exit()``) held back that is known to stop the run."""
        if self.in_order is None or nodeid is None:
            return True
        return self.in_order.may_dispatch(nodeid, self.failure_budget())

    def _leave_out_held(self) -> None:
        """At the end: results still held back were never released (the run stopped
        before them, or a case before them never finished): left out."""
        if self.in_order is None:
            return
        for nodeid in self.in_order.left_over():
            if nodeid not in self.ended:
                self._end(nodeid, "left out")
                self.left_out.append(nodeid)
        self.held.clear()

    def _abandon_unanswered(self) -> list[Action]:
        abandoned = []
        for eid, batch in sorted(self.busy.items()):
            for nodeid in batch.nodeids:
                self._end(nodeid, "not run")
                self.not_run.append(nodeid)
                self.cut_short.append((nodeid, eid))
            record = self.engines[eid]
            record.batch, record.state = None, EngineState.UNRESPONSIVE
            abandoned.append(eid)
        return [Abandoned(tuple(abandoned), self._grace())]

    def _grace(self) -> float:
        if self.stop_kind is StopKind.INTERRUPT:
            return self.interrupt_grace_seconds
        return self.stop_grace_seconds

    def _fail(self, nodeid: str, engine_id: int, message: str) -> FailCase:
        """The case fails on the controller's behalf. In in-order runs its failure waits
        its turn like any result (``nodeid in held``: the driver holds the report too)."""
        if self.in_order is None:
            self._end(nodeid, "failed")
        else:
            self.in_order.add(nodeid, nodeid, failures=1)
            self.held[nodeid] = engine_id
        return FailCase(nodeid, engine_id, message)

    def _end(self, nodeid: str, how: str) -> None:
        if nodeid in self.ended:
            raise AssertionError(f"{nodeid} ended twice ({self.ended[nodeid]}, then {how})")
        self.ended[nodeid] = how

    def _settle(self) -> None:
        """Move to DONE once nothing is in flight and nothing more will be dispatched."""
        if self.phase is Phase.DONE or self.busy:
            return
        if self.in_order is not None and self.in_order.has_ready():
            return  # the driver replays it first (it may stop the run)
        if self.phase is Phase.STOPPING or (self.phase is Phase.RUNNING and not self.queue):
            self.phase = Phase.DONE
            self._leave_out_held()

    # -- for tests ---------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise AssertionError if the run's bookkeeping is inconsistent."""
        check_invariants(self)
