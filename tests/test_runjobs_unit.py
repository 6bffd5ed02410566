"""The run's Slurm jobs (pytest_gold/launch/runjobs.py) and the watchdog's scancel, with
Slurm's commands faked."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_gold.controller.jobcare import replacement_line
from pytest_gold.controller.progress import (
    Snapshot,
    format_status,
    format_status_short,
    write_status_file,
)
from pytest_gold.launch.runjobs import JOB_POLL_SECONDS, Generation, RunJobs, cancel_jobs
from pytest_gold.launch.watchdog import slurm_job_ids
from pytest_gold.policy.run import EVERY_ENGINE_LOST
from tests.test_run_machine import dispatched, join, make_run


class FakeSlurm:
    """Answers squeue with ``rows``; records every command."""

    def __init__(self, rows: str = "", returncode: int = 0, stderr: str = "") -> None:
        self.rows, self.returncode, self.stderr = rows, returncode, stderr
        self.commands: list[list[str]] = []

    def __call__(self, args: list[str], **kwargs: Any) -> SimpleNamespace:
        self.commands.append(list(args))
        if args[0] == "squeue":
            return SimpleNamespace(stdout=self.rows, stderr=self.stderr, returncode=self.returncode)
        return SimpleNamespace(stdout="", stderr="", returncode=0)


class FakeCluster:
    """ipyparallel's Cluster as far as replacements need it: each start is a new job."""

    def __init__(self) -> None:
        self.engines: dict[str, Any] = {"1": SimpleNamespace(job_id="40", namespace={"jobs": 2})}
        self.started: list[tuple[int, dict[str, Any]]] = []

    def start_engines_sync(self, n: int, namespace: dict[str, Any]) -> str:
        self.started.append((n, namespace))
        set_id = f"set{len(self.started)}"
        self.engines[set_id] = SimpleNamespace(job_id=str(50 + len(self.started)))
        return set_id


def jobs_of(slurm: FakeSlurm, cluster: Any = None, max_jobs: int = 3) -> RunJobs:
    jobs = RunJobs(
        cluster=cluster or FakeCluster(),
        max_jobs=max_jobs,
        first_jobs=2,
        engines_per_job=2,
        limit_seconds=120.0,
        run=slurm,
    )
    jobs.generations.append(Generation("40", 2, 3))  # 3 engines: 2 and 1
    return jobs


def test_squeue_rows_become_the_runs_jobs() -> None:
    slurm = FakeSlurm("40_0|RUNNING|1:05|2:00\n40_1|PENDING|2:00|2:00\n99_0|RUNNING|5:00|9:00\n")
    jobs = jobs_of(slurm)
    assert jobs.counts() is None  # before squeue answered: nothing is shown or decided
    assert jobs.plan(1e6, 10, 5.0) == 0
    assert jobs.poll(0.0)
    assert slurm.commands == [["squeue", "-h", "-r", "-j", "40", "-o", "%i|%T|%L|%l"]]
    assert [(v.job_id, v.engines, v.pending, v.seconds_left) for v in jobs.views] == [
        ("40_0", 2, False, 65.0),
        ("40_1", 1, True, 120.0),
    ]  # 99_0 is not the run's
    assert jobs.counts() == (1, 1)
    assert not jobs.poll(JOB_POLL_SECONDS / 2)  # not asked again so soon
    assert len(slurm.commands) == 1


def test_jobs_purged_from_slurm_are_gone() -> None:
    jobs = jobs_of(FakeSlurm(returncode=1, stderr="slurm_load_jobs error: Invalid job id"))
    jobs.poll(0.0)
    assert jobs.known and jobs.views == []


def test_squeue_failing_decides_nothing() -> None:
    jobs = jobs_of(FakeSlurm(returncode=1, stderr="Unable to contact slurm controller"))
    jobs.poll(0.0)
    assert not jobs.known and jobs.plan(1e6, 10, 5.0) == 0
    assert "Unable to contact" in jobs.problems[0]


def test_replacements_go_through_ipyparallel_one_job_each() -> None:
    cluster = FakeCluster()
    jobs = jobs_of(FakeSlurm("40_0|RUNNING|1:05|2:00\n"), cluster)
    jobs.poll(0.0)
    count = jobs.plan(1e6, 100, 5.0)
    assert count == 2  # max_jobs 3, one running
    assert jobs.submit(count) == ["51", "52"]
    assert cluster.started == [(2, {"jobs": 1}), (2, {"jobs": 1})]  # the profile's template
    assert jobs.all_job_ids() == ["40", "51", "52"]
    assert jobs.counts() == (1, 2)  # queued until squeue says otherwise
    assert "replacement Slurm jobs 51, 52 for the 100 cases left" in replacement_line(
        ["51", "52"], 100
    )


def test_a_refused_replacement_is_noted_not_raised() -> None:
    class Refusing(FakeCluster):
        def start_engines_sync(self, n: int, namespace: dict[str, Any]) -> str:
            raise RuntimeError("sbatch: error: QOSMaxSubmitJobPerUserLimit")

    jobs = jobs_of(FakeSlurm(), Refusing())
    assert jobs.submit(1) == []
    assert "QOSMaxSubmitJobPerUserLimit" in jobs.problems[0]


def test_first_generation_staggered_by_scontrol() -> None:
    slurm = FakeSlurm()
    jobs = jobs_of(slurm)
    assert jobs.stagger_first() == [2, 1]
    assert slurm.commands == [["scontrol", "update", "JobId=40_1", "TimeLimit=1"]]


