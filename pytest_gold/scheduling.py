"""Which cases go to an idle engine next: ordering and adaptive batching (pure, no I/O).

A :class:`DispatchQueue` hands out batches. Short cases are grouped so that one
ipyparallel task carries about ``target_batch_seconds`` of work (a task round trip costs a
few milliseconds, which would dominate millisecond cases); long cases go one per task, so
that no case waits behind another on a busy engine while an engine elsewhere is idle.
Towards the end of a run batches shrink (guided self-scheduling), so that engines finish
together.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .messages import Batch

#: Work one task should carry, in seconds, when cases are short.
DEFAULT_TARGET_BATCH_SECONDS = 0.5
#: A batch never takes more than 1/(this * engines) of the remaining cases, so that the
#: last batches are small and engines finish at about the same time.
TAIL_SHARE_FACTOR = 2


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
    nodeids: Sequence[str], known_seconds: Mapping[str, float], order: str = ORDER_DURATION
) -> list[str]:
    """The order cases are dispatched in.

    ``duration``: cases never seen first (in collection order: their cost is unknown and
    learning it early helps), then the rest longest first by their last duration, so that
    no long case starts last and keeps one engine busy while the others idle.
    ``collection``: as collected.
    """
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
    expected: Iterable[float | None], remaining: int, engine_count: int, target_seconds: float
) -> int:
    """How many of the next cases (their expected durations, in queue order; ``remaining``
    of them) go in one batch: about ``target_seconds`` of work, never more than
    1/(TAIL_SHARE_FACTOR * engines) of what is left, one case when a duration is unknown."""
    cap = max(1, math.ceil(remaining / (TAIL_SHARE_FACTOR * engine_count)))
    size = 0
    work = 0.0
    for seconds in expected:
        if size >= cap:
            break
        if seconds is None:
            # Nothing known yet: probe with one case, learn from it.
            return size or 1
        if size and work + seconds > target_seconds:
            break
        size += 1
        work += seconds
    return max(size, 1) if remaining else 0


def planned_batches(expected: Sequence[float], engine_count: int, target_seconds: float) -> int:
    """How many batches cases with these expected durations (in queue order) go out in."""
    start = batches = 0
    while start < len(expected):
        if expected[start] > target_seconds:  # a long case goes alone (and quickly here)
            start += 1
            batches += 1
            continue
        remaining = len(expected) - start
        following = (expected[index] for index in range(start, len(expected)))
        start += batch_size(following, remaining, engine_count, target_seconds)
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
    ) -> None:
        if engine_count < 1:
            raise ValueError("engine_count must be at least 1")
        if len(set(nodeids)) != len(nodeids):
            raise ValueError("node ids must be unique")
        self._queue: deque[str] = deque(nodeids)
        self.engine_count = engine_count
        self.target_batch_seconds = target_batch_seconds
        self.known_seconds = dict(known_seconds or {})
        self.observed = DurationEstimate()

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
        )
        nodeids = [self._queue.popleft() for _ in range(size)]
        return Batch(nodeids=nodeids, lookahead=self.head)

    def planned_batches(self, expected: Sequence[float]) -> int:
        """How many batches the cases still queued will go out in, given their expected
        durations (in queue order), if nothing changes."""
        return planned_batches(expected, self.engine_count, self.target_batch_seconds)

    def requeue(self, nodeids: Sequence[str]) -> None:
        """Put cases back at the front (their engine was lost before they ran)."""
        self._queue.extendleft(reversed(nodeids))

    def drain(self) -> list[str]:
        """Remove and return every case not yet dispatched (the run stops early)."""
        rest = list(self._queue)
        self._queue.clear()
        return rest
