"""What stops and faults do to a :class:`~pytest_gold.policy.run.Run`: a stop (-x,
pytest.exit(), Ctrl-C, no engine left), a lost engine, a batch that raised, a refused
dispatch, a lost controller, engines that did not answer after a stop (pure; the ``Run``'s
event methods of the same names call these)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_gold.policy.runtypes import (
    Abandoned,
    Action,
    EngineLostNotice,
    EngineState,
    FailCase,
    Interrupt,
    Phase,
    StopKind,
)

if TYPE_CHECKING:
    from pytest_gold.policy.run import Run


def engine_lost(run: Run, engine_id: int, message: str, now: float) -> list[Action]:
    """An engine died. Its batch's cases go to other engines up to ``retries`` times
    (never after a stop); the others fail with ``message``."""
    record = run.engines.get(engine_id)
    if record is None or record.state in (EngineState.LOST, EngineState.LEFT_OUT):
        return []
    batch, record.batch = record.batch, None
    record.state = EngineState.LOST
    if engine_id in run.idle_order:
        run.idle_order.remove(engine_id)
    actions: list[Action] = []
    retry: list[str] = []
    nodeids = batch.nodeids if batch is not None else []
    if nodeids:
        for nodeid in nodeids:
            run.losses[nodeid] = run.losses.get(nodeid, 0) + 1
            if run.losses[nodeid] <= run.retries and not run.stopped:
                retry.append(nodeid)
            else:
                failure = f"{message} ({run.losses[nodeid]} time(s))"
                actions.append(run.fail_case(nodeid, engine_id, failure))
        run.queue.requeue(retry)
        run.cases_resent += len(retry)
        run.cases_failed_lost += len(nodeids) - len(retry)
    actions.append(EngineLostNotice(engine_id, len(nodeids), len(retry), tuple(nodeids)))
    actions += run.stop_if_no_engines(now)
    run.settle()
    return actions


def dispatch_refused(run: Run, engine_id: int, now: float) -> list[Action]:
    """ipyparallel refused the batch of a :class:`Dispatch` (the engine unregistered
    meanwhile): its cases go back to the queue, never having run, and the engine is
    lost while idle."""
    record = run.engines.get(engine_id)
    if record is None or record.batch is None:
        return []
    batch, record.batch = record.batch, None
    record.state = EngineState.IDLE
    run.queue.requeue(list(batch.nodeids))
    return run.engine_lost(engine_id, "", now)


def controller_lost(run: Run, message: str) -> list[Action]:
    """The hub stopped answering: every case not finished fails with ``message``;
    nothing waits on the dead controller again."""
    actions: list[Action] = []
    for eid, batch in sorted(run.busy.items()):
        for nodeid in batch.nodeids:
            run.end_case(nodeid, "failed")
            actions.append(FailCase(nodeid, eid, message, when="setup"))
        record = run.engines[eid]
        record.batch, record.state = None, EngineState.UNRESPONSIVE
    for nodeid in run.queue.drain():
        run.end_case(nodeid, "failed")
        actions.append(FailCase(nodeid, None, message, when="setup"))
    run.stop_kind, run.stop_reason = StopKind.CONTROLLER_LOST, "the controller was lost"
    run.phase = Phase.DONE
    run.leave_out_held()
    return actions


def abandon_unanswered(run: Run) -> list[Action]:
    """After a stop, batches that did not answer within the grace period: their cases
    were not run (cut short), their engines get nothing more."""
    abandoned = []
    for eid, batch in sorted(run.busy.items()):
        for nodeid in batch.nodeids:
            run.end_case(nodeid, "not run")
            run.not_run.append(nodeid)
            run.cut_short.append((nodeid, eid))
        record = run.engines[eid]
        record.batch, record.state = None, EngineState.UNRESPONSIVE
        abandoned.append(eid)
    return [Abandoned(tuple(abandoned), run.grace())]


def batch_errored(run: Run, engine_id: int, message: str) -> list[Action]:
    """A task raised although its engine lives (a supervisor bug): its cases fail and
    the engine stays in the run."""
    batch = run.take_back_batch(engine_id)
    if batch is None:
        return []
    actions: list[Action] = []
    for nodeid in batch.nodeids:
        actions.append(run.fail_case(nodeid, engine_id, message))
    run.settle()
    return actions


def stop_requested(run: Run, kind: StopKind, reason: str, now: float) -> list[Action]:
    """Stop: nothing new starts; every case not yet dispatched is not run; running
    batches are interrupted and get a grace period (from ``now``) to report."""
    if run.phase is Phase.DONE:
        return []
    if run.stopped:
        if kind is StopKind.INTERRUPT and run.stop_kind is not StopKind.INTERRUPT:
            # Ctrl-C while stopping: say so, and wait no longer than Ctrl-C allows.
            run.stop_kind, run.stop_reason = kind, reason
            run.stop_deadline = min(run.stop_deadline, now + run.grace())
        return []
    run.stop_kind, run.stop_reason = kind, reason
    run.phase = Phase.STOPPING
    if kind is not StopKind.INTERRUPT:
        # A plain run stops before the held-back results (Ctrl-C: what finished
        # before it is still reported, in pytest's order).
        run.hold_rest()
    for nodeid in run.queue.drain():
        run.end_case(nodeid, "not run")
        run.not_run.append(nodeid)
    run.stop_deadline = now + run.grace()
    busy = tuple(sorted(run.busy))
    run.settle()
    return [Interrupt(busy)] if busy and kind is not StopKind.NO_ENGINES else []
