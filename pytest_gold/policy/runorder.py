"""Runs that stop on failures (-x, --maxfail, --sw): a :class:`~pytest_gold.policy.run.Run`
holds results back and releases them in pytest's order, and sends nothing a plain run
would not reach (pure; the ``Run``'s methods of the same names call these)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_gold.policy.run import Run


def result_held(run: Run, engine_id: int, nodeid: str, failures: int, stops: bool) -> None:
    """In-order runs: the one case of the engine's batch finished; its result waits
    until every case before it in pytest's order was replayed (see
    :meth:`release_next`). ``failures``: failed reports in it; ``stops``: it called
    pytest.exit()."""
    assert run.in_order is not None
    batch = run.take_back_batch(engine_id)
    if batch is None:
        return
    run.in_order.add(nodeid, nodeid, failures=failures, stops=stops)
    run.held[nodeid] = engine_id


def release_next(run: Run) -> tuple[str, int] | None:
    """The next held result to replay now (node id, engine), if any; the driver
    replays it and reports with :meth:`case_released`."""
    if run.in_order is None:
        return None
    nodeid = run.in_order.pop_ready()
    if nodeid is None:
        return None
    return nodeid, run.held.pop(nodeid)


def hold_rest(run: Run) -> None:
    """pytest stops the run (a released result was its last failure): no more held
    result is released; what finished after that point is left out."""
    if run.in_order is not None:
        run.in_order.close()


def failure_budget(run: Run) -> float:
    """Failed reports still to come before pytest stops the run."""
    budget = math.inf
    if run.maxfail:
        budget = run.maxfail - run.failures_reported
    if run.stepwise_allowed and run.in_order is not None:
        budget = min(budget, run.stepwise_allowed - run.in_order.released_failures)
    return budget


def may_dispatch(run: Run, nodeid: str | None) -> bool:
    """Nothing is sent that a plain run would not reach: no case after a failure (or
    ``pytest.exit()``) held back that is known to stop the run."""
    if run.in_order is None or nodeid is None:
        return True
    return run.in_order.may_dispatch(nodeid, run.failure_budget())


def leave_out_held(run: Run) -> None:
    """At the end: results still held back were never released (the run stopped
    before them, or a case before them never finished): left out."""
    if run.in_order is None:
        return
    for nodeid in run.in_order.left_over():
        if nodeid not in run.ended:
            run.end_case(nodeid, "left out")
            run.left_out.append(nodeid)
    run.held.clear()
