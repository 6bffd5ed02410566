"""What the driver does with the tasks that came back: a batch's result replayed through
pytest (or held back for pytest's order), a task that raised (a lost engine, a supervisor
that failed), and the failures the controller reports on a case's behalf. Part of
:class:`pytest_gold.controller.driver.Driver`, split out by concern; what a result means
for the run (what runs next, what a loss costs) is the Run's."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest_gold.controller.engineloss as engineloss
from pytest_gold.controller.faults import (
    NO_ENGINE,
    is_engine_lost,
    lost_case_message,
    supervisor_failed_message,
)
from pytest_gold.controller.taskoutput import note_leftovers
from pytest_gold.controller.verdicts import failed_reports, finishes, stops
from pytest_gold.policy.run import BatchSummary, FailCase
from pytest_gold.protocol.messages import Batch, BatchResult, NotRun, result_from_wire
from pytest_gold.protocol.synthetic import failed_case_events

if TYPE_CHECKING:
    from pytest_gold.controller.driver import Driver


class SentBatch(NamedTuple):
    """A batch task in flight: the engine it went to and the batch it carries."""

    engine_id: int
    batch: Batch


def task_seconds(metadata: Any) -> float:
    """How long a task ran on its engine, as ipyparallel timed it there (0: not known)."""
    try:
        return float((metadata["completed"] - metadata["started"]).total_seconds())
    except (KeyError, TypeError, AttributeError):
        return 0.0


def collect(driver: Driver, future: Any) -> None:
    eid, batch = driver.sent.pop(future)
    run = driver.run
    now = time.monotonic()
    try:
        data = future.get()
    except Exception as error:
        driver.output.lost(future, eid)
        batch_failed(driver, eid, error, now, batch)
        return
    result = result_from_wire(data)
    driver.progress.engine_time.came_back(eid)
    driver.progress.task_ran(eid, task_seconds(future.metadata))
    # Its output first, all of it (output and results travel apart).
    driver.output.settle(future.metadata, eid, result)
    driver.memory.forget(future)
    nodeids = batch.nodeids
    if run.in_order is not None and len(nodeids) == 1 and finishes(result, nodeids[0]):
        driver.held_results[nodeids[0]] = result
        run.result_held(eid, nodeids[0], failed_reports(result), stops(result))
        release(driver, now)
        return
    # (in a run in pytest's order, a case that did not run holds back the later ones
    # for good)
    driver.apply(run.batch_returned(eid, now, batch), now)  # its next batch first
    try:
        summary = replay(driver, result, measured=True)
    except BaseException:  # Ctrl-C in the replay: what was not replayed did not run
        finished = driver.replayer.replaying.finished
        unreplayed = [nodeid for nodeid in nodeids if nodeid not in finished]
        summary = BatchSummary(finished, unreplayed, measured=False)
        run.batch_done(eid, summary, now, batch)
        raise
    driver.apply(run.batch_done(eid, summary, now, batch), now)


def release(driver: Driver, now: float) -> None:
    """Replay the held-back results whose turn came."""
    session = driver.session
    while (ready := driver.run.release_next()) is not None:
        nodeid, eid = ready
        result = driver.held_results.pop(nodeid)
        measured = nodeid not in driver.made_up
        driver.made_up.discard(nodeid)
        summary = replay(driver, result, measured=measured)
        stopping = session is not None and (session.shouldfail or session.shouldstop)
        if stopping or driver.exit_request is not None:
            driver.run.hold_rest()  # pytest stops here; the loop stops the rest
        driver.apply(driver.run.case_released(nodeid, eid, summary, now), now)


def replay(driver: Driver, result: BatchResult, measured: bool) -> BatchSummary:
    """Replay through pytest's hooks; what the Run needs to know of it."""
    outcome = driver.replayer.replay(result)
    note_leftovers(driver.terminal, result)
    engine = result.engine
    progress = driver.progress
    for nodeid, seconds in outcome.finished.items():
        progress.finished(engine.host, outcome.outcomes.get(nodeid, ""), seconds)
    if measured:
        progress.engine_time.done(engine.engine_id, list(outcome.finished.values()))
        driver.durations.update(outcome.finished)
    for crash in outcome.crashes:
        if crash.nodeid is None:
            driver.terminal.write_line(
                f"gold: the worker on {engine.tag} died between cases; the rest of "
                f"its batch went to a new worker. {crash.cause}",
                problem=True,
            )
    if outcome.exit_request is not None and driver.exit_request is None:
        driver.exit_request = outcome.exit_request
    cut_short = [n for e in result.events if isinstance(e, NotRun) for n in e.cut_short]
    return BatchSummary(
        finished=outcome.finished,
        not_run=outcome.not_run,
        cut_short=cut_short,
        exit_nodeid=outcome.exit_request.nodeid if outcome.exit_request else None,
        measured=measured,
    )


def batch_failed(driver: Driver, eid: int, error: Exception, now: float, batch: Batch) -> None:
    """A task raised instead of returning: its engine died, or the supervisor failed."""
    engine = driver.info[eid]
    if not is_engine_lost(error):
        message = supervisor_failed_message(engine, error)
        driver.apply(driver.run.batch_errored(eid, message, batch), now)
        return
    actions = engineloss.lose_engine(driver, eid, lost_case_message(engine), now)
    driver.apply(
        [
            dataclasses.replace(a, message=f"{a.message}; {error}")
            if isinstance(a, FailCase)
            else a
            for a in actions
        ],
        now,
    )


def fail_case(driver: Driver, action: FailCase) -> None:
    engine = NO_ENGINE if action.engine_id is None else driver.info[action.engine_id]
    events = failed_case_events(action.nodeid, None, {}, action.when, action.message)
    result = BatchResult(engine=engine, events=events)
    if action.nodeid in driver.run.held:  # its turn comes (pytest's order)
        driver.held_results[action.nodeid] = result
        driver.made_up.add(action.nodeid)
        return
    replay(driver, result, measured=False)
