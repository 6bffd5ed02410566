"""The walltime rule (pytest_gold/policy/walltime.py): a case starts only where it can finish."""

from __future__ import annotations

import datetime
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_gold.policy.walltime import (
    Margin,
    expected_duration,
    fits,
    latest_start,
    longest_that_fits,
    parse_job_end,
    time_left,
)

DURATIONS = st.floats(min_value=0, max_value=1e6, allow_nan=False)
TIMES = st.floats(min_value=0, max_value=2e9, allow_nan=False)
MARGINS = st.builds(
    Margin,
    seconds=st.floats(min_value=0, max_value=3600, allow_nan=False),
    fraction=st.floats(min_value=0, max_value=2, allow_nan=False),
)
#: Floating-point slack for the comparisons below (times up to 2e9 s).
EPSILON = 1e-3


def test_examples() -> None:
    margin = Margin(seconds=60, fraction=0.1)
    end = 10_000.0
    # 1000 s with 10 % and 60 s: needs 1160 s, so the latest start is 8840.
    assert latest_start(1000, end, margin) == pytest.approx(8840)
    assert fits(1000, end, now=8840, margin=margin)
    assert not fits(1000, end, now=8841, margin=margin)
    assert longest_that_fits(end, now=8840, margin=margin) == pytest.approx(1000)
    assert longest_that_fits(end, now=9990, margin=margin) == 0.0  # release the engine
    assert fits(1e9, None, now=0, margin=margin)  # no time limit
    assert time_left(None, 5) == math.inf


@given(DURATIONS, TIMES, TIMES, MARGINS)
def test_a_case_that_fits_finishes_before_its_job_ends(
    expected: float, end: float, now: float, margin: Margin
) -> None:
    if fits(expected, end, now, margin):
        # Even running 'fraction' longer than expected, it ends 'seconds' before the job.
        assert now + expected * (1 + margin.fraction) <= end - margin.seconds + EPSILON


@given(DURATIONS, DURATIONS, TIMES, TIMES, MARGINS)
def test_shorter_cases_fit_where_longer_ones_do(
    shorter: float, longer: float, end: float, now: float, margin: Margin
) -> None:
    shorter, longer = sorted((shorter, longer))
    if fits(longer, end, now, margin):
        assert fits(shorter, end, now, margin)


@given(DURATIONS, TIMES, TIMES, TIMES, MARGINS)
def test_what_fits_later_fits_earlier(
    expected: float, end: float, earlier: float, later: float, margin: Margin
) -> None:
    earlier, later = sorted((earlier, later))
    if fits(expected, end, later, margin):
        assert fits(expected, end, earlier, margin)


@given(DURATIONS, TIMES, TIMES, MARGINS)
def test_longest_that_fits_agrees_with_fits(
    expected: float, end: float, now: float, margin: Margin
) -> None:
    longest = longest_that_fits(end, now, margin)
    if expected < longest * (1 - 1e-9) - EPSILON:
        assert fits(expected, end, now, margin)
    if expected > longest * (1 + 1e-9) + EPSILON:
        assert not fits(expected, end, now, margin)


@given(DURATIONS, TIMES, MARGINS)
def test_no_time_limit_takes_every_case(expected: float, now: float, margin: Margin) -> None:
    assert fits(expected, None, now, margin)
    assert longest_that_fits(None, now, margin) == math.inf


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bad_durations_are_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        fits(bad, 100.0, 0.0, Margin())
    with pytest.raises(ValueError):
        Margin(seconds=bad)


def test_expected_duration_prefers_what_was_measured() -> None:
    assert expected_duration(12.0, 300.0, 60.0) == 12.0
    assert expected_duration(None, 300.0, 60.0) == 300.0  # its time limit bounds it
    assert expected_duration(None, None, 60.0) == 60.0
    assert expected_duration(None, None) is None


def test_squeue_end_time() -> None:
    utc = datetime.timezone.utc
    assert (
        parse_job_end("2026-11-30T22:58:48\n", utc)
        == datetime.datetime(2026, 11, 30, 22, 58, 48, tzinfo=utc).timestamp()
    )
    assert parse_job_end("N/A", utc) is None
    with pytest.raises(ValueError, match="not a Slurm end time"):
        parse_job_end("soon", utc)
