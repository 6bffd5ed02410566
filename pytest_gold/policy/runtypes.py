"""The vocabulary of :mod:`pytest_gold.policy.run`: engine states, run phases, stop kinds,
the actions a :class:`~pytest_gold.policy.run.Run` returns and the data its events carry.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pytest_gold.protocol.messages import Batch


class EngineState(enum.Enum):
    #: Registered; its engine check was sent and has not been answered.
    CHECKING = "checking"
    #: Checked and waiting for work.
    IDLE = "idle"
    #: Running a batch.
    BUSY = "busy"
    #: Failed the engine check: never used by this run.
    LEFT_OUT = "left out"
    #: Died (its task failed with an engine error).
    LOST = "lost"
    #: Did not answer within the grace period after a stop: nothing more is sent to it.
    UNRESPONSIVE = "unresponsive"
    #: Its Slurm job has too little time left for any case left (see
    #: :mod:`pytest_gold.policy.runwalltime`): nothing more is sent to it.
    RELEASED = "released"


#: States in which an engine is part of the run and may get work (now or later).
USABLE_STATES = frozenset({EngineState.IDLE, EngineState.BUSY})

#: Batches an engine holds at most: the one it runs and, above 1, the next ones, queued
#: behind it on the engine (ipyparallel runs an engine's tasks one after another), so
#: that it does not wait for the round trip and the controller's replay between two.
#: 1 for now: with 2, a case queued behind one that runs far longer than expected (a
#: hang) waits there while other engines go idle, which end-to-end tests caught
#: (tests/test_campaign.py resume after interruption); the Run supports more (tests).
BATCHES_IN_FLIGHT = 1


class Phase(enum.Enum):
    #: Before the first dispatch: until ``min_engines`` engines passed the check.
    WAITING = "waiting"
    RUNNING = "running"
    #: A stop was requested (-x, --maxfail, pytest.exit(), Ctrl-C, every engine lost):
    #: nothing new is dispatched; batches in flight may still report.
    STOPPING = "stopping"
    #: Nothing is in flight and nothing will be dispatched.
    DONE = "done"


class StopKind(enum.Enum):
    #: -x / --maxfail / a plugin's session.shouldstop: running cases are interrupted.
    FAILURES = "failures"
    #: A case called pytest.exit().
    EXIT = "exit"
    #: Ctrl-C or SIGTERM on the controller.
    INTERRUPT = "interrupt"
    #: The last engine was lost with cases left to run.
    NO_ENGINES = "no engines"
    #: The ipyparallel controller (hub) stopped answering.
    CONTROLLER_LOST = "controller lost"


#: Why a run stopped when no engine was left.
EVERY_ENGINE_LOST = "every engine was lost"
#: Why a run stopped whose engines were released (their Slurm jobs end too soon for
#: every case left) and none is coming.
NO_ENGINE_HAS_TIME = (
    "no engine left has time for the cases left (engines whose Slurm job ends too soon "
    "were released; see --gold-walltime-margin)"
)


# -- actions (what the driver carries out) -----------------------------------------------


@dataclass(frozen=True)
class CheckEngine:
    """Send the engine check to a newly registered engine."""

    engine_id: int


@dataclass(frozen=True)
class Dispatch:
    """Send ``batch`` to an engine (one ipyparallel task)."""

    engine_id: int
    batch: Batch


@dataclass(frozen=True)
class Interrupt:
    """Ask these engines to interrupt the batches they run (a stop)."""

    engine_ids: tuple[int, ...]


@dataclass(frozen=True)
class FailCase:
    """Report a case as failed on the controller's behalf: it cannot report itself."""

    nodeid: str
    #: Where it ran (``None``: it never reached an engine).
    engine_id: int | None
    message: str
    #: The phase the failure is reported in ("setup" for cases that never started).
    when: str = "call"


@dataclass(frozen=True)
class EngineLeftOut:
    """An engine failed its check (after the first wait, say so at once)."""

    engine_id: int
    problems: tuple[str, ...]


@dataclass(frozen=True)
class EngineJoinedRun:
    """An engine passed its check and takes part from now on."""

    engine_id: int


@dataclass(frozen=True)
class EngineLostNotice:
    """An engine died while running ``cases`` cases (0: while it was idle); ``resent`` of
    them go elsewhere."""

    engine_id: int
    cases: int
    resent: int
    #: The cases it was running.
    nodeids: tuple[str, ...] = ()
    #: The engine's Slurm job ended (time limit, scancel): its cases were sent elsewhere
    #: without counting against ``retries`` (``resent`` of them; the others were not run,
    #: the run stopping).
    job_ended: bool = False


@dataclass(frozen=True)
class EngineReleased:
    """An engine's Slurm job has ``seconds_left`` seconds left, too few for any case left
    (the shortest needs ``shortest_needs`` with the margin): it gets nothing more."""

    engine_id: int
    seconds_left: float
    shortest_needs: float


@dataclass(frozen=True)
class Abandoned:
    """Engines that did not answer within the grace period after a stop."""

    engine_ids: tuple[int, ...]
    grace_seconds: float


@dataclass(frozen=True)
class GiveUpWaiting:
    """Fewer than ``needed`` engines passed the check within the wait: the run fails."""

    usable: int
    needed: int


Action = (
    CheckEngine
    | Dispatch
    | Interrupt
    | FailCase
    | EngineLeftOut
    | EngineJoinedRun
    | EngineLostNotice
    | EngineReleased
    | Abandoned
    | GiveUpWaiting
)


# -- events that carry data -----------------------------------------------------------


@dataclass(frozen=True)
class BatchSummary:
    """What came back for one batch, after its reports were replayed."""

    #: Cases whose reports came back, with their durations in seconds.
    finished: Mapping[str, float] = field(default_factory=dict)
    #: Cases the engine did not run (interrupted, or after a pytest.exit()).
    not_run: Sequence[str] = ()
    #: Of ``not_run``, those that had started and were cut short.
    cut_short: Sequence[str] = ()
    #: The case that called pytest.exit(), if one did.
    exit_nodeid: str | None = None
    #: Whether ``finished`` holds durations worth learning from (not a made-up report).
    measured: bool = True


@dataclass
class EngineRecord:
    state: EngineState
    #: When its check was sent (CHECKING) — to give up on checks never answered.
    checked_at: float = 0.0
    #: The batches sent to it and not back yet, in the order sent (the engine runs the
    #: first; the others wait behind it there). At most :data:`BATCHES_IN_FLIGHT`.
    batches: list[Batch] = field(default_factory=list)
    used: bool = False
    problems: tuple[str, ...] = ()
    #: When the engine's Slurm job ends, in the Run's clock (``None``: no time limit).
    job_end: float | None = None

    @property
    def batch(self) -> Batch | None:
        """The batch the engine runs now (the first sent of those not back)."""
        return self.batches[0] if self.batches else None


def summary_of(
    finished: Iterable[str],
    not_run: Iterable[str] = (),
    cut_short: Iterable[str] = (),
    exit_nodeid: str | None = None,
    seconds: float = 0.0,
) -> BatchSummary:
    """A :class:`BatchSummary` from plain lists (tests, and cases without durations)."""
    return BatchSummary(
        finished={nodeid: seconds for nodeid in finished},
        not_run=tuple(not_run),
        cut_short=tuple(cut_short),
        exit_nodeid=exit_nodeid,
    )
