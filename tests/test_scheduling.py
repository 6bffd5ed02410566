"""Property tests of the dispatch queue (pure: no cluster)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_gold.scheduling import (
    ORDER_COLLECTION,
    TAIL_SHARE_FACTOR,
    DispatchQueue,
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
    queue.record([0.001])
    # 0.5 s of 1 ms cases, capped by the tail share of what remains.
    assert len(queue.next_batch().nodeids) == math.ceil(999 / (TAIL_SHARE_FACTOR * 2))
    assert len(queue.next_batch().nodeids) == math.ceil(749 / (TAIL_SHARE_FACTOR * 2))


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
    seconds=st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=0, max_size=300),
    engines=st.integers(1, 32),
    target=st.floats(min_value=0.01, max_value=2.0),
)
def test_planned_batches_are_the_batches_the_queue_hands_out(seconds, engines, target):
    """The ETA counts the tasks still to come with planned_batches: it must agree with
    next_batch when the durations are known."""
    nodeids = [f"c{i}" for i in range(len(seconds))]
    queue = DispatchQueue(
        nodeids,
        engine_count=engines,
        target_batch_seconds=target,
        known_seconds=dict(zip(nodeids, seconds, strict=True)),
    )
    planned = queue.planned_batches(seconds)
    handed_out = 0
    while queue.next_batch() is not None:
        handed_out += 1
    assert planned == handed_out
