"""Slurm jobs that run while none of their engines registers (policy/silentjobs.py), and
what the run's job care does with them (cancel, stop replacing), with Slurm faked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import pytest_gold.policy.silentjobs as silentjobs
from pytest_gold.controller.jobcare import JobCare
from pytest_gold.launch.runjobs import JOB_POLL_SECONDS
from pytest_gold.policy.eta import EngineTime
from pytest_gold.policy.jobplan import JobView
from pytest_gold.policy.runtypes import EVERY_ENGINE_LOST
from tests.test_run_machine import join, make_run
from tests.test_runjobs_unit import FakeCluster, FakeSlurm, Lines, jobs_of

GRACE = 60.0


def running(job: str) -> JobView:
    return JobView(job, 2, pending=False, seconds_left=600.0)


def queued(job: str) -> JobView:
    return JobView(job, 2, pending=True, seconds_left=600.0)


def test_a_running_job_is_silent_after_the_grace_without_an_engine() -> None:
    jobs = silentjobs.SilentJobs(GRACE)
    assert jobs.look([running("7_0")], [], now=100.0) == []  # first seen running
    assert jobs.look([running("7_0")], [], now=100.0 + GRACE - 1) == []
    assert jobs.look([running("7_0")], [], now=100.0 + GRACE) == ["7_0"]
    assert jobs.look([running("7_0")], [], now=100.0 + 2 * GRACE) == []  # found once
    assert not jobs.coming([running("7_0")])


def test_a_job_whose_engine_answered_is_never_silent() -> None:
    jobs = silentjobs.SilentJobs(GRACE)
    jobs.look([running("7_0"), running("7_1")], ["7_1"], now=0.0)
    assert jobs.look([running("7_0"), running("7_1")], [], now=GRACE) == ["7_0"]
    assert jobs.coming([running("7_0"), running("7_1")])


def test_the_grace_counts_from_the_start_not_from_the_queue() -> None:
    """A queued job waits as long as the queue says; a requeued one starts again."""
    jobs = silentjobs.SilentJobs(GRACE)
    assert jobs.look([queued("7_0")], [], now=0.0) == []
    assert jobs.look([queued("7_0")], [], now=10 * GRACE) == []
    assert jobs.look([running("7_0")], [], now=10 * GRACE) == []
    assert jobs.look([queued("7_0")], [], now=10.5 * GRACE) == []  # requeued
    assert jobs.look([running("7_0")], [], now=11 * GRACE) == []
    assert jobs.look([running("7_0")], [], now=12 * GRACE) == ["7_0"]


def test_replacements_stop_after_silent_jobs_in_a_row_and_a_heard_job_resets() -> None:
    jobs = silentjobs.SilentJobs(GRACE)
    jobs.look([running("1_0")], [], now=0.0)
    jobs.look([running("1_0")], [], now=GRACE)
    assert jobs.in_a_row == 1 and not jobs.gave_up
    jobs.look([running("2_0")], ["2_0"], now=GRACE)  # this one's engines answered
    assert jobs.in_a_row == 0
    for job in ("3_0", "4_0")[: silentjobs.SILENT_JOBS_IN_A_ROW]:
        jobs.look([running(job)], [], now=2 * GRACE)
        jobs.look([running(job)], [], now=3 * GRACE)
    assert jobs.gave_up
    assert jobs.silent == ["1_0", "3_0", "4_0"]


def test_once_it_gave_up_a_job_whose_engines_all_registered_brings_no_more() -> None:
    """While the run replaces jobs, a running job counts as engines coming even with all
    its engines there (its end brings a replacement); once it gave up, only a queued job
    or one with engines yet to register does: a run whose engines are gone or released
    stops rather than wait for the job's time limit."""
    jobs = silentjobs.SilentJobs(GRACE)
    answered = ["1_0", "1_0", "1_1"]  # 1_0: both engines; 1_1: one of two
    jobs.look([running("1_0"), running("1_1")], answered, now=0.0)
    assert jobs.coming([running("1_0")])
    for job in ("2_0", "3_0")[: silentjobs.SILENT_JOBS_IN_A_ROW]:
        jobs.look([running(job)], answered, now=GRACE)
        jobs.look([running(job)], answered, now=2 * GRACE)
    assert jobs.gave_up
    assert not jobs.coming([running("1_0")])
    assert jobs.coming([running("1_1")])
    assert jobs.coming([queued("4_0")])


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.booleans(), st.booleans(), st.floats(0, 200)),
        max_size=40,
    )
)
def test_only_jobs_that_ran_a_grace_unheard_are_found(steps: list) -> None:
    """Whatever squeue shows in whatever order: a job is found silent at most once, only
    if no engine of it answered before, and only once it has run for the grace."""
    jobs = silentjobs.SilentJobs(GRACE)
    now = 0.0
    heard: set[str] = set()
    for index, pending, answered, pause in steps:
        now += pause
        job = f"9_{index}"
        if answered:
            heard.add(job)
        since = jobs.running_since.get(job, now)
        found = jobs.look([JobView(job, 1, pending, 60.0)], [job] if answered else [], now)
        if found:
            assert found == [job] and job not in heard and not pending
            assert now - since >= GRACE
    assert len(jobs.silent) == len(set(jobs.silent))


