"""Replacement jobs and staggered time limits (pytest_gold/policy/jobplan.py): pure rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pytest_gold.policy.jobplan import (
    STAGGER_FRACTION,
    JobView,
    capacity_seconds,
    describe_jobs,
    job_counts,
    replacements,
    staggered_minutes,
)


def plan(jobs: list[JobView], work: float | None, cases: int = 10, max_jobs: int = 4) -> int:
    return replacements(
        jobs,
        work_seconds=work,
        cases_left=cases,
        max_jobs=max_jobs,
        keep_jobs=2,
        engines_per_job=2,
        job_seconds=120.0,
        margin_seconds=10.0,
    )


def running(left: float, engines: int = 2) -> JobView:
    return JobView(f"1_{left}", engines, pending=False, seconds_left=left)


def test_staggered_limits() -> None:
    assert staggered_minutes(2, 2) == [2, 1]  # the sweep test's jobs: a minute apart
    assert staggered_minutes(120, 4) == [120, 110, 100, 90]  # 2 h: at most a quarter
    assert staggered_minutes(10, 1) == [10]
    assert staggered_minutes(1, 3) == [1, 1, 1]  # nothing shorter than a minute
    assert staggered_minutes(4, 8) == [4, 3, 2, 2, 2, 2, 2, 2]  # never below half


@given(st.integers(1, 5000), st.integers(1, 64))
def test_staggered_limits_never_longer_and_spread(limit: int, jobs: int) -> None:
    minutes = staggered_minutes(limit, jobs)
    assert len(minutes) == jobs
    assert minutes[0] == limit  # the first job keeps what the profile asks
    assert minutes == sorted(minutes, reverse=True)
    assert all(1 <= m <= limit for m in minutes)
    assert min(minutes) >= min(limit, max(1, -(-limit // 2)))
    # the spread is at most a quarter of the limit, or steps of one minute (short limits)
    assert limit - min(minutes) <= max(limit * STAGGER_FRACTION, jobs - 1)


def test_nothing_when_the_work_fits() -> None:
    # 2 jobs of 2 engines with 100 s left: 2*2*90 = 360 engine-seconds before the margin
    jobs = [running(100), running(100)]
    assert capacity_seconds(jobs, 10.0) == 360.0
    assert plan(jobs, 300.0) == 0
    assert plan(jobs, 360.0) == 0


def test_replacements_cover_the_deficit_up_to_max_jobs() -> None:
    jobs = [running(100)]  # 180 engine-seconds left; a new job gives 2*110 = 220
    assert plan(jobs, 181.0) == 1
    assert plan(jobs, 180.0 + 220.0 + 1) == 2
    assert plan(jobs, 10_000.0) == 3  # at most 4 jobs at once
    assert plan(jobs, 10_000.0, max_jobs=1) == 0
    assert plan(jobs, 10_000.0, cases=0) == 0  # nothing left to do


def test_pending_jobs_count_with_their_whole_limit() -> None:
    queued = JobView("7_0", 2, pending=True, seconds_left=120.0)
    assert plan([running(100), queued], 180.0 + 220.0) == 0


def test_unknown_work_keeps_the_first_generations_size() -> None:
    assert plan([running(100)], None) == 1
    assert plan([running(100), running(50)], None) == 0
    assert plan([], None, max_jobs=1) == 1


def test_no_job_and_cases_left_gets_one() -> None:
    assert plan([], 0.0) == 1


@given(
    st.lists(st.tuples(st.integers(1, 8), st.booleans(), st.floats(0, 10_000)), max_size=8),
    st.one_of(st.none(), st.floats(0, 1e6)),
    st.integers(0, 1000),
    st.integers(1, 12),
)
def test_never_more_than_max_jobs_and_none_when_done(
    shape: list[tuple[int, bool, float]], work: float | None, cases: int, max_jobs: int
) -> None:
    jobs = [JobView(f"{i}_0", e, p, s) for i, (e, p, s) in enumerate(shape)]
    count = plan(jobs, work, cases, max_jobs)
    assert 0 <= count <= max(max_jobs - len(jobs), 0)
    if cases == 0:
        assert count == 0
    if work is not None and jobs and work <= capacity_seconds(jobs, 10.0):
        assert count == 0  # the work fits the engines there are


@given(st.floats(0, 1e5), st.floats(0, 1e5))
def test_more_work_never_fewer_jobs(less: float, more: float) -> None:
    less, more = sorted((less, more))
    jobs = [running(60)]
    assert plan(jobs, less) <= plan(jobs, more)


def test_counts_and_words() -> None:
    jobs = [running(10), JobView("2_0", 2, True, 120.0), JobView("2_1", 2, True, 120.0)]
    assert job_counts(jobs) == (1, 2)
    assert describe_jobs(*job_counts(jobs)) == "jobs: 1 running, 2 queued"
