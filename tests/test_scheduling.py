"""Property tests of the dispatch queue (pure: no cluster)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_gold.policy.scheduling import (
    DEFAULT_TARGET_BATCH_SECONDS,
    ORDER_COLLECTION,
    PER_CASE_OVERHEAD_SECONDS,
    TAIL_SHARE_FACTOR,
    DispatchQueue,
    InOrderRelease,
    dispatch_order,
    merge_durations,
)

durations = st.floats(min_value=0.0, max_value=3600.0, allow_nan=False)


@st.composite
def sweeps(draw):
    count = draw(st.integers(min_value=1, max_value=300))
    nodeids = [f"test_sim.py::test_case[{i}]" for i in range(count)]
    known = draw(
        st.dictionaries(st.sampled_from(nodeids), durations, max_size=count)
        if count
        else st.just({})
    )
    engines = draw(st.integers(min_value=1, max_value=24))
    target = draw(st.floats(min_value=0.001, max_value=10.0))
    observed = draw(st.lists(durations, max_size=5))
    return nodeids, known, engines, target, observed


@given(sweeps())
@settings(max_examples=200, deadline=None)
def test_every_case_dispatched_exactly_once_in_order(sweep):
    nodeids, known, engines, target, observed = sweep
    queue = DispatchQueue(
        nodeids, engine_count=engines, target_batch_seconds=target, known_seconds=known
    )
    queue.record(observed)
    dispatched = []
    while queue:
        remaining = len(queue)
        batch = queue.next_batch()
        assert batch is not None and batch.nodeids
        # Batches shrink towards the end so engines finish together.
        assert len(batch.nodeids) <= max(1, math.ceil(remaining / (TAIL_SHARE_FACTOR * engines)))
        # A batch carries at most the target amount of expected work, unless it is one case.
        if len(batch.nodeids) > 1:
            work = sum(queue.expected_seconds(n) or 0.0 for n in batch.nodeids)
            assert work <= target + 1e-9
        assert batch.lookahead == queue.head
        dispatched.extend(batch.nodeids)
    assert dispatched == nodeids
    assert queue.next_batch() is None


@given(sweeps(), st.data())
@settings(max_examples=100, deadline=None)
def test_requeued_cases_come_back_first(sweep, data):
    nodeids, _, engines, target, _ = sweep
    queue = DispatchQueue(nodeids, engine_count=engines, target_batch_seconds=target)
    first = queue.next_batch()
    assert first is not None
    lost = data.draw(st.lists(st.sampled_from(first.nodeids), unique=True, min_size=1))
    queue.requeue(lost)
    again = []
    while queue:
        batch = queue.next_batch()
        assert batch is not None
        again.extend(batch.nodeids)
    assert again[: len(lost)] == lost
    assert sorted(again + [n for n in first.nodeids if n not in lost]) == sorted(nodeids)


def test_unknown_durations_probe_with_single_cases_then_batch():
    queue = DispatchQueue([f"t{i}" for i in range(1000)], engine_count=2, target_batch_seconds=0.5)
    assert len(queue.next_batch().nodeids) == 1
    queue.record([0.0001])
    # 0.5 s of 0.1 ms cases (each 1.1 ms with the per-case overhead), capped by the tail
    # share of what remains.
    assert len(queue.next_batch().nodeids) == math.ceil(999 / (TAIL_SHARE_FACTOR * 2))
    assert len(queue.next_batch().nodeids) == math.ceil(749 / (TAIL_SHARE_FACTOR * 2))


def test_trivial_cases_count_their_overhead_not_only_their_duration():
    """Cases reporting microseconds still cost the engine pytest's own work per case: a
    batch of them is about the target's worth of that, not thousands of cases (whose
    replay would keep the other engines' results waiting on the controller)."""
    queue = DispatchQueue([f"t{i}" for i in range(100_000)], engine_count=2)
    queue.record([0.00001])
    queue.next_batch()  # the probe
    size = len(queue.next_batch().nodeids)
    expected = DEFAULT_TARGET_BATCH_SECONDS / (0.00001 + PER_CASE_OVERHEAD_SECONDS)
    assert math.floor(expected) - 1 <= size <= math.ceil(expected)


