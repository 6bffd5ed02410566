"""Walltime-aware dispatch in the Run (pytest_gold/policy/runwalltime.py) and what goes
with it on the controller: the queue's batches that fit, a job's end said once, the
engine's report of its job, and a profile whose jobs are too short for every case."""

from __future__ import annotations

import math
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_gold.controller.jobends import COMPLETING, JobEnds, how_job_ended, in_run_clock
from pytest_gold.controller.walltimecheck import check_time_limit
from pytest_gold.engine import slurmjob
from pytest_gold.launch.slurmstate import job_state
from pytest_gold.policy.run import (
    NO_ENGINE_HAS_TIME,
    Dispatch,
    EngineLostNotice,
    EngineReleased,
    EngineState,
    FailCase,
    Run,
    StopKind,
    summary_of,
)
from pytest_gold.policy.scheduling import DispatchQueue
from pytest_gold.policy.walltime import Margin, shortest_known_case

MARGIN = Margin(seconds=5.0, fraction=0.1)


def make_run(seconds: dict[str, float], retries: int = 1, **kwargs: object) -> Run:
    """Cases of known durations, dispatched longest first as --gold-order=duration does."""
    nodeids = sorted(seconds, key=lambda nodeid: -seconds[nodeid])
    queue = DispatchQueue(nodeids, engine_count=2, target_batch_seconds=0.5, known_seconds=seconds)
    kwargs.setdefault("batches_in_flight", 2)  # an engine holds two batches here
    return Run(queue=queue, retries=retries, margin=MARGIN, **kwargs)  # type: ignore[arg-type]


def join(run: Run, eid: int, job_end: float | None, now: float = 0.0) -> None:
    run.engine_registered(eid, now)
    run.job_ends_at(eid, job_end)
    run.engine_checked(eid, [], now)


def sent(actions: list) -> dict[int, list[str]]:
    """The cases sent to each engine (those of every batch it got, in order)."""
    cases: dict[int, list[str]] = {}
    for action in actions:
        if isinstance(action, Dispatch):
            cases.setdefault(action.engine_id, []).extend(action.batch.nodeids)
    return cases


def test_an_engine_whose_job_ends_soon_gets_only_cases_that_finish_in_time() -> None:
    run = make_run({"long": 100.0, "mid": 30.0, "short": 2.0})
    # 40 s left: 30 s * 1.1 + 5 = 38 fits, 100 s does not; nor does the 2 s case queued
    # behind the 30 s one (32 s * 1.1 + 5 = 40.2)
    join(run, 0, job_end=40.0)
    assert sent(run.tick(0.0)) == {0: ["mid"]}
    run.batch_done(0, summary_of(["mid"], seconds=30.0), now=31.0)
    # 9 s left: 2 s * 1.1 + 5 = 7.2 fits
    assert sent(run.tick(31.0)) == {0: ["short"]}
    run.batch_done(0, summary_of(["short"], seconds=2.0), now=33.0)
    # 7 s left, the 100 s case left: released, and with no other engine the run stops
    actions = run.tick(33.0)
    (released,) = [a for a in actions if isinstance(a, EngineReleased)]
    assert released.engine_id == 0 and released.seconds_left == 7.0
    assert released.shortest_needs == pytest.approx(115.0)  # 100 s * 1.1 + 5
    assert run.engines[0].state is EngineState.RELEASED
    assert run.stop_kind is StopKind.NO_ENGINES and run.not_run == ["long"]
    assert run.stop_reason == NO_ENGINE_HAS_TIME  # not "every engine was lost"


def test_an_engine_without_a_time_limit_takes_any_case() -> None:
    run = make_run({"long": 100.0, "short": 2.0})
    join(run, 0, job_end=20.0)
    join(run, 1, job_end=None)
    # Engine 0 is first in line but the long case goes to engine 1: nothing waits.
    assert sent(run.tick(0.0)) == {0: ["short"], 1: ["long"]}


