"""Time passing in a :class:`~pytest_gold.policy.run.Run`: the first wait, overdue engine
checks, batches unanswered after a stop, dispatch to idle engines, and the run's end
(pure; the ``Run``'s methods of the same names call these)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest_gold.policy.runbatches as runbatches
import pytest_gold.policy.runfaults as runfaults
from pytest_gold.policy.runtypes import Action, EngineState, GiveUpWaiting, Phase

if TYPE_CHECKING:
    from pytest_gold.policy.run import Run


def tick(run: Run, now: float, failures_reported: int | None) -> list[Action]:
    """Time passed: dispatch to idle engines, give up on overdue checks, the first wait,
    and batches that did not answer after a stop."""
    if run.phase is Phase.DONE:
        return []
    if failures_reported is not None:
        run.failures_reported = failures_reported
    actions: list[Action] = []
    run.start_if_ready(now)
    for eid in run.engines_in(EngineState.CHECKING):
        if now - run.engines[eid].checked_at > run.wait_seconds:
            actions += run.engine_checked(
                eid, [f"no answer to the engine check within {run.wait_seconds:g} s"], now
            )
    if run.phase is Phase.WAITING:
        if now - run.started_at > run.wait_seconds:
            run.phase, run.gave_up = Phase.DONE, True
            actions.append(GiveUpWaiting(len(run.usable), run.min_engines))
        return actions
    if run.phase is Phase.STOPPING and run.busy and now > run.stop_deadline:
        actions += runfaults.abandon_unanswered(run)
    actions += runbatches.dispatch(run, now)
    settle(run)
    return actions


def settle(run: Run) -> None:
    """Move to DONE once nothing is in flight and nothing more will be dispatched."""
    if run.phase is Phase.DONE or run.busy or run.returned:
        return
    if run.in_order is not None and run.in_order.has_ready():
        return  # the driver replays it first (it may stop the run)
    if run.phase is Phase.STOPPING or (run.phase is Phase.RUNNING and not run.queue):
        run.phase = Phase.DONE
        run.leave_out_held()
