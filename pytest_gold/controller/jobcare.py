"""The run's Slurm jobs during the run: replacements as jobs end, counts for the status.

Every :data:`~pytest_gold.launch.runjobs.JOB_POLL_SECONDS` the driver's loop lets
:class:`JobCare` look at squeue; with the work left (the durations the run knows, as the
ETA uses them) it asks :func:`pytest_gold.policy.jobplan.replacements` how many jobs to
submit, and submits them through ipyparallel. While jobs of the run are queued or
running, a run whose engines all left waits for theirs (``Run.engines_coming``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest_gold.policy.silentjobs as silentjobs
from pytest_gold.controller.terminal import Terminal
from pytest_gold.launch.cluster import interrupts_deferred
from pytest_gold.launch.runjobs import RunJobs, cancel_jobs, run_jobs_of
from pytest_gold.policy.eta import EngineTime, estimate_eta
from pytest_gold.policy.jobplan import describe_jobs
from pytest_gold.policy.run import Run
from pytest_gold.policy.runtypes import Action
from pytest_gold.protocol.messages import EngineInfo

#: A case must end this long before its job's time limit (Slurm's signal, the report
#: on its way back), on top of the longest case expected.
JOB_END_SLACK_SECONDS = 5.0


def work_left(run: Run, engine_time: EngineTime) -> tuple[float | None, int, float]:
    """Engine-seconds of work left (``None``: not known), cases not finished, and the
    longest case expected among them."""
    queue = run.queue
    waiting = [nodeid for batch in run.queued_on_engines for nodeid in batch.nodeids]
    queued = [queue.expected_seconds(nodeid) for nodeid in [*queue.remaining(), *waiting]]
    running: list[float | None] = []
    cases = len(queued)
    longest = 0.0
    for eid, batch in run.busy.items():
        expected = [queue.expected_seconds(nodeid) for nodeid in batch.nodeids]
        cases += len(expected)
        known = [seconds for seconds in expected if seconds is not None]
        longest = max([longest, *known])
        running.append(engine_time.left(eid, known) if len(known) == len(expected) else None)
    longest = max([longest, *(seconds for seconds in queued if seconds is not None)])
    # One engine: the work itself (no fewer seconds than the longest piece).
    work = estimate_eta(queued, running, 1, engine_time.overhead)
    return work, cases, longest


class JobCare:
    """Looks after the run's jobs (see the module's docstring)."""

    def __init__(self, jobs: RunJobs, terminal: Terminal, grace_seconds: float) -> None:
        self.jobs = jobs
        self.terminal = terminal
        #: Replacement jobs submitted during the run.
        self.replaced: list[str] = []
        #: Jobs that run with no engine registering (cancelled, not waited for).
        self.silent = silentjobs.SilentJobs(grace_seconds)

    def status(self) -> str:
        """``jobs: 1 running, 2 queued`` (empty before squeue answered)."""
        counts = self.jobs.counts()
        return describe_jobs(*counts) if counts is not None else ""

    def poll(self, now: float) -> bool:
        """Ask squeue if it is time to (while waiting for engines); whether it did."""
        if not self.jobs.due(now):
            return False
        self.jobs.poll(now)
        return True

    def tick(
        self, run: Run, engine_time: EngineTime, now: float, engines: Mapping[int, EngineInfo]
    ) -> list[Action]:
        """``engines``: what the engines that answered the engine check said of themselves
        (their Slurm jobs among it); read only when squeue was asked. Returns the run's
        stop when its last engines left while jobs were still coming and none is now
        (:meth:`Run.set_engines_coming`)."""
        if run.stopped or not self.poll(now):
            return []
        self.cancel_silent([info.slurm_job for info in engines.values()], now)
        work, cases, longest = work_left(run, engine_time)
        count = self.jobs.plan(work, cases, longest + JOB_END_SLACK_SECONDS)
        if count and not self.silent.gave_up:
            submitted = self.jobs.submit(count)
            if submitted:
                self.replaced += submitted
                self.terminal.write_line(replacement_line(submitted, cases))
        coming = self.silent.coming(self.jobs.views) and not self.jobs.cancelled
        return run.set_engines_coming(coming, now)

    def cancel_silent(self, answered: Iterable[str], now: float) -> None:
        """Cancel the jobs that run with no engine registering (see
        :mod:`pytest_gold.policy.silentjobs`); say when the run stops replacing jobs."""
        if not self.jobs.known:
            return
        gave_up = self.silent.gave_up
        found = self.silent.look(self.jobs.views, answered, now)
        if not found:
            return
        cancel_jobs(found, self.jobs.run)
        for job in found:
            self.terminal.write_line(
                silentjobs.silent_line(job, self.silent.grace_seconds, self.jobs.output_of(job))
            )
        if self.silent.gave_up and not gave_up:
            self.terminal.write_line(silentjobs.gave_up_line(self.silent.silent))


def replacement_line(job_ids: list[str], cases: int) -> str:
    plural = "s" if len(job_ids) != 1 else ""
    return (
        f"gold: submitted replacement Slurm job{plural} {', '.join(job_ids)} for the "
        f"{cases} cases left (squeue -j {','.join(job_ids)}); the run cancels "
        f"{'them' if plural else 'it'} when it ends"
    )


def job_care(
    handle: Any, max_jobs: int | None, terminal: Terminal, grace_seconds: float
) -> JobCare | None:
    """For a cluster the run started from a Slurm profile: its jobs looked after, the
    first generation's time limits staggered. ``None`` for any other cluster (an attached
    one's jobs are not the run's)."""
    if not handle.owned or handle.cluster is None or not handle.slurm_jobs:
        return None
    jobs = run_jobs_of(handle.cluster, max_jobs)
    if jobs is None:
        return None
    log = handle.log

    @contextlib.contextmanager
    def around_ipyparallel() -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            if log is not None:
                stack.enter_context(log.capturing_stderr())
            stack.enter_context(interrupts_deferred())
            yield

    jobs.around_ipyparallel = around_ipyparallel
    jobs.stagger_first()
    return JobCare(jobs, terminal, grace_seconds)