def test_a_batch_of_short_cases_fits_as_a_whole() -> None:
    """A batch's cases run one after another: their durations add up."""
    run = make_run({f"c{i}": 0.1 for i in range(40)} | {"x": 6.0})
    join(run, 0, job_end=5.0 + 0.1 * 1.1 * 3 + 1e-6)  # room for 3 of them after the margin
    (batch,) = sent(run.tick(0.0)).values()
    assert len(batch) == 3 and "x" not in batch


def test_a_case_of_unknown_duration_is_expected_to_take_its_time_limit() -> None:
    queue = DispatchQueue(["new"], engine_count=1, known_seconds={})
    run = Run(queue=queue, margin=MARGIN, time_limits={"new": 60.0})
    join(run, 0, job_end=50.0)
    (released,) = [a for a in run.tick(0.0) if isinstance(a, EngineReleased)]
    assert released.shortest_needs == pytest.approx(71.0)  # 60 s * 1.1 + 5
    # without a limit, nothing finished yet: only the margin's seconds
    queue = DispatchQueue(["new"], engine_count=1, known_seconds={})
    run = Run(queue=queue, margin=MARGIN)
    join(run, 0, job_end=50.0)
    assert sent(run.tick(0.0)) == {0: ["new"]}


def test_a_job_that_ends_moves_its_cases_without_counting_retries() -> None:
    run = make_run({"a": 3.0, "b": 2.0}, retries=0)
    join(run, 0, job_end=None)
    (batch,) = sent(run.tick(0.0)).values()
    join(run, 1, job_end=None, now=1.0)
    actions = run.job_ended(0, now=1.0)
    assert EngineLostNotice(0, len(batch), len(batch), tuple(batch), job_ended=True) in actions
    assert not any(isinstance(a, FailCase) for a in actions)  # retries=0: still not a failure
    assert run.losses == {}
    assert sent(run.tick(1.0)) == {1: batch}
    # while an engine merely lost (not its job ending) fails the case it ran with
    # retries=0 (the one queued behind never started: not run, the run stopping)
    actions = run.engine_lost(1, "lost", now=2.0)
    assert [a.nodeid for a in actions if isinstance(a, FailCase)] == batch[:1]
    assert run.not_run == batch[1:]


def test_a_second_batch_goes_to_an_engine_whose_job_has_time_for_both() -> None:
    run = make_run({"mid": 30.0, "short": 2.0})
    join(run, 0, job_end=45.0)  # 32 s * 1.1 + 5 = 40.2 fits in 45 s
    actions = run.tick(0.0)
    assert [a.batch.nodeids for a in actions if isinstance(a, Dispatch)] == [["mid"], ["short"]]


def test_a_job_that_ends_after_a_stop_leaves_its_cases_not_run() -> None:
    run = make_run({"a": 3.0})
    join(run, 0, job_end=None)
    run.tick(0.0)
    run.stop_requested(StopKind.INTERRUPT, "interrupted", now=1.0)
    run.job_ended(0, now=2.0)
    assert run.ended == {"a": "not run"} and run.cut_short == [("a", 0)] and run.over


@given(
    st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=30),
    st.floats(min_value=0, max_value=200),
)
def test_next_batch_within_takes_only_what_fits(seconds: list[float], budget: float) -> None:
    known = {f"c{i}": value for i, value in enumerate(seconds)}
    queue = DispatchQueue(list(known), engine_count=2, known_seconds=known)
    batch = queue.next_batch_within(budget, known.__getitem__)
    fitting = [nodeid for nodeid in known if known[nodeid] <= budget]
    if batch is None:
        assert not fitting and len(queue) == len(known)
        return
    assert batch.nodeids and sum(known[n] for n in batch.nodeids) <= budget
    assert batch.nodeids[0] == fitting[0]  # the first that fits, in dispatch order
    assert sorted(queue.remaining() + list(batch.nodeids)) == sorted(known)
    assert queue.next_batch_within(math.inf, known.__getitem__) is not None or not queue


def test_shortest_known_case() -> None:
    assert shortest_known_case(["a", "b", "c"], {"a": 5.0}, {"b": 3.0, "c": math.inf}) == (
        "b",
        3.0,
    )
    assert shortest_known_case(["c"], {}, {}) is None


