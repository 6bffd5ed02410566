"""Walltime: does a case fit in the time an engine's job has left? (Pure.)

An engine that is a Slurm job ends at its job's time limit, and a case still running then
is lost with it. The rule here decides, for a case of expected duration ``d``, whether
it may start on an engine whose job ends at ``T``, at time ``now``: only if it finishes
before ``T`` with a safety margin,

    now + d * (1 + fraction) + seconds <= T

``fraction`` covers estimates that are a little short (a cached duration measured on
another node), ``seconds`` what is not the case's own time (sending it, the worker's
set-up, the reports coming back, clocks that differ between nodes). A job without a
time limit (``T`` is ``None``) takes any case.

No I/O and no clock: times are seconds given by the caller (the engine check reports
seconds since the epoch; the controller's Run counts in its monotonic clock). The Run's
dispatch applies the rule through :mod:`pytest_gold.policy.runwalltime`.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: What squeue prints for a job's end time when there is none (``squeue -o %e``).
NO_END_TIME = ("N/A", "NONE", "Unknown", "")


@dataclass(frozen=True)
class Margin:
    #: Seconds that are not the case's own: dispatch, worker set-up, reports, clock skew.
    seconds: float = 60.0
    #: How far a case may run past its expected duration (0.1: 10 % longer).
    fraction: float = 0.1

    def __post_init__(self) -> None:
        if not all(value >= 0 and math.isfinite(value) for value in (self.seconds, self.fraction)):
            raise ValueError(f"a margin is not negative: {self}")

    def needed(self, expected: float) -> float:
        """Seconds a case of ``expected`` seconds needs before its job ends."""
        _check_duration(expected)
        return expected * (1 + self.fraction) + self.seconds


def _check_duration(expected: float) -> None:
    if not (expected >= 0 and math.isfinite(expected)):
        raise ValueError(f"an expected duration is a finite number >= 0, not {expected!r}")


def time_left(job_end: float | None, now: float) -> float:
    """Seconds until the job ends (``inf`` without a time limit; negative once past)."""
    return math.inf if job_end is None else job_end - now


def latest_start(expected: float, job_end: float | None, margin: Margin) -> float:
    """The last moment a case of ``expected`` seconds may start on the job's engine."""
    return math.inf if job_end is None else job_end - margin.needed(expected)


def fits(expected: float, job_end: float | None, now: float, margin: Margin) -> bool:
    """May a case of ``expected`` seconds start now on an engine whose job ends at
    ``job_end``?"""
    return now <= latest_start(expected, job_end, margin)


def longest_that_fits(job_end: float | None, now: float, margin: Margin) -> float:
    """The longest expected duration that may start now (0.0: nothing does; ``inf``: no
    time limit). An engine whose shortest remaining case is longer has nothing left to
    do and can be released."""
    left = time_left(job_end, now)
    if math.isinf(left):
        return math.inf
    return max(0.0, (left - margin.seconds) / (1 + margin.fraction))


def expected_duration(
    known: float | None, timeout: float | None, default: float | None = None
) -> float | None:
    """What a case is expected to take, for the rule: its measured duration (e.g. from
    the cache of earlier runs), else its time limit (``@pytest.mark.gold(timeout=...)``,
    ``--gold-timeout``: it cannot run longer), else ``default`` (``None``: unknown)."""
    for value in (known, timeout, default):
        if value is not None:
            _check_duration(value)
            return value
    return None


def parse_job_end(text: str, tz: datetime.tzinfo | None) -> float | None:
    """``squeue -h -j $SLURM_JOB_ID -o %e`` (``2026-11-30T22:58:48``, in the time zone
    squeue runs in, ``tz``; ``None``: this machine's local time) as seconds since the
    epoch; ``None`` for no end time."""
    text = text.strip()
    if text in NO_END_TIME:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a Slurm end time: {text!r}") from None
    if moment.tzinfo is None and tz is not None:
        moment = moment.replace(tzinfo=tz)
    return moment.timestamp()


def shortest_known_case(
    nodeids: Iterable[str], known: Mapping[str, float], limits: Mapping[str, float]
) -> tuple[str, float] | None:
    """The case expected to take least among those whose duration is known (measured,
    else bounded by a finite time limit), and that duration; ``None``: none known."""
    shortest: tuple[str, float] | None = None
    for nodeid in nodeids:
        limit = limits.get(nodeid)
        expected = expected_duration(
            known.get(nodeid), limit if limit is not None and math.isfinite(limit) else None
        )
        if expected is not None and (shortest is None or expected < shortest[1]):
            shortest = (nodeid, expected)
    return shortest
