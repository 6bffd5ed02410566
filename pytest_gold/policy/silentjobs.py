"""Slurm jobs that run but whose engines never register (pure).

A job can start on a node where its engines cannot: a Python without pytest-gold, a
module not loaded, a node that cannot reach the controller. Slurm calls it RUNNING, so a
run that counted it as "engines coming" would wait for it until its time limit (hours),
and then submit a replacement that fails the same way, and so on.

So a job of the run that has been running for ``grace_seconds`` (``--gold-wait``: what
a run grants engines to register at its start) without one of its engines answering the
engine check is *silent*: the run cancels it and no longer waits for it. After
:data:`SILENT_JOBS_IN_A_ROW` silent jobs with no job in between whose engines answered,
the run submits no more replacements: the next would most likely fail the same way.
From then on a running job whose engines have all registered brings no more (its end
brings no replacement): a run whose engines are gone or released stops instead of
waiting for that job's time limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pytest_gold.policy.jobplan import JobView

#: Silent jobs in a row after which a run submits no more replacement jobs.
SILENT_JOBS_IN_A_ROW = 2


@dataclass
class SilentJobs:
    """What the run knows of its jobs' engines (see the module's docstring)."""

    #: How long a running job's engines have to answer the engine check.
    grace_seconds: float
    #: When each job was first seen running (forgotten when it is queued again).
    running_since: dict[str, float] = field(default_factory=dict)
    #: Jobs one of whose engines answered the engine check.
    heard: set[str] = field(default_factory=set)
    #: How many engines of each job answered it.
    registered: Counter[str] = field(default_factory=Counter)
    #: Jobs found silent, in the order found.
    silent: list[str] = field(default_factory=list)
    #: Silent jobs since the last job that was heard from.
    in_a_row: int = 0

    def look(self, views: Sequence[JobView], answered: Iterable[str], now: float) -> list[str]:
        """The jobs found silent now. ``views``: the run's jobs queued or running, as
        squeue showed them last; ``answered``: the job of each engine that answered the
        engine check so far (a job once per engine)."""
        self.registered = Counter(job for job in answered if job)
        for job in self.registered:
            if job not in self.heard:
                self.heard.add(job)
                self.in_a_row = 0
        found = []
        for view in views:
            job = view.job_id
            if view.pending:
                self.running_since.pop(job, None)  # requeued: its start is still to come
                continue
            if job in self.heard or job in self.silent:
                continue
            since = self.running_since.setdefault(job, now)
            if now - since >= self.grace_seconds:
                self.silent.append(job)
                self.in_a_row += 1
                found.append(job)
        return found

    @property
    def gave_up(self) -> bool:
        """Whether replacements stop: the last :data:`SILENT_JOBS_IN_A_ROW` jobs that
        ran were all silent."""
        return self.in_a_row >= SILENT_JOBS_IN_A_ROW

    def coming(self, views: Sequence[JobView]) -> bool:
        """Whether any job queued or running may still bring engines: queued, or running
        with engines yet to register, or (while the run replaces jobs) running at all:
        its end brings a replacement. Never a silent one."""
        return any(
            view.job_id not in self.silent
            and (view.pending or self.registered[view.job_id] < view.engines or not self.gave_up)
            for view in views
        )


def silent_line(job: str, grace_seconds: float, log_pattern: str) -> str:
    """What the terminal says of a silent job it cancelled."""
    return (
        f"gold: Slurm job {job} ran for {grace_seconds:g} s (--gold-wait) and none of its "
        f"engines registered; cancelled it (its engines' output: "
        f"{log_pattern.format(job=job)})"
    )


def gave_up_line(silent: Sequence[str]) -> str:
    """What the terminal says when the run stops replacing jobs."""
    jobs = ", ".join(silent[-SILENT_JOBS_IN_A_ROW:])
    return (
        f"gold: no more replacement Slurm jobs: the engines of the last "
        f"{SILENT_JOBS_IN_A_ROW} jobs that ran ({jobs}) never registered. Check that "
        "the engines' Python on the compute nodes has pytest-gold installed and reaches "
        "the controller (the jobs' output names the error), or raise --gold-wait for "
        "nodes slow to start"
    )