def test_a_profile_too_short_for_every_known_case_is_bad_input() -> None:
    with pytest.raises(pytest.UsageError) as error:
        check_time_limit("hpc", 60, ["t.py::a", "t.py::b"], {"t.py::a": 90.0}, {}, MARGIN)
    text = str(error.value)
    assert "time limit of 00:01:00 (60 s)" in text and "t.py::a takes 90 s" in text
    assert "nothing was submitted" in text and "--gold-walltime-margin" in text
    # one case fits: the run goes on (the others never start, see the Run)
    check_time_limit(
        "hpc", 60, ["t.py::a", "t.py::b"], {"t.py::a": 90.0, "t.py::b": 1.0}, {}, MARGIN
    )
    check_time_limit("hpc", None, ["t.py::a"], {"t.py::a": 90.0}, {}, MARGIN)  # no limit known
    check_time_limit("hpc", 60, ["t.py::a"], {}, {}, MARGIN)  # nothing known


def test_how_a_job_ended() -> None:
    def said(state: str, reason: str = "None"):
        return {"12_3": (state, reason)}.get

    assert how_job_ended("12_3", said("TIMEOUT", "TimeLimit")) == "reached its time limit"
    # while Slurm ends its processes, only the reason tells a time limit
    assert how_job_ended("12_3", said("COMPLETING", "TimeLimit")) == "reached its time limit"
    assert how_job_ended("12_3", said("COMPLETING")) == COMPLETING  # how: said later
    assert how_job_ended("12_3", said("CANCELLED")) == "was cancelled"
    assert how_job_ended("12_3", said("RUNNING")) == ""  # the engine died alone
    assert how_job_ended("12_3", said("COMPLETED")) == ""  # its engines ended first
    assert how_job_ended("12_3", {}.get) == ""  # Slurm forgot it: a lost engine
    assert how_job_ended("", said("TIMEOUT")) == ""  # not a Slurm job


def test_a_jobs_end_is_said_once_when_its_last_engine_is_gone() -> None:
    states = {"4711": ("TIMEOUT", "TimeLimit")}
    ends = JobEnds(states.get)
    ends.note("4711", "reached its time limit", 0)
    ends.note("4711", "", 2)
    assert ends.lines(live_jobs=["4711"]) == []  # another engine of it is still there
    ends.note("4711", "", 1)
    assert ends.lines(live_jobs=[]) == [
        "gold: job 4711 reached its time limit; 3 cases moved to other engines"
    ]
    assert ends.lines(live_jobs=[]) == []
    # a job still completing is said once Slurm says how it ended (at the end at the latest)
    states["12_0"] = ("COMPLETING", "None")
    ends.note("12_0", COMPLETING, 1)
    assert ends.lines(live_jobs=[]) == []
    states["12_0"] = ("CANCELLED", "None")
    assert ends.lines(live_jobs=[]) == [
        "gold: job 12_0 was cancelled; 1 case moved to other engines"
    ]
    states["13_0"] = ("COMPLETING", "None")
    ends.note("13_0", COMPLETING, 0)
    assert ends.lines(live_jobs=["13_0"], final=True) == ["gold: job 13_0 ended"]
    assert in_run_clock(1000.0, now=5.0, wall_now=990.0) == 15.0
    assert in_run_clock(None, 5.0, 990.0) is None


def test_the_engine_reports_its_job(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"SLURM_JOB_ID": "78", "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "1"}
    assert slurmjob.job_label(env) == "77_1"
    assert slurmjob.job_label({"SLURM_JOB_ID": "78"}) == "78"
    assert slurmjob.end_from_environment({"SLURM_JOB_END_TIME": "1796097300"}) == 1796097300.0
    assert slurmjob.end_from_environment({}) is None
    slurmjob.job_facts.cache_clear()
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert slurmjob.job_facts() == ("", None)
    slurmjob.job_facts.cache_clear()


def test_scontrol_state_is_read() -> None:
    def fake(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(
            args,
            0,
            "JobId=77 JobName=x JobState=COMPLETING Reason=TimeLimit Dependency=(null)\n",
            "",
        )

    def missing(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError("scontrol")

    assert job_state("77", fake) == ("COMPLETING", "TimeLimit")
    assert job_state("77", missing) is None