def job_care(rows: str, max_jobs: int) -> tuple[JobCare, FakeSlurm, FakeCluster, Lines]:
    """The run's job care on a faked Slurm whose squeue answers ``rows``."""
    slurm, cluster, lines = FakeSlurm(rows), FakeCluster(), Lines()
    jobs = jobs_of(slurm, cluster, max_jobs=max_jobs)
    care = JobCare(jobs, lines, grace_seconds=GRACE)  # type: ignore[arg-type]
    return care, slurm, cluster, lines


def test_job_care_cancels_a_silent_job_and_stops_waiting_for_it() -> None:
    """One job, running, no engine of it ever answers: after --gold-wait it is
    scancelled by id, the terminal names its output, and the run no longer counts on it."""
    care, slurm, _, lines = job_care("40_0|RUNNING|9:00|10:00\n", max_jobs=1)
    run = make_run(4)
    care.tick(run, EngineTime(), now=0.0, engines={})
    assert run.engines_coming
    care.tick(run, EngineTime(), now=GRACE + JOB_POLL_SECONDS, engines={})
    assert ["scancel", "40_0"] in slurm.commands
    assert not run.engines_coming
    assert lines.lines[-1].startswith(
        "gold: Slurm job 40_0 ran for 60 s (--gold-wait) and none of its engines registered"
    )
    assert "sacct -j 40_0" in lines.lines[-1]  # a profile not made by pytest-gold


def test_job_care_submits_no_replacement_once_it_gave_up() -> None:
    rows = "40_0|RUNNING|9:00|10:00\n40_1|RUNNING|9:00|10:00\n"
    care, slurm, cluster, lines = job_care(rows, max_jobs=3)
    run = make_run(10)
    run.queue.record([500.0])  # far more work than the jobs can do: replacements wanted
    care.tick(run, EngineTime(), now=0.0, engines={})
    assert len(cluster.started) == 1  # the plan wants one more job while all is well
    slurm.rows = "40_0|RUNNING|8:00|10:00\n40_1|RUNNING|8:00|10:00\n"
    care.tick(run, EngineTime(), now=GRACE + JOB_POLL_SECONDS, engines={})
    assert any(line.startswith("gold: no more replacement Slurm jobs") for line in lines.lines)
    started = len(cluster.started)
    slurm.rows = ""  # the silent jobs are gone: the plan would replace them
    care.tick(run, EngineTime(), now=2 * GRACE, engines={})
    assert len(cluster.started) == started


def test_a_run_whose_engines_left_stops_once_the_job_it_waited_for_is_silent() -> None:
    """The run's last engine left while a job of it was running (engines coming): the
    run waits. When that job turns out silent and is cancelled, nothing is coming any
    more: the run stops then, rather than waiting for an engine event that never comes."""
    care, _, _, _ = job_care("40_0|RUNNING|9:00|10:00\n", max_jobs=1)
    run = make_run(4, retries=1)
    join(run, 0)
    run.tick(0.0)
    assert care.tick(run, EngineTime(), now=0.0, engines={}) == []
    run.engine_lost(0, "lost", now=1.0)
    assert run.stop_reason is None and not run.over
    care.tick(run, EngineTime(), now=GRACE + JOB_POLL_SECONDS, engines={})
    assert run.stop_reason == EVERY_ENGINE_LOST and run.over
    assert set(run.not_run) == run.selected
