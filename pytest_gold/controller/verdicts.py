"""The plain run's order where a verdict depends on it.

``-x``, ``--maxfail``, ``--sw`` and ``--sw-skip`` stop at the first failure(s) in pytest's
order (collection order after ``pytest_collection_modifyitems``, so ``--ff``, ``--lf`` and
``--nf`` included), and stepwise remembers that failure for the next run. Cases finish out of
order on a cluster; pytest must still see their reports in its own order, or it stops at
another failure and the next ``--sw`` run skips cases that never ran. Such a run dispatches
one case per task in pytest's order and replays results in that order
(:class:`~pytest_gold.policy.scheduling.InOrderRelease`): pytest then stops where a plain run stops,
and a case that finished on another engine after that point is left out, as a plain run
would never have run it. The bookkeeping of that (what is held back, what may still be
dispatched) is :class:`pytest_gold.policy.run.Run`'s; this module reads pytest's options and
the results.

Runs that do not stop on failures keep the duration order, except that the cases pytest's
own options put first (``--ff``: the previous failures, ``--nf``: new cases) go first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Any

import pytest

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


def stepwise_allowed(config: pytest.Config) -> int:
    """Failures stepwise lets through before it stops (0: not stepwise): --sw stops at the
    first, --sw-skip lets one pass first."""
    if not config.getoption("stepwise", False):
        return 0
    return 2 if config.getoption("stepwise_skip", False) else 1


def stops(result: BatchResult) -> bool:
    """The result holds a ``pytest.exit()``."""
    return any(isinstance(event, ExitRequested) for event in result.events)


def without_left_out(result: BatchResult, left_out: Collection[str]) -> BatchResult:
    """``result`` without what it says about left-out cases (a late teardown error): a
    plain run never ran them."""
    if not left_out:
        return result
    events = [event for event in result.events if _event_nodeid(event) not in left_out]
    return dataclasses.replace(result, events=events)


def summarize_left_out(terminalreporter: Any, left_out: Sequence[str], max_listed: int) -> None:
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
