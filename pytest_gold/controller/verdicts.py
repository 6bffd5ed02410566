"""The plain run's order where a verdict depends on it (a mixin of the controller).

``-x``, ``--maxfail``, ``--sw`` and ``--sw-skip`` stop at the first failure(s) in pytest's
order (collection order after ``pytest_collection_modifyitems``, so ``--ff``, ``--lf`` and
``--nf`` included), and stepwise remembers that failure for the next run. Cases finish out of
order on a cluster; pytest must still see their reports in its own order, or it stops at
another failure and the next ``--sw`` run skips cases that never ran. Such a run dispatches
one case per task in pytest's order and replays results in that order
(:class:`~pytest_gold.policy.scheduling.InOrderRelease`): pytest then stops where a plain run stops,
and a case that finished on another engine after that point is left out, as a plain run
would never have run it.

Runs that do not stop on failures keep the duration order, except that the cases pytest's
own options put first (``--ff``: the previous failures, ``--nf``: new cases) go first.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from pytest_gold.policy.scheduling import InOrderRelease
from pytest_gold.protocol.messages import BatchResult, Event, ExitRequested, LogFinish, ReportEvent

#: pytest's cacheprovider keys: the failures of the last run (--lf, --ff) and the node ids
#: seen so far (--nf).
LAST_FAILED_CACHE_KEY = "cache/lastfailed"
NODEIDS_CACHE_KEY = "cache/nodeids"


def stops_on_failure(config: pytest.Config) -> bool:
    """``-x``, ``--maxfail`` or stepwise (``--sw``, ``--sw-skip``) is on."""
    return bool(config.getoption("maxfail", 0)) or bool(config.getoption("stepwise", False))


def first_cases(config: pytest.Config, nodeids: Sequence[str]) -> set[str]:
    """The cases pytest's ``--ff`` (previous failures) or ``--nf`` (new cases) puts first."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return set()
    first: set[str] = set()
    if config.getoption("failedfirst", False):
        failed = cache.get(LAST_FAILED_CACHE_KEY, {})
        if isinstance(failed, dict):
            first.update(nodeid for nodeid in nodeids if nodeid in failed)
    if config.getoption("newfirst", False):
        known = cache.get(NODEIDS_CACHE_KEY, [])
        if isinstance(known, list):
            seen = set(known)
            first.update(nodeid for nodeid in nodeids if nodeid not in seen)
    return first


def failed_reports(result: BatchResult) -> int:
    """Reports that count as failures for ``--maxfail`` and stepwise, as pytest counts them
    (an xfail's failure does not)."""
    return sum(
        1
        for event in result.events
        if isinstance(event, ReportEvent)
        and event.data.get("outcome") == "failed"
        and "wasxfail" not in event.data
    )


def finishes(result: BatchResult, nodeid: str) -> bool:
    """The result closes ``nodeid`` (it ran, or failed for it); else it did not run."""
    return any(isinstance(e, LogFinish) and e.nodeid == nodeid for e in result.events)


class VerdictOrder:
    """Replaying in pytest's order when the verdict depends on it (a mixin of
    GoldController; it uses the controller's ``config``, ``session`` and ``state``)."""

    config: pytest.Config
    session: pytest.Session | None
    state: Any
    #: Set for runs that stop on failures (see the module's docstring).
    in_order: InOrderRelease[Callable[[], None]] | None = None

    def failure_budget(self) -> float:
        """Failed reports still to come before pytest stops the run."""
        budget = math.inf
        session = self.session
        maxfail = self.config.getoption("maxfail", 0)
        if maxfail and session is not None:
            budget = maxfail - session.testsfailed
        if self.config.getoption("stepwise", False) and self.in_order is not None:
            # Stepwise stops at the first failure; --sw-skip lets one pass first.
            allowed = 2 if self.config.getoption("stepwise_skip", False) else 1
            budget = min(budget, allowed - self.in_order.released_failures)
        return budget

    def may_dispatch(self, nodeid: str | None) -> bool:
        """Nothing is sent that a plain run would not reach: no case after a failure (or
        ``pytest.exit()``) that is known to stop the run."""
        in_order = self.in_order
        if in_order is None or nodeid is None:
            return True
        return in_order.may_dispatch(nodeid, self.failure_budget())

    def take_result(
        self, nodeids: Sequence[str], result: BatchResult, replay: Callable[[], None]
    ) -> None:
        """Replay ``result`` now, or, in a run that stops on failures, once every case
        before it in pytest's order has been replayed."""
        in_order = self.in_order
        if in_order is None or len(nodeids) != 1 or not finishes(result, nodeids[0]):
            replay()  # a case that did not run holds back the later ones for good
            return
        stops = any(isinstance(event, ExitRequested) for event in result.events)
        in_order.add(nodeids[0], replay, failures=failed_reports(result), stops=stops)
        while (ready := in_order.pop_ready()) is not None:
            ready()
            session = self.session
            stopping = session is not None and (session.shouldfail or session.shouldstop)
            if stopping or self.state.exit_request is not None:
                in_order.close()  # the run's loop stops the rest

    def left_out(self) -> list[str]:
        """Cases that finished after the point where the run stopped: not reported."""
        return self.in_order.left_over() if self.in_order is not None else []

    def without_left_out(self, result: BatchResult) -> BatchResult:
        """``result`` without what it says about left-out cases (a late teardown error):
        a plain run never ran them."""
        left_out = set(self.state.left_out)
        if not left_out:
            return result
        events = [event for event in result.events if _event_nodeid(event) not in left_out]
        return dataclasses.replace(result, events=events)

    def summarize_left_out(self, terminalreporter: Any, max_listed: int) -> None:
        left_out = self.state.left_out
        if not left_out:
            return
        count = len(left_out)
        terminalreporter.write_line(
            f"gold: {count} case{'s' if count != 1 else ''} finished on other engines after "
            "the point where the run stopped; as in a plain run, "
            f"{'they are' if count != 1 else 'it is'} not reported.",
            yellow=True,
        )
        for case in left_out[:max_listed]:
            terminalreporter.write_line(f"gold: left out: {case}", yellow=True)


def _event_nodeid(event: Event) -> str | None:
    if isinstance(event, ReportEvent):
        return event.data.get("nodeid")
    return getattr(event, "nodeid", None)
