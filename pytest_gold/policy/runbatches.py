"""The Run's batches: dispatching them to idle engines, and ending their cases when they
come back (part of :class:`pytest_gold.policy.run.Run`, split out by concern)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest_gold.policy.runwalltime as runwalltime
from pytest_gold.policy.runtypes import (
    Action,
    BatchSummary,
    Dispatch,
    EngineState,
    FailCase,
    Phase,
    StopKind,
)
from pytest_gold.protocol.messages import Batch

if TYPE_CHECKING:
    from pytest_gold.policy.run import Run


def dispatch(run: Run, now: float) -> list[Action]:
    actions: list[Action] = []
    while run.phase is Phase.RUNNING and run.idle_order and run.queue:
        # Nothing a plain run never reaches; with nothing in flight that could still
        # release the results held back, never wait forever.
        if run.busy and not run.may_dispatch(run.queue.head):
            break
        eid = run.idle_order.pop(0)
        record = run.engines[eid]
        if record.state is not EngineState.IDLE:
            continue
        batch = runwalltime.batch_for(run, eid, now)
        if batch is None:  # nothing left fits before its job ends
            actions += runwalltime.release(run, eid, now)
            continue
        if run.busy and not all(run.may_dispatch(n) for n in batch.nodeids):
            # (a case later than the head, chosen to fit: only if a plain run reaches it)
            run.queue.requeue(list(batch.nodeids))
            run.idle_order.insert(0, eid)
            break
        record.state, record.used = EngineState.BUSY, True
        second = next_in_line(run, eid, now, [batch])
        if second is not None:
            # The worker keeps fixtures for the case it runs next: the second batch's first.
            batch = replace(batch, lookahead=second.nodeids[0])
        actions.append(send(run, eid, batch))
        if second is not None:
            actions.append(send(run, eid, second))
    for eid, record in sorted(run.engines.items()):
        # Engines that run a batch and have room for the next (theirs came back).
        if record.state is EngineState.BUSY and len(record.batches) < run.batches_in_flight:
            following = next_in_line(run, eid, now, record.batches)
            if following is not None:
                actions.append(send(run, eid, following))
    return actions


def next_in_line(run: Run, engine_id: int, now: float, holding: Sequence[Batch]) -> Batch | None:
    """The batch to queue on an engine behind those it holds, if it gets one: not in runs
    that stop on failures nor once stopping (what the replay finds decides whether
    anything more runs, as for :meth:`~pytest_gold.policy.run.Run.batch_returned`), and
    on an engine whose job ends, only one that fits after those it holds."""
    if (
        run.in_order is not None
        or run.phase is not Phase.RUNNING
        or not run.queue
        or len(holding) >= run.batches_in_flight
    ):
        return None
    return runwalltime.batch_for(run, engine_id, now, holding)


def send(run: Run, engine_id: int, batch: Batch) -> Dispatch:
    limits = {n: run.time_limits[n] for n in batch.nodeids if n in run.time_limits}
    batch = replace(batch, time_limits=limits)
    run.engines[engine_id].batches.append(batch)
    return Dispatch(engine_id, batch)


def take_back(run: Run, engine_id: int, batch: Batch | None) -> Batch | None:
    record = run.engines.get(engine_id)
    if record is None or not record.batches:
        return None
    if batch is None:
        batch = record.batches[0]
    elif batch not in record.batches:
        return None
    record.batches.remove(batch)
    if record.state is EngineState.BUSY and not record.batches:
        record.state = EngineState.IDLE
        run.idle_order.append(engine_id)
    return batch


def ended_by(
    run: Run, engine_id: int, nodeids: Sequence[str], summary: BatchSummary, now: float
) -> list[Action]:
    actions: list[Action] = []
    if summary.measured:
        run.queue.record(summary.finished.values())
    not_run = set(summary.not_run)
    for nodeid in nodeids:
        # The case that called pytest.exit() has no end of its own (a plain run's
        # reports do not close it either): what it reported stands.
        if nodeid in summary.finished or nodeid == summary.exit_nodeid:
            run.end_case(nodeid, "finished")
        elif nodeid in not_run:
            run.end_case(nodeid, "not run")
            run.not_run.append(nodeid)
        else:
            # The engine's supervisor guarantees one or the other; a case it forgot
            # must still end, as a failure that says so.
            run.end_case(nodeid, "failed")
            actions.append(
                FailCase(
                    nodeid,
                    engine_id,
                    "pytest-gold: the engine returned its batch without a result for "
                    "this case (this is a bug in pytest-gold, please report it)",
                )
            )
    run.cut_short.extend((nodeid, engine_id) for nodeid in summary.cut_short)
    if summary.exit_nodeid is not None and run.exit_nodeid is None:
        run.exit_nodeid = summary.exit_nodeid
        actions += run.stop_requested(StopKind.EXIT, f"pytest.exit() in {summary.exit_nodeid}", now)
    run.settle()
    return actions


def fail_case(run: Run, nodeid: str, engine_id: int, message: str) -> FailCase:
    if run.in_order is None:
        end_case(run, nodeid, "failed")
    else:
        run.in_order.add(nodeid, nodeid, failures=1)
        run.held[nodeid] = engine_id
    return FailCase(nodeid, engine_id, message)


def end_case(run: Run, nodeid: str, how: str) -> None:
    if nodeid in run.ended:
        raise AssertionError(f"{nodeid} ended twice ({run.ended[nodeid]}, then {how})")
    run.ended[nodeid] = how
