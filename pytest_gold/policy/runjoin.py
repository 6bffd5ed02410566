"""Engines joining a :class:`~pytest_gold.policy.run.Run`: registered, checked, taking
part or left out, and when the run may start (pure; the ``Run``'s methods of the same
names call these)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_gold.policy.runtypes import (
    Action,
    CheckEngine,
    EngineJoinedRun,
    EngineLeftOut,
    EngineRecord,
    EngineState,
    Phase,
)

if TYPE_CHECKING:
    from pytest_gold.policy.run import Run


def engine_registered(run: Run, engine_id: int, now: float) -> list[Action]:
    """A new engine id appeared in the cluster: check it first."""
    if engine_id in run.engines or run.phase is Phase.DONE:
        return []
    run.engines[engine_id] = EngineRecord(state=EngineState.CHECKING, checked_at=now)
    if run.first_check_at is None:
        run.first_check_at = now
    return [CheckEngine(engine_id)]


def engine_check_queued(run: Run, engine_id: int, now: float) -> None:
    """The engine's check waits behind another run's task there: not overdue, its
    turn comes (the wait for its answer starts again)."""
    record = run.engines.get(engine_id)
    if record is not None and record.state is EngineState.CHECKING:
        record.checked_at = now


def engine_checked(run: Run, engine_id: int, problems: Sequence[str], now: float) -> list[Action]:
    """The engine check's answer: no problems, and the engine joins the run."""
    record = run.engines.get(engine_id)
    if record is None or record.state is not EngineState.CHECKING:
        return []
    if problems:
        record.state, record.problems = EngineState.LEFT_OUT, tuple(problems)
        return [EngineLeftOut(engine_id, record.problems), *run.stop_if_no_engines(now)]
    record.state = EngineState.IDLE
    run.idle_order.append(engine_id)
    run.start_if_ready(now)
    return [EngineJoinedRun(engine_id)]


def start_if_ready(run: Run, now: float) -> None:
    """Leave the first wait once ``min_engines`` passed the check and the other first
    checks answered (or the settle time is over: they join later)."""
    if run.phase is not Phase.WAITING or len(run.usable) < run.min_engines:
        return
    settled = (run.first_check_at or now) + run.settle_seconds
    if not run.engines_in(EngineState.CHECKING) or now >= settled:
        run.phase = Phase.RUNNING
