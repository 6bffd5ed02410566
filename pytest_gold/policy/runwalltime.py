"""Walltime-aware dispatch in a :class:`~pytest_gold.policy.run.Run`: engines whose Slurm
job ends get only cases that finish before it, and a job that ends moves its engines'
cases elsewhere (pure; the ``Run``'s methods of the same names call these).

A case's expected duration, for the rule of :mod:`pytest_gold.policy.walltime`:

1. its duration in the previous run (pytest's cache, as dispatch order uses it);
2. else its run-time limit (``@pytest.mark.gold(timeout=...)``, ``--gold-timeout``): it
   cannot run longer;
3. else the mean duration of the cases finished in this run so far, else 0: a case
   never run and without a limit is expected to be like the others, and until one
   finished only the margin's seconds protect it. A first campaign on Slurm gives its
   cases a ``--gold-timeout`` to be safe.

A batch's cases run one after another, so a batch fits when their expected durations
add up to what fits (:func:`~pytest_gold.policy.walltime.longest_that_fits`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest_gold.policy.runfaults as runfaults
import pytest_gold.policy.walltime as walltime
from pytest_gold.policy.runtypes import (
    Action,
    EngineLostNotice,
    EngineReleased,
    EngineState,
)
from pytest_gold.protocol.messages import Batch

if TYPE_CHECKING:
    from pytest_gold.policy.run import Run


def expected_seconds(run: Run, nodeid: str) -> float:
    """What the walltime rule expects ``nodeid`` to take (see the module docstring)."""
    limit = run.time_limits.get(nodeid)
    if limit is not None and not math.isfinite(limit):
        limit = None
    mean = run.queue.observed.mean
    expected = walltime.expected_duration(
        run.queue.known_seconds.get(nodeid), limit, mean if mean is not None else 0.0
    )
    assert expected is not None  # a default was given
    return expected


def job_ends_at(run: Run, engine_id: int, at: float | None) -> None:
    """The engine check said when the engine's job ends (in the Run's clock)."""
    record = run.engines.get(engine_id)
    if record is not None:
        record.job_end = at


def batch_for(run: Run, engine_id: int, now: float, holding: Sequence[Batch] = ()) -> Batch | None:
    """The next batch for the engine, behind ``holding`` (the batches it runs or has
    queued): one that fits before its job ends after those, or ``None`` when no case
    left does."""
    job_end = run.engines[engine_id].job_end
    budget = walltime.longest_that_fits(job_end, now, run.margin)
    budget -= sum(expected_seconds(run, n) for batch in holding for n in batch.nodeids)
    if budget < 0:
        return None
    return run.queue.next_batch_within(budget, lambda nodeid: expected_seconds(run, nodeid))


def release(run: Run, engine_id: int, now: float) -> list[Action]:
    """No case left fits in the engine's job: it gets nothing more. Time only passes, so
    nothing fits later either (but for cases sent back from a lost engine: they go to
    the engines there are, and to those that join). The engine is not stopped: it
    belongs to its job, whose other engines may still work; the job ends at its time
    limit, or when the run cancels the jobs it submitted."""
    record = run.engines[engine_id]
    record.state = EngineState.RELEASED
    if engine_id in run.idle_order:
        run.idle_order.remove(engine_id)
    shortest = min(expected_seconds(run, nodeid) for nodeid in run.queue.remaining())
    left = walltime.time_left(record.job_end, now)
    actions: list[Action] = [EngineReleased(engine_id, left, run.margin.needed(shortest))]
    return actions + run.stop_if_no_engines(now)


def job_ended(run: Run, engine_id: int, now: float) -> list[Action]:
    """The engine's Slurm job ended (its time limit, or ``scancel``) with the engine: its
    cases did not fail, they go to other engines, not counted against ``retries`` (after
    a stop: not run; those of the batch it ran, cut short)."""
    batches = runfaults.take_engine_out(run, engine_id)
    if batches is None:
        return []
    nodeids = [nodeid for batch in batches for nodeid in batch.nodeids]
    moved: list[str] = []
    for index, batch in enumerate(batches):
        for nodeid in batch.nodeids:
            if run.stopped:
                run.end_case(nodeid, "not run")
                run.not_run.append(nodeid)
                if index == 0:
                    run.cut_short.append((nodeid, engine_id))
            else:
                moved.append(nodeid)
    run.queue.requeue(moved)
    run.cases_moved += len(moved)
    actions: list[Action] = [
        EngineLostNotice(engine_id, len(nodeids), len(moved), tuple(nodeids), job_ended=True)
    ]
    actions += run.stop_if_no_engines(now)
    run.settle()
    return actions
