"""How long a run has left: what the engines spend per case, learned as it goes (pure).

The cases' own durations are not all an engine spends on them: a task's round trip, the
worker's batch protocol, pytest's protocol per case and sending the reports back cost
engine time too, and for short cases more than the cases themselves. :class:`EngineTime`
measures what each batch really cost its engine, from when it was sent to when its
result was taken in, against the durations its cases reported. The difference is the
*overhead*, fitted per task and per case, that :func:`estimate_eta` adds to the work
still to do. An engine's first batch of a run also starts its worker (imports, session
fixtures): that one-time cost is learned apart, and counted only for first batches.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pytest_gold.policy.runtypes import BATCHES_IN_FLIGHT

#: Below this (relative) spread of batch sizes, per-task and per-case overhead cannot be
#: told apart.
SAME_SIZE_TOLERANCE = 1e-9
#: Until they can: a task's own overhead is taken to be that of this many cases.
TASK_AS_CASES = 2


@dataclass(frozen=True)
class Overhead:
    """Engine seconds beyond the cases' own durations: per task (its round trip, the
    worker's batch protocol) and per case (pytest's protocol, its reports)."""

    per_task: float = 0.0
    per_case: float = 0.0

    def of(self, cases: int) -> float:
        """The overhead of one task of ``cases`` cases."""
        return self.per_task + self.per_case * cases if cases else 0.0


@dataclass
class _Fit:
    """Sums for a least-squares fit of overhead = per_task + per_case * cases."""

    batches: int = 0
    cases: int = 0
    cases_squared: float = 0.0
    overhead: float = 0.0
    overhead_by_cases: float = 0.0

    def add(self, cases: int, overhead: float) -> None:
        self.batches += 1
        self.cases += cases
        self.cases_squared += cases * cases
        self.overhead += overhead
        self.overhead_by_cases += overhead * cases

    def line(self) -> Overhead:
        """The fitted line, neither part negative. While every batch had the same size
        the split cannot be told: a task is taken to cost as much as TASK_AS_CASES cases,
        which is what batches of different sizes showed on a workstation (~25 ms per
        task, ~12 ms per case)."""
        n = self.batches
        if not n:
            return Overhead()
        mean_cases = self.cases / n
        mean_overhead = self.overhead / n
        variance = self.cases_squared / n - mean_cases**2
        if variance <= SAME_SIZE_TOLERANCE * max(mean_cases**2, 1.0):
            per_case = mean_overhead / (TASK_AS_CASES + mean_cases)
            return Overhead(per_task=TASK_AS_CASES * per_case, per_case=per_case)
        per_case = (self.overhead_by_cases / n - mean_cases * mean_overhead) / variance
        per_task = mean_overhead - per_case * mean_cases
        if per_case < 0:  # bigger batches cost no more: all per task
            return Overhead(per_task=mean_overhead)
        if per_task < 0:  # through the origin: all per case
            return Overhead(per_case=self.overhead_by_cases / self.cases_squared)
        return Overhead(per_task=per_task, per_case=per_case)


#: Batches an engine has at most: those it runs or has queued, and the one it finished
#: that the controller has not taken in yet.
BATCHES_PER_ENGINE = max(BATCHES_IN_FLIGHT, 2) + 1


@dataclass
class EngineTime:
    """Wall time of the batches engines ran, against the durations their cases reported.

    Keys are engine ids; ``clock`` is injectable so that tests need no real time.
    """

    clock: Callable[[], float] = time.monotonic
    #: When the batches an engine has were sent to it (or, queued behind another there,
    #: when that one came back), oldest first: an engine's next batch goes out before the
    #: one it finished is taken in (replayed). At most
    #: :data:`BATCHES_PER_ENGINE`: a batch that failed is never taken in, and is
    #: forgotten once that many more were sent.
    sent_at: dict[int, deque[float]] = field(default_factory=dict)
    #: Engines whose first batch of the run came back.
    started: set[int] = field(default_factory=set)
    #: Of each engine's batches in ``sent_at``, how many came back and are not taken in
    #: yet (the next one is the one it runs).
    came: dict[int, int] = field(default_factory=dict)
    regular: _Fit = field(default_factory=_Fit)
    first: _Fit = field(default_factory=_Fit)

    def sent(self, engine: int) -> None:
        self.sent_at.setdefault(engine, deque(maxlen=BATCHES_PER_ENGINE)).append(self.clock())

    def came_back(self, engine: int) -> None:
        """One of the engine's batches came back (before it is taken in): the batch
        queued behind it there starts now, and is measured from now."""
        pending = self.sent_at.get(engine)
        index = self.came.get(engine, 0)
        if pending is None or index >= len(pending):
            return
        if index + 1 < len(pending):
            pending[index + 1] = max(pending[index + 1], self.clock())
        self.came[engine] = index + 1

    def done(self, engine: int, durations: Sequence[float]) -> None:
        """The engine's oldest batch came back; ``durations`` are what its cases
        reported."""
        pending = self.sent_at.get(engine)
        sent = pending.popleft() if pending else None
        if pending is not None and not pending:
            del self.sent_at[engine]
        self.came[engine] = max(self.came.get(engine, 0) - 1, 0)
        if sent is None or not durations:
            return
        overhead = max(self.clock() - sent - sum(durations), 0.0)
        if engine in self.started:
            self.regular.add(len(durations), overhead)
        else:
            self.started.add(engine)
            self.first.add(len(durations), overhead)

    @property
    def overhead(self) -> Overhead:
        """The fitted overhead of a batch (none before the first batch). Until a batch
        other than an engine's first came back, the first ones are all there is to go by:
        their overhead, worker start included, is the cautious guess."""
        return self.regular.line() if self.regular.batches else self.first.line()

    @property
    def startup(self) -> float:
        """What an engine's first batch costs beyond a later one: starting its worker."""
        if not (self.first.batches and self.regular.batches):
            return 0.0
        mean_cases = round(self.first.cases / self.first.batches)
        return max(self.first.overhead / self.first.batches - self.overhead.of(mean_cases), 0.0)

    def left(self, engine: int, expected: Sequence[float]) -> float:
        """Seconds the batch an engine is running still needs, given its cases' expected
        durations. A batch running longer than expected is guessed to need as long again
        as it has overrun (it is clearly slower than thought, by how much is unknown)."""
        pending = self.sent_at.get(engine)
        # The batch it runs is the oldest one that did not come back yet.
        index = self.came.get(engine, 0)
        elapsed = self.clock() - pending[index] if pending and index < len(pending) else 0.0
        need = sum(expected) + self.overhead.of(len(expected))
        if engine not in self.started:
            need += self.startup
        return abs(need - elapsed)


def estimate_eta(
    queued: Sequence[float | None],
    running: Sequence[float | None],
    engines: int,
    overhead: Overhead = Overhead(),
    queued_tasks: int | None = None,
) -> float | None:
    """Seconds left: the work still to do, spread over the engines that can do it.

    The work is what the running batches still need (``running``, see
    :meth:`EngineTime.left`), and the queued cases' expected durations plus their
    overhead: per case, and per task for the ``queued_tasks`` tasks they go out in
    (default: one per case). No estimate is less than the longest single piece, which no
    number of engines can split. ``None`` when a case or batch has no estimate, or there
    is work and no engine.
    """
    if any(seconds is None for seconds in (*queued, *running)):
        return None
    known_queued = [seconds for seconds in queued if seconds is not None]
    pieces = [seconds for seconds in running if seconds is not None]
    work = sum(pieces) + sum(known_queued)
    work += overhead.per_case * len(queued)
    work += overhead.per_task * (len(queued) if queued_tasks is None else queued_tasks)
    if known_queued:
        pieces.append(max(known_queued) + overhead.of(1))
    if not pieces:
        return 0.0
    if engines <= 0:
        return None
    return max(work / engines, max(pieces))