def test_long_cases_go_one_per_task():
    queue = DispatchQueue(["a", "b", "c"], engine_count=1, target_batch_seconds=0.5)
    queue.record([3600.0])
    assert [queue.next_batch().nodeids for _ in range(3)] == [["a"], ["b"], ["c"]]


def test_drain_and_bad_input():
    queue = DispatchQueue(["a", "b"], engine_count=1)
    assert queue.drain() == ["a", "b"] and not queue
    with pytest.raises(ValueError):
        DispatchQueue(["a", "a"], engine_count=1)
    with pytest.raises(ValueError):
        DispatchQueue(["a"], engine_count=0)


@given(
    st.lists(st.integers(min_value=0, max_value=10_000), unique=True, max_size=200),
    st.data(),
)
def test_dispatch_order_is_unseen_first_then_longest_first(ids, data):
    nodeids = [f"t.py::test[{i}]" for i in ids]
    known = data.draw(
        st.dictionaries(st.sampled_from(nodeids), durations) if nodeids else st.just({})
    )
    ordered = dispatch_order(nodeids, known)
    assert sorted(ordered) == sorted(nodeids)
    unseen = [n for n in nodeids if n not in known]
    assert ordered[: len(unseen)] == unseen  # in collection order
    seen = ordered[len(unseen) :]
    assert all(known[a] >= known[b] for a, b in itertools.pairwise(seen))
    assert dispatch_order(nodeids, known, ORDER_COLLECTION) == nodeids


def test_merge_durations_keeps_the_newest():
    assert merge_durations({"a": 1.0, "b": 2.0}, {"b": 3.0, "c": 4}) == {
        "a": 1.0,
        "b": 3.0,
        "c": 4.0,
    }


@given(
    st.lists(st.integers(min_value=0, max_value=10_000), unique=True, max_size=100),
    st.data(),
)
def test_cases_pytest_puts_first_stay_first(ids, data):
    """--ff / --nf: pytest's leading group is dispatched first, whatever the durations."""
    nodeids = [f"t.py::test[{i}]" for i in ids]
    known = data.draw(
        st.dictionaries(st.sampled_from(nodeids), durations) if nodeids else st.just({})
    )
    first = set(data.draw(st.lists(st.sampled_from(nodeids), unique=True)) if nodeids else [])
    ordered = dispatch_order(nodeids, known, first=first)
    assert set(ordered[: len(first)]) == first
    leading = [n for n in nodeids if n in first]
    rest = [n for n in nodeids if n not in first]
    assert ordered == dispatch_order(leading, known) + dispatch_order(rest, known)


@given(sweeps(), st.data())
@settings(max_examples=100, deadline=None)
def test_single_case_batches_in_order_and_lost_cases_back_in_place(sweep, data):
    nodeids, known, engines, target, observed = sweep
    queue = DispatchQueue(
        nodeids,
        engine_count=engines,
        target_batch_seconds=target,
        known_seconds=known,
        max_batch_cases=1,
        keep_order=True,
    )
    queue.record(observed)
    out = [queue.next_batch() for _ in range(data.draw(st.integers(1, len(nodeids))))]
    assert all(len(batch.nodeids) == 1 for batch in out)
    lost = data.draw(st.lists(st.sampled_from([b.nodeids[0] for b in out]), unique=True))
    queue.requeue(lost)
    # The queue is still in dispatch order: lost cases are back in their place.
    dispatched = {batch.nodeids[0] for batch in out}
    expected = [n for n in nodeids if n in lost or n not in dispatched]
    assert queue.remaining() == expected


def test_max_batch_cases_must_be_positive():
    with pytest.raises(ValueError):
        DispatchQueue(["a"], engine_count=1, max_batch_cases=0)


