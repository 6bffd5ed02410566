"""Which cases go to an idle engine next: ordering and adaptive batching (pure, no I/O).

A :class:`DispatchQueue` hands out batches. Short cases are grouped so that one
ipyparallel task carries about ``target_batch_seconds`` of work (a task round trip costs a
few milliseconds, which would dominate millisecond cases); long cases go one per task, so
that no case waits behind another on a busy engine while an engine elsewhere is idle.
Towards the end of a run batches shrink (guided self-scheduling), so that engines finish
together.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pytest_gold.protocol.messages import Batch

#: Work one task should carry, in seconds, when cases are short.
DEFAULT_TARGET_BATCH_SECONDS = 0.5
#: A batch never takes more than 1/(this * engines) of the remaining cases, so that the
#: last batches are small and engines finish at about the same time.
TAIL_SHARE_FACTOR = 2
#: What a case costs an engine beyond its reported duration (setup + call + teardown):
#: pytest's own hooks, making and sending its reports. Measured at 1 to 2 ms on a
#: shared 2-core machine. Without it, a batch of trivial cases (reported durations of a
#: few microseconds) held thousands of cases, whose replay on the controller kept every
#: other engine's next batch waiting.
PER_CASE_OVERHEAD_SECONDS = 0.001


@dataclass
class DurationEstimate:
    """Running mean of observed per-case durations in this run."""

    total_seconds: float = 0.0
    cases: int = 0

    def add(self, seconds: float) -> None:
        self.total_seconds += max(seconds, 0.0)
        self.cases += 1

    @property
    def mean(self) -> float | None:
        return self.total_seconds / self.cases if self.cases else None


#: ``--gold-order`` values.
ORDER_DURATION = "duration"
ORDER_COLLECTION = "collection"
ORDERS = (ORDER_DURATION, ORDER_COLLECTION)


def dispatch_order(
    nodeids: Sequence[str],
    known_seconds: Mapping[str, float],
    order: str = ORDER_DURATION,
    first: Collection[str] = (),
) -> list[str]:
    """The order cases are dispatched in.

    ``duration``: cases never seen first (in collection order: their cost is unknown and
    learning it early helps), then the rest longest first by their last duration, so that
    no long case starts last and keeps one engine busy while the others idle.
    ``collection``: as collected.

    ``first``: cases pytest's own options put first (``--ff``: the previous failures,
    ``--nf``: new cases). They go before all others whatever their durations; each of the
    two groups is ordered as above.
    """
    if first:
        leading = [nodeid for nodeid in nodeids if nodeid in first]
        rest = [nodeid for nodeid in nodeids if nodeid not in first]
        return dispatch_order(leading, known_seconds, order) + dispatch_order(
            rest, known_seconds, order
        )
    if order == ORDER_COLLECTION:
        return list(nodeids)
    unseen = [nodeid for nodeid in nodeids if nodeid not in known_seconds]
    seen = [nodeid for nodeid in nodeids if nodeid in known_seconds]
    seen.sort(key=lambda nodeid: -known_seconds[nodeid])  # stable: ties keep their order
    return unseen + seen


def merge_durations(
    previous: Mapping[str, float], finished: Mapping[str, float]
) -> dict[str, float]:
    """The durations to remember after a run: the newest for each case."""
    merged = {key: float(value) for key, value in previous.items()}
    merged.update({key: float(value) for key, value in finished.items()})
    return merged


def batch_size(
    expected: Iterable[float | None],
    remaining: int,
    engine_count: int,
    target_seconds: float,
    max_cases: int | None = None,
) -> int:
    """How many of the next cases (their expected durations, in queue order; ``remaining``
    of them) go in one batch: about ``target_seconds`` of work (each case counting
    :data:`PER_CASE_OVERHEAD_SECONDS` more than its duration), never more than
    1/(TAIL_SHARE_FACTOR * engines) of what is left nor ``max_cases``, one case when a
    duration is unknown."""
    cap = max(1, math.ceil(remaining / (TAIL_SHARE_FACTOR * engine_count)))
    if max_cases is not None:
        cap = min(cap, max_cases)
    size = 0
    work = 0.0
    for seconds in expected:
        if size >= cap:
            break
        if seconds is None:
            # Nothing known yet: probe with one case, learn from it.
            return size or 1
        cost = seconds + PER_CASE_OVERHEAD_SECONDS
        if size and work + cost > target_seconds:
            break
        size += 1
        work += cost
    return max(size, 1) if remaining else 0


def planned_batches(
    expected: Sequence[float],
    engine_count: int,
    target_seconds: float,
    max_cases: int | None = None,
) -> int:
    """How many batches cases with these expected durations (in queue order) go out in."""
    start = batches = 0
    while start < len(expected):
        if expected[start] > target_seconds:  # a long case goes alone (and quickly here)
            start += 1
            batches += 1
            continue
        remaining = len(expected) - start
        following = (expected[index] for index in range(start, len(expected)))
        start += batch_size(following, remaining, engine_count, target_seconds, max_cases)
        batches += 1
    return batches


class DispatchQueue:
    """The cases not yet dispatched, in dispatch order, handed out as batches."""

    def __init__(
        self,
        nodeids: Sequence[str],
        *,
        engine_count: int,
        target_batch_seconds: float = DEFAULT_TARGET_BATCH_SECONDS,
        known_seconds: Mapping[str, float] | None = None,
        max_batch_cases: int | None = None,
        keep_order: bool = False,
    ) -> None:
        """``max_batch_cases`` caps every batch; ``keep_order``: cases put back (their
        engine was lost) return to their place in dispatch order rather than the front."""
        if engine_count < 1:
            raise ValueError("engine_count must be at least 1")
        if max_batch_cases is not None and max_batch_cases < 1:
            raise ValueError("max_batch_cases must be at least 1")
        if len(set(nodeids)) != len(nodeids):
            raise ValueError("node ids must be unique")
        self._queue: deque[str] = deque(nodeids)
        self.engine_count = engine_count
        self.target_batch_seconds = target_batch_seconds
        self.known_seconds = dict(known_seconds or {})
        self.observed = DurationEstimate()
        self.max_batch_cases = max_batch_cases
        self._rank = {nodeid: index for index, nodeid in enumerate(nodeids)} if keep_order else None

    def __len__(self) -> int:
        return len(self._queue)

    def __bool__(self) -> bool:
        return bool(self._queue)

    @property
    def head(self) -> str | None:
        return self._queue[0] if self._queue else None

    def expected_seconds(self, nodeid: str) -> float | None:
        """A case's expected duration: its own last duration, else this run's mean."""
        known = self.known_seconds.get(nodeid)
        return known if known is not None else self.observed.mean

    def remaining(self) -> list[str]:
        return list(self._queue)

    def record(self, durations: Iterable[float]) -> None:
        """Learn from the durations of finished cases."""
        for seconds in durations:
            self.observed.add(seconds)

    def next_batch(self) -> Batch | None:
        """The next batch for an idle engine, or ``None`` when nothing is left."""
        if not self._queue:
            return None
        size = batch_size(
            (self.expected_seconds(nodeid) for nodeid in self._queue),
            len(self._queue),
            self.engine_count,
            self.target_batch_seconds,
            self.max_batch_cases,
        )
        nodeids = [self._queue.popleft() for _ in range(size)]
        return Batch(nodeids=nodeids, lookahead=self.head)

    def next_batch_within(self, budget: float, expected: Callable[[str], float]) -> Batch | None:
        """The next batch whose cases' ``expected`` durations add up to at most ``budget``
        seconds (an engine whose time is limited): the first cases in dispatch order that
        fit, sized as :meth:`next_batch` sizes batches; ``None`` when no case fits."""
        if math.isinf(budget):
            return self.next_batch()
        fitting = [nodeid for nodeid in self._queue if expected(nodeid) <= budget]
        if not fitting:
            return None
        size = batch_size(
            (self.expected_seconds(nodeid) for nodeid in fitting),
            len(self._queue),
            self.engine_count,
            self.target_batch_seconds,
            self.max_batch_cases,
        )
        chosen: list[str] = []
        work = 0.0
        for nodeid in fitting[:size]:
            if chosen and work + expected(nodeid) > budget:
                break
            chosen.append(nodeid)
            work += expected(nodeid)
        taken = set(chosen)
        self._queue = deque(nodeid for nodeid in self._queue if nodeid not in taken)
        return Batch(nodeids=chosen, lookahead=self.head)

    def planned_batches(self, expected: Sequence[float]) -> int:
        """How many batches the cases still queued will go out in, given their expected
        durations (in queue order), if nothing changes."""
        return planned_batches(
            expected, self.engine_count, self.target_batch_seconds, self.max_batch_cases
        )

    def requeue(self, nodeids: Sequence[str]) -> None:
        """Put cases back (their engine was lost before they ran): at the front, or with
        ``keep_order`` at their place in dispatch order."""
        rank = self._rank
        if rank is None:
            self._queue.extendleft(reversed(nodeids))
            return
        for nodeid in nodeids:
            place = bisect.bisect(self._queue, rank[nodeid], key=rank.__getitem__)
            self._queue.insert(place, nodeid)

    def drain(self) -> list[str]:
        """Remove and return every case not yet dispatched (the run stops early)."""
        rest = list(self._queue)
        self._queue.clear()
        return rest


T = TypeVar("T")


@dataclass
class _Held(Generic[T]):
    payload: T
    failures: int
    stops: bool


class InOrderRelease(Generic[T]):
    """Results of single-case batches, released in dispatch order.

    For runs that stop on failures (``-x``, ``--maxfail``, ``--sw``): pytest decides when to
    stop from the reports it is shown, in the order shown. Releasing them in dispatch order
    (pytest's own order) makes it stop exactly where a plain run stops, and write what a
    plain run writes (stepwise's last failure, ``--lf``'s failures). A case that never
    finishes (cut short by a stop) holds back every later one for good: a case after it
    that finished anyway was not run by a plain run either.

    Each result carries the number of failed reports it holds and whether it stops the run
    (``pytest.exit()``), so that :meth:`stop_bound` can tell from the results held back
    where a plain run will stop at the latest.
    """

    def __init__(self, nodeids: Sequence[str]) -> None:
        self._position = {nodeid: index for index, nodeid in enumerate(nodeids)}
        self._held: dict[int, _Held[T]] = {}
        self._next = 0
        self.closed = False
        #: Failed reports in the results released so far.
        self.released_failures = 0

    def add(self, nodeid: str, payload: T, *, failures: int = 0, stops: bool = False) -> None:
        position = self._position[nodeid]
        if position < self._next or position in self._held:
            raise ValueError(f"{nodeid} already has a result")
        self._held[position] = _Held(payload, failures, stops)

    def pop_ready(self) -> T | None:
        """The next result in dispatch order, if it is in; none once closed."""
        if self.closed:
            return None
        held = self._held.pop(self._next, None)
        if held is None:
            return None
        self._next += 1
        self.released_failures += held.failures
        return held.payload

    def has_ready(self) -> bool:
        """Whether :meth:`pop_ready` would release a result now."""
        return not self.closed and self._next in self._held

    def close(self) -> None:
        """The run stopped: nothing more is released."""
        self.closed = True

    def left_over(self) -> list[str]:
        """Cases whose results were held back and never released, in dispatch order."""
        nodeids = {position: nodeid for nodeid, position in self._position.items()}
        return [nodeids[position] for position in sorted(self._held)]

    def stop_bound(self, failure_budget: float) -> int | None:
        """The position at or before which the run will stop, judging by the results held
        back (``failure_budget`` failed reports stop it), or ``None`` if they do not tell.

        Cases not finished yet can only make the run stop earlier, never later.
        """
        failures = 0
        for position in sorted(self._held):
            held = self._held[position]
            failures += held.failures
            if held.stops or failures >= failure_budget:
                return position
        return None

    def may_dispatch(self, nodeid: str, failure_budget: float) -> bool:
        """Whether ``nodeid`` may still be needed: not after a known stop."""
        bound = self.stop_bound(failure_budget)
        return bound is None or self._position[nodeid] < bound
