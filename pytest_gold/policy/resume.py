"""Resuming a campaign: which cases already passed, kept in pytest's cache (pure logic).

A case counts as done once it passed (or xfailed/xpassed as expected) in the latest run
that reached it; failed, errored, skipped, interrupted and never-reached cases are not.
``--gold-resume`` runs only the cases that are not done and reports the others as
*passed-before*. ``--cache-clear`` forgets everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

#: Where the set of done cases lives in pytest's cache.
CACHE_KEY = "gold/passed"
#: Outcome word and terminal category of a case skipped because it passed before.
PASSED_BEFORE = "passed-before"
#: Outcomes after which a case need not run again.
DONE_OUTCOMES = frozenset({"passed", "xfailed", "xpassed", PASSED_BEFORE})


def partition(nodeids: Sequence[str], done: Iterable[str]) -> tuple[list[str], list[str]]:
    """(to run, passed before), each in the given order."""
    done_set = set(done)
    to_run = [nodeid for nodeid in nodeids if nodeid not in done_set]
    before = [nodeid for nodeid in nodeids if nodeid in done_set]
    return to_run, before


def update_done(previous: Iterable[str], outcomes: Mapping[str, str]) -> list[str]:
    """The done set after a run: what this run finished decides; the rest is kept."""
    done = set(previous)
    for nodeid, outcome in outcomes.items():
        if outcome in DONE_OUTCOMES:
            done.add(nodeid)
        else:
            done.discard(nodeid)
    return sorted(done)
