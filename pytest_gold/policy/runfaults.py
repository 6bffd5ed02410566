"""What stops and faults do to a :class:`~pytest_gold.policy.run.Run`: a stop (-x,
pytest.exit(), Ctrl-C, no engine left), a lost engine, a batch that raised, a refused
dispatch, a lost controller, engines that did not answer after a stop (pure; the ``Run``'s
event methods of the same names call these)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_gold.policy.runtypes import (
    EVERY_ENGINE_LOST,
    NO_ENGINE_HAS_TIME,
    Abandoned,
    Action,
    EngineLostNotice,
    EngineState,
    FailCase,
    Interrupt,
    Phase,
    StopKind,
)
from pytest_gold.protocol.messages import Batch

if TYPE_CHECKING:
    from pytest_gold.policy.run import Run


def take_engine_out(run: Run, engine_id: int) -> list[Batch] | None:
    """The engine leaves the run (lost, or its job ended): it is lost, and gives back the
    batches it held, the one it ran first (``None``: it was not in the run)."""
    record = run.engines.get(engine_id)
    if record is None or record.state in (EngineState.LOST, EngineState.LEFT_OUT):
        return None
    batches, record.batches = record.batches, []
    record.state = EngineState.LOST
    if engine_id in run.idle_order:
        run.idle_order.remove(engine_id)
    return batches


def engine_lost(run: Run, engine_id: int, message: str, now: float) -> list[Action]:
    """An engine died. The cases of the batch it ran go to other engines up to
    ``retries`` times (never after a stop); the others fail with ``message``. The
    batches queued behind it never started: their cases go to other engines without
    counting (after a stop: not run)."""
    batches = take_engine_out(run, engine_id)
    if batches is None:
        return []
    actions: list[Action] = []
    retry: list[str] = []
    failed = 0
    for nodeid in batches[0].nodeids if batches else []:
        run.losses[nodeid] = run.losses.get(nodeid, 0) + 1
        if run.losses[nodeid] <= run.retries and not run.stopped:
            retry.append(nodeid)
        else:
            failure = f"{message} ({run.losses[nodeid]} time(s))"
            actions.append(run.fail_case(nodeid, engine_id, failure))
            failed += 1
    for nodeid in (nodeid for batch in batches[1:] for nodeid in batch.nodeids):
        if run.stopped:
            run.end_case(nodeid, "not run")
            run.not_run.append(nodeid)
        else:
            retry.append(nodeid)
    run.queue.requeue(retry)
    run.cases_resent += len(retry)
    run.cases_failed_lost += failed
    nodeids = tuple(nodeid for batch in batches for nodeid in batch.nodeids)
    actions.append(EngineLostNotice(engine_id, len(nodeids), len(retry), nodeids))
    actions += run.stop_if_no_engines(now)
    run.settle()
    return actions


def dispatch_refused(
    run: Run, engine_id: int, now: float, batch: Batch | None = None
) -> list[Action]:
    """ipyparallel refused ``batch`` of a :class:`Dispatch` (default: the last sent; the
    engine unregistered meanwhile): its cases, and those of any batch sent after it, go
    back to the queue, never having run, and the engine is lost (with what it runs)."""
    record = run.engines.get(engine_id)
    if record is None or not record.batches:
        return []
    index = record.batches.index(batch) if batch in record.batches else len(record.batches) - 1
    refused, record.batches = record.batches[index:], record.batches[:index]
    if not record.batches:
        record.state = EngineState.IDLE
    run.queue.requeue([nodeid for batch in refused for nodeid in batch.nodeids])
    return run.engine_lost(engine_id, "", now)


def controller_lost(run: Run, message: str) -> list[Action]:
    """The hub stopped answering: every case not finished fails with ``message``;
    nothing waits on the dead controller again."""
    actions: list[Action] = []
    for eid, batches in sorted(run.in_flight.items()):
        for batch in batches:
            for nodeid in batch.nodeids:
                run.end_case(nodeid, "failed")
                actions.append(FailCase(nodeid, eid, message, when="setup"))
        record = run.engines[eid]
        record.batches, record.state = [], EngineState.UNRESPONSIVE
    for nodeid in run.queue.drain():
        run.end_case(nodeid, "failed")
        actions.append(FailCase(nodeid, None, message, when="setup"))
    run.stop_kind, run.stop_reason = StopKind.CONTROLLER_LOST, "the controller was lost"
    run.phase = Phase.DONE
    run.leave_out_held()
    return actions


def abandon_unanswered(run: Run) -> list[Action]:
    """After a stop, batches that did not answer within the grace period: their cases
    were not run (those of the batch an engine ran: cut short), their engines get
    nothing more."""
    abandoned = []
    for eid, batches in sorted(run.in_flight.items()):
        for index, batch in enumerate(batches):
            for nodeid in batch.nodeids:
                run.end_case(nodeid, "not run")
                run.not_run.append(nodeid)
                if index == 0:
                    run.cut_short.append((nodeid, eid))
        record = run.engines[eid]
        record.batches, record.state = [], EngineState.UNRESPONSIVE
        abandoned.append(eid)
    return [Abandoned(tuple(abandoned), run.grace())]


def batch_errored(
    run: Run, engine_id: int, message: str, batch: Batch | None = None
) -> list[Action]:
    """A task raised although its engine lives (a supervisor bug): its cases fail and
    the engine stays in the run."""
    taken = run.take_back_batch(engine_id, batch)
    if taken is None:
        return []
    actions: list[Action] = []
    for nodeid in taken.nodeids:
        actions.append(run.fail_case(nodeid, engine_id, message))
    run.settle()
    return actions


def stop_if_no_engines(run: Run, now: float) -> list[Action]:
    """Once running, a run with cases left and no engine that could take them (none
    usable, none being checked) stops."""
    if (
        run.phase is Phase.RUNNING
        and run.queue
        and not run.engines_in(EngineState.IDLE, EngineState.BUSY, EngineState.CHECKING)
        and not run.engines_coming
    ):
        released = run.engines_in(EngineState.RELEASED)
        reason = NO_ENGINE_HAS_TIME if released else EVERY_ENGINE_LOST
        return run.stop_requested(StopKind.NO_ENGINES, reason, now)
    return []


def set_engines_coming(run: Run, coming: bool, now: float) -> list[Action]:
    """Whether engines are still on their way (Slurm jobs queued or starting). A run
    checks for engines left when one leaves; engines that stop coming afterwards (a job
    cancelled as silent, or gone from squeue) are no engine's leaving, so their end is
    where a run with no engine left stops."""
    stopped_coming = run.engines_coming and not coming
    run.engines_coming = coming
    return run.stop_if_no_engines(now) if stopped_coming else []


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