def test_cancel_every_job_the_run_submitted_once() -> None:
    slurm = FakeSlurm()
    jobs = jobs_of(slurm)
    jobs.submit(1)
    assert jobs.cancel() == ["40", "51"]
    assert jobs.cancel() == []
    assert slurm.commands == [["scancel", "40", "51"]]
    assert jobs.plan(1e6, 10, 5.0) == 0  # nothing submitted after the end


def test_cancel_jobs_without_scancel() -> None:
    def missing(args: list[str], **kwargs: Any) -> None:
        raise FileNotFoundError(2, "No such file", "scancel")

    assert not cancel_jobs(["4"], missing)
    assert cancel_jobs([], missing)


def test_watchdog_reads_every_engine_sets_job_id(tmp_path: Path) -> None:
    cluster_file = tmp_path / "cluster.json"
    sets = {"1": {"job_id": "40"}, "2": {"job_id": "51"}, "3": {"pid": 7}}
    cluster_file.write_text(json.dumps({"engines": {"sets": sets}}))
    assert slurm_job_ids(str(cluster_file)) == ["40", "51"]
    assert slurm_job_ids(str(tmp_path / "missing.json")) == []


def test_run_waits_for_engines_of_queued_jobs() -> None:
    """Every engine left (its job reached its time limit) while a replacement job is
    queued: the run waits for its engines, and the lost case is sent to them."""
    run = make_run(4, retries=1)
    join(run, 0)
    run.tick(0.0)
    assert run.set_engines_coming(True, now=0.5) == []
    run.engine_lost(0, "lost", now=1.0)
    assert run.stop_reason is None and not run.over
    join(run, 1, now=30.0)
    assert dispatched(run.tick(30.0))  # the replacement's engine gets the cases
    assert run.set_engines_coming(False, now=35.0) == []  # an engine is still there
    run.engine_lost(1, "lost", now=40.0)  # the run has no job left: then it stops
    assert run.stop_reason == EVERY_ENGINE_LOST


def test_run_stops_when_engines_stop_coming_after_the_last_one_left() -> None:
    """The last engine left while a job was queued; then the job stopped coming (it was
    cancelled, or left squeue): no engine leaves then, so that change stops the run."""
    run = make_run(4, retries=1)
    join(run, 0)
    run.tick(0.0)
    run.set_engines_coming(True, now=0.5)
    run.engine_lost(0, "lost", now=1.0)
    assert run.set_engines_coming(True, now=5.0) == [] and run.stop_reason is None
    run.set_engines_coming(False, now=10.0)
    assert run.stop_reason == EVERY_ENGINE_LOST and run.stopped
    assert run.set_engines_coming(False, now=15.0) == []  # said once


def test_status_shows_the_jobs() -> None:
    snapshot = Snapshot(
        total=10, done=4, passed=4, failed=0, running=2, engines_busy=2,
        engines_available=2, elapsed_seconds=30.0, eta_seconds=40.0,
        jobs="jobs: 1 running, 2 queued",
    )  # fmt: skip
    assert format_status(snapshot).endswith(", ETA 0:00:40, jobs: 1 running, 2 queued")
    short = format_status_short(snapshot, 90)
    assert short.endswith("jobs: 1 running, 2 queued") and len(short) <= 90
    snapshot.jobs = ""  # not a Slurm run: as before
    assert format_status(snapshot).endswith("ETA 0:00:40")


def test_bad_max_jobs_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--gold", "--gold-max-jobs=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--gold-max-jobs (ini gold_max_jobs) must be a whole number, at least 1, not '0'" in (
        result.stderr.str()
    )
    assert "Traceback" not in result.stderr.str()


def test_status_file_has_jobs_only_on_slurm(tmp_path: Path) -> None:
    snapshot = Snapshot(
        total=1, done=0, passed=0, failed=0, running=0, engines_busy=0,
        engines_available=0, elapsed_seconds=0.0, eta_seconds=None,
    )  # fmt: skip
    write_status_file(tmp_path / "s.json", snapshot, "running")
    assert "jobs" not in json.loads((tmp_path / "s.json").read_text())
    snapshot.jobs = "jobs: 0 running, 2 queued"
    write_status_file(tmp_path / "s.json", snapshot, "running")
    assert json.loads((tmp_path / "s.json").read_text())["jobs"] == "jobs: 0 running, 2 queued"


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, text: str, **kwargs: Any) -> None:
        self.lines.append(text)


def test_job_care_replaces_jobs_while_the_work_does_not_fit() -> None:
    """10 cases of 5 s left, one job whose 2 engines have 20 s left (10 of them usable
    for cases of 5 s): a replacement is submitted, and the run waits for its engines."""
    from pytest_gold.controller.jobcare import JobCare
    from pytest_gold.policy.eta import EngineTime

    cluster = FakeCluster()
    jobs = jobs_of(FakeSlurm("40_0|RUNNING|0:20|2:00\n"), cluster)
    lines = Lines()
    care = JobCare(jobs, lines, grace_seconds=60.0)  # type: ignore[arg-type]
    run = make_run(10)
    run.queue.record([5.0])  # what the cases take, as the run learned it
    care.tick(run, EngineTime(), now=0.0, engines={})
    assert cluster.started == [(2, {"jobs": 1})]
    assert lines.lines == [
        "gold: submitted replacement Slurm job 51 for the 10 cases left (squeue -j 51); "
        "the run cancels it when it ends"
    ]
    assert run.engines_coming
    assert care.status() == "jobs: 1 running, 1 queued"
    care.tick(run, EngineTime(), now=1.0, engines={})  # squeue is not asked again so soon
    assert len(cluster.started) == 1
