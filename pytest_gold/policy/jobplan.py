"""The Slurm jobs of a run: how many replacements to submit, and staggered time limits (pure).

A run on a Slurm profile gets its engines from jobs that end at their time limit. While
work remains, jobs that ended are replaced, up to ``--gold-max-jobs`` of the run's jobs
queued or running at once, but only as many as the work left needs: when what the jobs
there are can still do before their time limits covers the work left (engine-seconds,
from the durations the run knows, see :mod:`pytest_gold.policy.eta`), nothing more is
submitted.

So that not all engines leave at once, the first generation's jobs (one job array, all
with the profile's time limit) get time limits a little apart: job ``i`` of the array
ends ``i`` steps earlier, the steps together at most :data:`STAGGER_FRACTION` of the
limit. Replacements then start at different times too, and keep that spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: The first generation's time limits spread over at most this share of the profile's.
STAGGER_FRACTION = 0.25
#: Slurm keeps time limits in whole minutes.
SECONDS_PER_MINUTE = 60
#: A job never left with less than this share of the profile's time limit.
SHORTEST_SHARE = 0.5


@dataclass(frozen=True)
class JobView:
    """One job of the run's engines (an array task), as squeue last showed it."""

    job_id: str
    engines: int
    #: Waiting in the queue (else running).
    pending: bool
    #: What is left of its time limit (for a pending job: all of it).
    seconds_left: float


def staggered_minutes(limit_minutes: int, jobs: int) -> list[int]:
    """The time limits of a first generation of ``jobs`` jobs whose profile asks for
    ``limit_minutes`` each: the first keeps it, each next one ends a step earlier. A step
    is a whole minute at least (Slurm's unit), the steps together at most
    :data:`STAGGER_FRACTION` of the limit when that is a minute or more; no job gets less
    than :data:`SHORTEST_SHARE` of the limit. Short limits (2 minutes) still stagger by a
    minute: without it, every engine would leave at once."""
    if jobs <= 1 or limit_minutes <= 1:
        return [limit_minutes] * max(jobs, 0)
    spread = limit_minutes * STAGGER_FRACTION
    step = max(1, math.floor(spread / (jobs - 1)))
    shortest = max(1, math.ceil(limit_minutes * SHORTEST_SHARE))
    return [max(limit_minutes - task * step, shortest) for task in range(jobs)]


def capacity_seconds(jobs: Sequence[JobView], margin_seconds: float) -> float:
    """Engine-seconds the jobs can still give: each engine until ``margin_seconds`` before
    its job's end (a case must finish before the time limit, not at it)."""
    return sum(job.engines * max(job.seconds_left - margin_seconds, 0.0) for job in jobs)


def replacements(
    jobs: Sequence[JobView],
    *,
    work_seconds: float | None,
    cases_left: int,
    max_jobs: int,
    keep_jobs: int,
    engines_per_job: int,
    job_seconds: float,
    margin_seconds: float,
) -> int:
    """How many jobs to submit now.

    ``jobs``: the run's jobs queued or running; ``work_seconds``: engine-seconds of work
    left (``None``: not known yet); ``cases_left``: cases not finished; ``max_jobs``: the
    most jobs at once (--gold-max-jobs); ``keep_jobs``: the first generation's size, kept
    up while the work left is not known; a new job runs ``engines_per_job`` engines for
    ``job_seconds``.
    """
    slots = max_jobs - len(jobs)
    if cases_left <= 0 or slots <= 0:
        return 0
    if work_seconds is None:
        return min(slots, max(keep_jobs - len(jobs), 0))
    deficit = work_seconds - capacity_seconds(jobs, margin_seconds)
    if deficit <= 0:
        return 0 if jobs else 1  # cases left and no job: one, whatever the estimate says
    each = engines_per_job * max(job_seconds - margin_seconds, 1.0)
    return min(slots, math.ceil(deficit / each))


def job_counts(jobs: Sequence[JobView]) -> tuple[int, int]:
    """Running and queued jobs."""
    queued = sum(1 for job in jobs if job.pending)
    return len(jobs) - queued, queued


def describe_jobs(running: int, queued: int) -> str:
    """For the status line: ``jobs: 1 running, 2 queued``."""
    return f"jobs: {running} running, {queued} queued"
