"""The ETA: the estimator on its own, and on simulated sweeps with known durations and a
known dispatch overhead, driven by an injected clock (no real time, no cluster)."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_gold.controller.progress import MIN_CASES_FOR_ETA, Progress
from pytest_gold.policy.eta import EngineTime, Overhead, estimate_eta
from pytest_gold.policy.scheduling import DispatchQueue


def test_estimate_adds_overhead_and_what_running_batches_still_need():
    assert estimate_eta([1.0, 1.0, 1.0, 1.0], [], engines=2) == 2.0
    per_case = Overhead(per_case=0.5)
    assert estimate_eta([1.0, 1.0, 1.0, 1.0], [], engines=2, overhead=per_case) == 3.0
    # four cases in two tasks of 1 s overhead each, on two engines
    per_task = Overhead(per_task=1.0)
    assert estimate_eta([1.0] * 4, [], engines=2, overhead=per_task, queued_tasks=2) == 3.0
    # a running batch that needs 0.5 s more, + 2 queued cases, on 1 engine
    assert estimate_eta([1.0, 1.0], [0.5], engines=1) == 2.5


def test_estimate_is_never_less_than_its_longest_piece():
    # 100 engines cannot split one 50 s case
    assert estimate_eta([50.0, 1.0], [], engines=100) == 50.0
    assert estimate_eta([1.0], [20.0, 0.0], engines=8) == 20.0


def test_no_estimate_without_durations_or_engines():
    assert estimate_eta([1.0, None], [], engines=2) is None
    assert estimate_eta([], [None], engines=2) is None
    assert estimate_eta([1.0], [], engines=0) is None
    assert estimate_eta([], [], engines=0) == 0.0


def test_engine_time_learns_overhead_per_task_and_case_and_the_worker_start():
    now = [0.0]
    engine_time = EngineTime(clock=lambda: now[0])
    assert engine_time.overhead == Overhead() and engine_time.startup == 0.0

    def batch(engine: int, cases: int, wall: float) -> None:
        engine_time.sent(engine)
        now[0] += wall
        engine_time.done(engine, [0.1] * cases)

    # first batches also start the worker: 3 s more than the later ones
    batch(1, 2, 0.2 + 0.2 + 2 * 0.05 + 3.0)
    batch(2, 2, 0.2 + 0.2 + 2 * 0.05 + 3.0)
    # nothing regular yet: the first batches' overhead, worker start and all, split as a
    # task costing two cases
    assert engine_time.overhead.per_task == pytest.approx(1.65)
    assert engine_time.overhead.per_case == pytest.approx(0.825)
    assert engine_time.startup == 0.0
    # then 0.2 s per task + 0.05 s per case, in batches of 1, 3 and 10 cases
    for cases in (1, 3, 10, 3):
        batch(1, cases, 0.1 * cases + 0.2 + 0.05 * cases)
    assert engine_time.overhead.per_task == pytest.approx(0.2)
    assert engine_time.overhead.per_case == pytest.approx(0.05)
    assert engine_time.startup == pytest.approx(3.0)
    engine_time.done(4, [1.0])  # never sent (e.g. a lost engine's batch): ignored
    assert engine_time.regular.batches == 4


def test_engine_time_of_a_batch_sent_before_the_last_one_was_taken_in():
    """The controller sends an engine its next batch before replaying the one it
    finished: each batch is still measured from its own dispatch."""
    now = [0.0]
    engine_time = EngineTime(clock=lambda: now[0])
    engine_time.started.add(1)
    engine_time.sent(1)  # batch A
    now[0] = 2.0
    engine_time.sent(1)  # A came back at 2 s: B goes out before A is replayed
    now[0] = 2.5
    engine_time.done(1, [1.0])  # A taken in: 2.5 s for 1 s of case
    now[0] = 4.0
    engine_time.done(1, [1.0])  # B: 2 s for 1 s of case
    assert engine_time.regular.batches == 2
    assert engine_time.regular.overhead == pytest.approx(1.5 + 1.0)
    assert engine_time.sent_at == {}


def test_engine_time_of_a_batch_queued_behind_another_on_its_engine():
    """An engine holds its next batch while it runs one: the queued batch is measured
    from when the one before it came back, not from when it was sent."""
    now = [0.0]
    engine_time = EngineTime(clock=lambda: now[0])
    engine_time.started.add(1)
    engine_time.sent(1)  # batch A
    engine_time.sent(1)  # B, queued behind A there
    now[0] = 2.0
    engine_time.came_back(1)  # A is back: B starts
    engine_time.sent(1)  # C, queued behind B
    assert engine_time.left(1, [1.0]) == pytest.approx(1.0)  # B: 1 s of case, none run
    now[0] = 2.5
    engine_time.done(1, [1.0])  # A taken in: 2.5 s for 1 s of case
    now[0] = 4.0
    engine_time.came_back(1)  # B is back at 4 s
    engine_time.done(1, [1.0])  # B: 2 s for 1 s of case
    assert engine_time.regular.overhead == pytest.approx(1.5 + 1.0)
    now[0] = 5.0
    engine_time.came_back(1)
    engine_time.done(1, [0.5])  # C: from 4 s, 1 s for 0.5 s of case
    assert engine_time.regular.overhead == pytest.approx(1.5 + 1.0 + 0.5)
    assert engine_time.sent_at == {}


def test_what_a_running_batch_still_needs():
    now = [0.0]
    engine_time = EngineTime(clock=lambda: now[0])
    engine_time.started.add(1)
    engine_time.regular.add(cases=2, overhead=1.0)  # 0.5 s per task + 0.25 s per case
    engine_time.sent(1)
    now[0] = 1.0
    assert engine_time.left(1, [1.0, 1.0]) == pytest.approx(2.0)  # 3 s needed, 1 s done
    now[0] = 5.0  # 2 s over: as long again
    assert engine_time.left(1, [1.0, 1.0]) == pytest.approx(2.0)
    engine_time.sent(7)  # a first batch also starts the worker (nothing learned yet)
    assert engine_time.left(7, [1.0]) == pytest.approx(1.75)


@given(
    queued=st.lists(st.floats(0, 1e4), max_size=30),
    running=st.lists(st.floats(0, 1e4), max_size=8),
    engines=st.integers(1, 64),
    overhead=st.floats(0, 100),
)
def test_estimate_bounds(queued, running, engines, overhead):
    per_case = Overhead(per_case=overhead)
    eta = estimate_eta(queued, running, engines, per_case)
    assert eta is not None and eta >= 0
    work = sum(q + overhead for q in queued) + sum(running)
    # no faster than all engines busy all the time, no slower than one engine doing it all
    assert work / engines <= eta * (1 + 1e-9) + 1e-9
    assert eta <= work * (1 + 1e-9) + 1e-9
    # more overhead never makes it sooner
    more = Overhead(per_task=1.0, per_case=overhead + 1)
    assert estimate_eta(queued, running, engines, more) >= eta - 1e-9


@dataclass
class Sweep:
    """A campaign simulated on an injected clock: each task costs the engine
    ``round_trip`` plus, per case, its duration and ``per_case`` (pytest's protocol,
    reports); the durations are known from an earlier run, as in a resumed campaign."""

    durations: list[float]
    engines: int
    round_trip: float
    per_case: float
    startup: float = 0.0
    target_batch_seconds: float = 0.5

    def run(self) -> tuple[float, float | None, float | None]:
        """(real seconds left at mid-run, the ETA then, the ETA as it was before: the
        durations alone). Mid-run is when half the cases are done and a batch other than
        an engine's first has come back (before, only what the first batches cost,
        worker start and all, is known)."""
        now = 0.0
        progress = Progress(total=len(self.durations), clock=lambda: now)
        known = {f"c{i}": d for i, d in enumerate(self.durations)}
        queue = DispatchQueue(
            list(known),
            engine_count=self.engines,
            target_batch_seconds=self.target_batch_seconds,
            known_seconds=known,
        )
        events: list[tuple[float, int, int, list[str]]] = []
        inflight: dict[int, list[str]] = {}
        started: set[int] = set()
        order = itertools.count()

        def send(engine: int) -> None:
            batch = queue.next_batch()
            if batch is None:
                return
            progress.engine_time.sent(engine)
            inflight[engine] = batch.nodeids
            cost = self.round_trip + sum(known[n] + self.per_case for n in batch.nodeids)
            if engine not in started:  # the engine's worker starts with its first batch
                started.add(engine)
                cost += self.startup
            heapq.heappush(events, (now + cost, next(order), engine, batch.nodeids))

        for engine in range(self.engines):
            send(engine)
        mid: tuple[float, float | None, float | None] | None = None
        while events:
            now, _, engine, nodeids = heapq.heappop(events)
            del inflight[engine]
            for nodeid in nodeids:
                progress.finished("vm", "passed", known[nodeid])
            progress.engine_time.done(engine, [known[n] for n in nodeids])
            queue.record(known[n] for n in nodeids)
            send(engine)
            learned = progress.engine_time.regular.batches > 0
            if mid is None and learned and progress.done >= len(self.durations) / 2:
                running = [
                    progress.engine_time.left(eid, [known[n] for n in batch])
                    for eid, batch in inflight.items()
                ]
                queued = [known[n] for n in queue.remaining()]
                snapshot = progress.snapshot(  # as the controller's tick() builds it
                    running=sum(len(b) for b in inflight.values()),
                    engines_busy=len(inflight),
                    engines_available=self.engines,
                    queued_seconds=queued,
                    running_left=running,
                    queued_tasks=queue.planned_batches(queued),
                )
                # what it said before: durations only, running cases counted whole
                naive = estimate_eta(
                    queued + [known[n] for b in inflight.values() for n in b], [], self.engines
                )
                mid = (now, snapshot.eta_seconds, naive)
        if mid is None:  # every batch was an engine's first: nothing to learn from
            return 0.0, None, None
        return now - mid[0], mid[1], mid[2]


def test_eta_of_a_sweep_of_short_cases_counts_the_dispatch_overhead():
    """The issue's case: short cases whose overhead is most of the work (ETA 0:00:02
    with ~9 s left). Here 400 cases of 5-50 ms, 4 engines, 50 ms per task, 20 ms per case."""
    rng = random.Random(7)
    sweep = Sweep([rng.uniform(0.005, 0.05) for _ in range(400)], 4, 0.05, 0.02, startup=2.0)
    left, eta, naive = sweep.run()
    assert eta is not None and naive is not None
    assert 0.75 <= eta / left <= 1.33, (eta, left)
    assert naive / left < 0.6  # durations alone are far too optimistic


@settings(max_examples=60, deadline=None)
@given(
    cases=st.integers(4 * MIN_CASES_FOR_ETA, 600),
    engines=st.integers(1, 24),
    round_trip=st.floats(0.001, 0.05),
    per_case=st.floats(0.0, 0.05),
    startup=st.floats(0.0, 5.0),
    spread=st.floats(1.0, 20.0),
    seed=st.integers(0, 2**16),
)
def test_eta_at_mid_run_is_within_a_factor_of_two_of_the_real_time_left(
    cases, engines, round_trip, per_case, startup, spread, seed
):
    """Overheads as measured on a workstation and well beyond (a task's round trip up to
    50 ms, up to 50 ms per case, up to 5 s to start a worker), cases of 10 ms to 4 s."""
    rng = random.Random(seed)
    durations = [0.01 * rng.uniform(1.0, spread) ** 2 for _ in range(cases)]
    left, eta, _ = Sweep(durations, engines, round_trip, per_case, startup).run()
    if left > 0:
        assert eta is not None
        assert 0.5 <= eta / left <= 2.0, (eta, left)
