"""Consistency checks and a plain-data view of a :class:`~pytest_gold.policy.run.Run`
(for the stateful test, logs and status files)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_gold.policy.runtypes import EngineState, Phase

if TYPE_CHECKING:
    from pytest_gold.policy.run import Run


def check_invariants(run: Run) -> None:
    """Raise AssertionError if the run's bookkeeping is inconsistent."""
    queued = run.queue.remaining()
    running = run.running
    assert len(set(queued)) == len(queued), "a case is queued twice"
    assert len(set(running)) == len(running), "a case runs twice at once"
    assert not (set(queued) & set(running)), "a case is queued and running"
    held = set(run.held)
    assert not (held & (set(queued) | set(running))), "a held case is queued or running"
    returned = {nodeid for batch in run.returned.values() for nodeid in batch.nodeids}
    open_cases = set(queued) | set(running) | held | returned
    assert not (open_cases & run.ended.keys()), "an ended case is still open"
    assert open_cases | run.ended.keys() == run.selected, "a case was lost"
    for eid, record in run.engines.items():
        assert bool(record.batches) == (record.state is EngineState.BUSY), eid
        assert len(record.batches) <= run.batches_in_flight, eid
    assert all(run.engines[eid].state is EngineState.IDLE for eid in run.idle_order)
    assert len(set(run.idle_order)) == len(run.idle_order)
    if run.stopped:
        assert not queued, "cases queued after a stop"
    for nodeid, count in run.losses.items():
        assert count <= run.retries + 1, nodeid
    if run.in_order is not None:
        assert all(len(batches) == 1 for batches in run.in_flight.values())
        assert all(len(batch.nodeids) == 1 for batch in run.busy.values())
    if run.phase is Phase.DONE:
        assert not run.busy, "a batch in flight after the end"
        assert not run.held, "a result held back after the end"
        assert run.gave_up or run.ended.keys() == run.selected, "a case never ended"


def describe_state(run: Run) -> dict[str, Any]:
    """The run in plain data (for logs and a status file)."""
    return {
        "phase": run.phase.value,
        "engines": {eid: record.state.value for eid, record in sorted(run.engines.items())},
        "queued": len(run.queue),
        "running": len(run.running),
        "stop": run.stop_reason,
    }