@st.composite
def finishing_orders(draw):
    """Cases with a number of failed reports each, finishing in any order."""
    count = draw(st.integers(min_value=1, max_value=40))
    nodeids = [f"t.py::test[{i}]" for i in range(count)]
    failures = draw(st.lists(st.integers(0, 2), min_size=count, max_size=count))
    finish = draw(st.permutations(nodeids))
    return nodeids, dict(zip(nodeids, failures, strict=True)), finish


@given(finishing_orders())
def test_results_are_released_in_dispatch_order(case):
    nodeids, failures, finish = case
    release: InOrderRelease[str] = InOrderRelease(nodeids)
    released = []
    for nodeid in finish:
        release.add(nodeid, nodeid, failures=failures[nodeid])
        while (ready := release.pop_ready()) is not None:
            released.append(ready)
        # Released: exactly the longest finished prefix of the dispatch order.
        done = set(finish[: finish.index(nodeid) + 1])
        prefix = list(itertools.takewhile(done.__contains__, nodeids))
        assert released == prefix
    assert release.released_failures == sum(failures.values())
    assert release.left_over() == []


@given(finishing_orders(), st.integers(min_value=1, max_value=4), st.data())
def test_stop_bound_never_cuts_what_a_plain_run_reaches(case, budget, data):
    """Whatever has finished, every case a plain run with this failure budget reaches may
    still be dispatched; and once the stop is known, nothing after it is."""
    nodeids, failures, finish = case
    # Where a plain run stops: the case whose failures reach the budget.
    total, plain_stop = 0, None
    for position, nodeid in enumerate(nodeids):
        total += failures[nodeid]
        if total >= budget:
            plain_stop = position
            break
    release: InOrderRelease[str] = InOrderRelease(nodeids)
    finished = finish[: data.draw(st.integers(0, len(finish)))]
    for nodeid in finished:
        release.add(nodeid, nodeid, failures=failures[nodeid])
    bound = release.stop_bound(budget)
    for position, nodeid in enumerate(nodeids):
        reached = plain_stop is None or position <= plain_stop
        if reached and nodeid not in finished:
            assert release.may_dispatch(nodeid, budget)
    # Held results can only under-count failures: the bound is never before the real stop.
    if plain_stop is None:
        assert bound is None
    elif bound is not None:
        assert bound >= plain_stop
    if plain_stop is not None and set(nodeids[: plain_stop + 1]) <= set(finished):
        assert bound == plain_stop  # everything up to the stop is in: the stop is known


def test_release_stops_at_a_case_that_did_not_run_and_when_closed():
    release: InOrderRelease[str] = InOrderRelease(["a", "b", "c", "d"])
    release.add("a", "A")
    release.add("c", "C", stops=True)
    assert release.pop_ready() == "A"
    assert release.pop_ready() is None  # "b" did not finish: "c" waits
    assert release.stop_bound(math.inf) == 2  # pytest.exit() in "c"
    assert release.may_dispatch("b", math.inf) and not release.may_dispatch("d", math.inf)
    release.close()
    release.add("b", "B")
    assert release.pop_ready() is None
    assert release.left_over() == ["b", "c"]
    with pytest.raises(ValueError):
        release.add("a", "again")


@given(
    seconds=st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=0, max_size=300),
    engines=st.integers(1, 32),
    target=st.floats(min_value=0.01, max_value=2.0),
    max_cases=st.none() | st.integers(1, 5),
)
def test_planned_batches_are_the_batches_the_queue_hands_out(seconds, engines, target, max_cases):
    """The ETA counts the tasks still to come with planned_batches: it must agree with
    next_batch when the durations are known."""
    nodeids = [f"c{i}" for i in range(len(seconds))]
    queue = DispatchQueue(
        nodeids,
        engine_count=engines,
        target_batch_seconds=target,
        max_batch_cases=max_cases,
        known_seconds=dict(zip(nodeids, seconds, strict=True)),
    )
    planned = queue.planned_batches(seconds)
    handed_out = 0
    while queue.next_batch() is not None:
        handed_out += 1
    assert planned == handed_out
