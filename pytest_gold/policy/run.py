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
  out or not yet checked, or to an engine that already holds ``BATCHES_IN_FLIGHT``
  batches (an engine gets its next batch while it runs one, so that it never waits for
  the controller between the two; not in runs that stop on failures, which send one
  case at a time);
- a case is sent again only when its engine was lost, and at most ``retries`` times
  (a case whose engine's Slurm job ended is sent again without counting);
- no batch goes to an engine whose job ends before the batch can finish (its cases'
  expected durations plus the margin, see :mod:`pytest_gold.policy.runwalltime`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest_gold.policy.runbatches as runbatches
import pytest_gold.policy.runfaults as runfaults
import pytest_gold.policy.runjoin as runjoin
import pytest_gold.policy.runorder as runorder
import pytest_gold.policy.runtick as runtick
import pytest_gold.policy.runwalltime as runwalltime
from pytest_gold.policy.runchecks import check_invariants, describe_state
from pytest_gold.policy.runtypes import (
    BATCHES_IN_FLIGHT,
    EVERY_ENGINE_LOST,
    NO_ENGINE_HAS_TIME,
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
    EngineReleased,
    EngineState,
    FailCase,
    GiveUpWaiting,
    Interrupt,
    Phase,
    StopKind,
    summary_of,
)
from pytest_gold.policy.scheduling import DispatchQueue, InOrderRelease
from pytest_gold.policy.walltime import Margin
from pytest_gold.protocol.messages import Batch

__all__ = [
    "BATCHES_IN_FLIGHT",
    "EVERY_ENGINE_LOST",
    "NO_ENGINE_HAS_TIME",
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
    "EngineReleased",
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
    #: What a case needs beyond its expected duration before its engine's Slurm job ends
    #: (--gold-walltime-margin; see pytest_gold.policy.runwalltime).
    margin: Margin = field(default_factory=Margin)
    #: Batches an engine holds at most (1: the next is sent when the last is back).
    batches_in_flight: int = BATCHES_IN_FLIGHT

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
    #: Engines are on their way (Slurm jobs of the run queued or starting): a run whose
    #: engines all left waits for them rather than stopping (see policy/jobplan.py).
    engines_coming: bool = False
    #: Cases sent elsewhere because their engine's Slurm job ended.
    cases_moved: int = 0
    #: Batches that came back, not yet replayed: their engines got their next batch
    #: first (see :meth:`batch_returned`).
    returned: dict[int, Batch] = field(default_factory=dict)

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
        """The batch each busy engine runs now."""
        return {
            eid: record.batches[0]
            for eid, record in self.engines.items()
            if record.state is EngineState.BUSY and record.batches
        }

    @property
    def in_flight(self) -> dict[int, list[Batch]]:
        """Every batch sent and not back, by engine (the one it runs first)."""
        return {
            eid: list(record.batches)
            for eid, record in self.engines.items()
            if record.state is EngineState.BUSY and record.batches
        }

    @property
    def queued_on_engines(self) -> list[Batch]:
        """Batches waiting on their engines behind the one it runs."""
        return [batch for batches in self.in_flight.values() for batch in batches[1:]]

    @property
    def running(self) -> list[str]:
        """Cases sent to engines and not back (running, or queued there)."""
        return [n for batches in self.in_flight.values() for b in batches for n in b.nodeids]

    @property
    def stopped(self) -> bool:
        return self.stop_kind is not None

    @property
    def over(self) -> bool:
        """Nothing is in flight and nothing more will be dispatched."""
        return self.phase is Phase.DONE

    def engines_to_finish(self) -> list[int]:
        """Engines whose workers get the end-of-run teardown: every engine that ran a
        batch and is still there and answering (released ones too: their job is still
        running, and a session's teardown is short)."""
        return sorted(
            eid
            for eid, record in self.engines.items()
            if record.used and record.state in (EngineState.IDLE, EngineState.RELEASED)
        )

    # -- events ------------------------------------------------------------------------

    def engine_registered(self, engine_id: int, now: float) -> list[Action]:
        """A new engine id appeared in the cluster: check it first."""
        return runjoin.engine_registered(self, engine_id, now)

    def engine_check_queued(self, engine_id: int, now: float) -> None:
        """The engine's check waits behind another run's task there: not overdue, its
        turn comes (the wait for its answer starts again)."""
        return runjoin.engine_check_queued(self, engine_id, now)

    def engine_checked(self, engine_id: int, problems: Sequence[str], now: float) -> list[Action]:
        """The engine check's answer: no problems, and the engine joins the run."""
        return runjoin.engine_checked(self, engine_id, problems, now)

    def start_if_ready(self, now: float) -> None:
        """Leave the first wait once ``min_engines`` passed the check and the other first
        checks answered (or the settle time is over: they join later)."""
        return runjoin.start_if_ready(self, now)

    def batch_returned(
        self, engine_id: int, now: float, batch: Batch | None = None
    ) -> list[Action]:
        """A batch came back; its engine gets its next batch now, while the controller
        replays this one's reports (:meth:`batch_done` follows, also when the replay was
        cut short). Not in runs that stop on failures, nor once stopping: there what the
        replay finds decides whether anything more runs. ``batch``: which of the engine's
        batches (default: the one it ran first)."""
        if self.in_order is not None or self.phase is not Phase.RUNNING:
            return []
        taken = self.take_back_batch(engine_id, batch)
        if taken is None:
            return []
        self.returned[engine_id] = taken
        return runbatches.dispatch(self, now)

    def batch_done(
        self, engine_id: int, summary: BatchSummary, now: float, batch: Batch | None = None
    ) -> list[Action]:
        """A batch came back and its reports were replayed (``batch``: as for
        :meth:`batch_returned`)."""
        taken = self.returned.pop(engine_id, None) or self.take_back_batch(engine_id, batch)
        if taken is None:
            return []
        return runbatches.ended_by(self, engine_id, taken.nodeids, summary, now)

    def result_held(self, engine_id: int, nodeid: str, failures: int, stops: bool) -> None:
        """In-order runs: the one case of the engine's batch finished; its result waits
        until every case before it in pytest's order was replayed (see
        :meth:`release_next`). ``failures``: failed reports in it; ``stops``: it called
        pytest.exit()."""
        return runorder.result_held(self, engine_id, nodeid, failures, stops)

    def release_next(self) -> tuple[str, int] | None:
        """The next held result to replay now (node id, engine), if any; the driver
        replays it and reports with :meth:`case_released`."""
        return runorder.release_next(self)

    def case_released(
        self, nodeid: str, engine_id: int, summary: BatchSummary, now: float
    ) -> list[Action]:
        """A held result was replayed."""
        return runbatches.ended_by(self, engine_id, [nodeid], summary, now)

    def hold_rest(self) -> None:
        """pytest stops the run (a released result was its last failure): no more held
        result is released; what finished after that point is left out."""
        return runorder.hold_rest(self)

    def take_back_batch(self, engine_id: int, batch: Batch | None = None) -> Batch | None:
        """One of the engine's batches came back (``batch``; default: the one it ran
        first; results of one engine may be taken in out of order): the engine is idle
        again once it has none."""
        return runbatches.take_back(self, engine_id, batch)

    def batch_errored(
        self, engine_id: int, message: str, batch: Batch | None = None
    ) -> list[Action]:
        """A task raised although its engine lives (a supervisor bug): its cases fail and
        the engine stays in the run."""
        return runfaults.batch_errored(self, engine_id, message, batch)

    def engine_lost(self, engine_id: int, message: str, now: float) -> list[Action]:
        """An engine died. Its batch's cases go to other engines up to ``retries`` times
        (never after a stop); the others fail with ``message``."""
        return runfaults.engine_lost(self, engine_id, message, now)

    def job_ends_at(self, engine_id: int, at: float | None) -> None:
        """The engine check said when the engine's Slurm job ends (``at``, in the Run's
        clock; ``None``: no time limit). Call before :meth:`engine_checked`."""
        return runwalltime.job_ends_at(self, engine_id, at)

    def job_ended(self, engine_id: int, now: float) -> list[Action]:
        """The engine is gone because its Slurm job ended (time limit, scancel): its
        cases go to other engines, not counted against ``retries``."""
        return runwalltime.job_ended(self, engine_id, now)

    def dispatch_refused(
        self, engine_id: int, now: float, batch: Batch | None = None
    ) -> list[Action]:
        """ipyparallel refused ``batch`` of a :class:`Dispatch` (the engine unregistered
        meanwhile): its cases go back to the queue, never having run, and the engine is
        lost."""
        return runfaults.dispatch_refused(self, engine_id, now, batch)

    def stop_if_no_engines(self, now: float) -> list[Action]:
        """Once running, a run with cases left and no engine that could take them (none
        usable, none being checked) stops."""
        return runfaults.stop_if_no_engines(self, now)

    def set_engines_coming(self, coming: bool, now: float) -> list[Action]:
        """Engines are (still) on their way, or no longer: then a run with none left
        stops."""
        return runfaults.set_engines_coming(self, coming, now)

    def stop_requested(self, kind: StopKind, reason: str, now: float) -> list[Action]:
        """Stop: nothing new starts; every case not yet dispatched is not run; running
        batches are interrupted and get a grace period (from ``now``) to report."""
        return runfaults.stop_requested(self, kind, reason, now)

    def controller_lost(self, message: str) -> list[Action]:
        """The hub stopped answering: every case not finished fails with ``message``;
        nothing waits on the dead controller again."""
        return runfaults.controller_lost(self, message)

    def tick(self, now: float, failures_reported: int | None = None) -> list[Action]:
        """Time passed: dispatch to idle engines, give up on overdue checks, the first
        wait, and batches that did not answer after a stop. ``failures_reported``: the
        failures pytest counted so far (what --maxfail has left)."""
        return runtick.tick(self, now, failures_reported)

    # -- internals ---------------------------------------------------------------------

    def failure_budget(self) -> float:
        """Failed reports still to come before pytest stops the run."""
        return runorder.failure_budget(self)

    def may_dispatch(self, nodeid: str | None) -> bool:
        """Nothing is sent that a plain run would not reach: no case after a failure (or
        ``pytest.exit()``) held back that is known to stop the run."""
        return runorder.may_dispatch(self, nodeid)

    def leave_out_held(self) -> None:
        """At the end: results still held back were never released (the run stopped
        before them, or a case before them never finished): left out."""
        return runorder.leave_out_held(self)

    def grace(self) -> float:
        if self.stop_kind is StopKind.INTERRUPT:
            return self.interrupt_grace_seconds
        return self.stop_grace_seconds

    def fail_case(self, nodeid: str, engine_id: int, message: str) -> FailCase:
        """The case fails on the controller's behalf. In in-order runs its failure waits
        its turn like any result (``nodeid in held``: the driver holds the report too)."""
        return runbatches.fail_case(self, nodeid, engine_id, message)

    def end_case(self, nodeid: str, how: str) -> None:
        return runbatches.end_case(self, nodeid, how)

    def settle(self) -> None:
        """Move to DONE once nothing is in flight and nothing more will be dispatched."""
        return runtick.settle(self)

    # -- for tests ---------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise AssertionError if the run's bookkeeping is inconsistent."""
        check_invariants(self)
