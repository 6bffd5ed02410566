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
        limits = {n: run.time_limits[n] for n in batch.nodeids if n in run.time_limits}
        batch = replace(batch, time_limits=limits)
        record.state, record.batch, record.used = EngineState.BUSY, batch, True
        actions.append(Dispatch(eid, batch))
    return actions


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
