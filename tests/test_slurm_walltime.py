"""Time limits on a real single-node Slurm (``.ci/slurm-setup``): no case starts on an
engine whose job ends before it can finish, a job that ends (scancel, its time limit)
moves its cases elsewhere without failures, and a profile whose jobs are too short for
every known case is refused before anything is submitted. See docs/slurm.rst, "Time
limits"."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_slurm import (  # noqa: F401  (fixtures)
    ipython_dir,
    job_ids,
    profile_jobs,
    refused_run,
    run,
    slurm,
    wait_until_gone,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

#: How long the test waits for the inner run's engines, then for the run to end.
INNER_SECONDS = 240
POLL_SECONDS = 0.2
MARKERS_ENV = "WALLTIME_MARKERS"

#: Each case records where (which Slurm job) and when it ran.
RECORD = """
    import json, os, pathlib, time
    import pytest

    MARKERS = pathlib.Path(os.environ["WALLTIME_MARKERS"])

    def record(i, event):
        env = os.environ
        job = env.get("SLURM_ARRAY_JOB_ID", "") + "_" + env.get("SLURM_ARRAY_TASK_ID", "")
        line = json.dumps({"case": i, "event": event, "job": job, "time": time.time()})
        with open(MARKERS / "log", "a") as log:
            log.write(line + "\\n")

    def wait_for_go():
        deadline = time.monotonic() + 150
        while not (MARKERS / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
"""
#: The scancel test: cases wait for "go", so that they run when the outer test acts.
CASES = (
    RECORD
    + """
    @pytest.mark.parametrize("i", range(8))
    def test_case(i):
        record(i, "start")
        wait_for_go()
        record(i, "end")
        assert i % 5 != 3
"""
)
#: The time-limit test: cases of 1 to 5 s (bounded by --gold-timeout); the last one, whose
#: limit (150 s) fits in no 1-minute job, waits for "go": the outer test says go once the
#: run said that the short job reached its time limit, so the run lasts until then.
LIMIT_CASES = (
    RECORD
    + """
    @pytest.mark.parametrize("i", range(36))
    def test_case(i):
        record(i, "start")
        if os.environ.get("WALLTIME_SLEEP"):
            time.sleep(i % 5 + 1)
        record(i, "end")
        assert i % 5 != 3

    @pytest.mark.gold(timeout=150)
    def test_last():
        record(36, "start")
        wait_for_go()
        record(36, "end")
"""
)


def records(markers: Path) -> list[dict]:
    log = markers / "log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


#: How long a run stopped by the test's teardown may take to cancel its jobs and stop.
STOP_SECONDS = 60


@pytest.fixture
def inner_runs() -> Iterator[list[subprocess.Popen]]:
    """The test's inner runs; one still running at the end (the test failed before it
    finished) gets SIGTERM, as a user's Ctrl-C: it cancels its Slurm jobs and stops its
    cluster, and is killed only if it does not end in time."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_inner(
    pytester: pytest.Pytester, inner_runs: list[subprocess.Popen], *args: str
) -> tuple[subprocess.Popen, Path]:
    out = pytester.path / "inner.out"
    command = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-v", *args]
    with open(out, "w") as stream:
        process = subprocess.Popen(
            command, cwd=pytester.path, stdout=stream, stderr=subprocess.STDOUT
        )
    inner_runs.append(process)
    return process, out


def start_on_new_profile(
    pytester: pytest.Pytester,
    inner_runs: list[subprocess.Popen],
    profile: str,
    engines: int,
    *more: str,
    slurm_options: str = "",
) -> tuple[subprocess.Popen, Path]:
    """A run on a new profile of two 5-minute jobs of ``engines`` engines in all, that
    waits for every engine and retries no case (``more``: further options of the run)."""
    create = run(
        pytester,
        f"python -m pytest_gold profile create {profile} --slurm --engines {engines} --jobs 2 "
        f"--time 5 --partition gold {slurm_options}",
    )
    assert create.ret == 0, create.stderr.str()
    return start_inner(
        pytester,
        inner_runs,
        "--gold",
        f"--gold-profile={profile}",
        "--gold-wait=150",
        f"--gold-min-engines={engines}",
        "--gold-retries=0",
        *more,
    )


def wait_for(condition, what: str, process: subprocess.Popen, out: Path):
    deadline = time.monotonic() + INNER_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"the run ended before {what}:\n{out.read_text()}")
        time.sleep(POLL_SECONDS)
    process.kill()
    pytest.fail(f"no {what} within {INNER_SECONDS} s:\n{out.read_text()}")


def finish(process: subprocess.Popen, out: Path) -> str:
    try:
        process.wait(timeout=INNER_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the run did not end:\n{out.read_text()}")
    return out.read_text()


def outcomes_by_id(output: str) -> dict[str, str]:
    """``-v`` lines: node id -> outcome; each node id exactly once."""
    plain = re.findall(r"^(test_\w+\.py::\S+) (PASSED|FAILED)", output, re.MULTILINE)
    gold = re.findall(r"^\[\S+\] \[ *\d+%\] (PASSED|FAILED) (\S+::\S+)", output, re.MULTILINE)
    found = plain + [(nodeid, outcome) for outcome, nodeid in gold]
    ids = [nodeid for nodeid, _ in found]
    assert len(ids) == len(set(ids)), f"a case reported twice:\n{output}"
    return dict(found)


@pytest.fixture
def markers(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = pytester.path / "markers"
    path.mkdir()
    monkeypatch.setenv(MARKERS_ENV, str(path))
    yield path


def plain_run(pytester: pytest.Pytester, markers: Path) -> dict[str, str]:
    (markers / "go").touch()
    plain = pytester.runpytest("-p", "no:randomly", "-v")
    (markers / "go").unlink()
    (markers / "log").unlink()
    return outcomes_by_id(plain.stdout.str())


def test_a_job_cancelled_mid_run_moves_its_cases(
    slurm: str,  # noqa: F811
    pytester: pytest.Pytester,
    ipython_dir: Path,  # noqa: F811
    markers: Path,
    leak_check: str,
    inner_runs: list[subprocess.Popen],
) -> None:
    """scancel of one of the run's jobs while its engines run cases: those cases go to
    the other job's engines and pass there (not failed, even with --gold-retries=0); the
    run's results are a plain run's."""
    pytester.makepyfile(test_cases=CASES)
    expected = plain_run(pytester, markers)
    process, out = start_on_new_profile(pytester, inner_runs, "hpc", 4)

    def two_jobs_running_cases() -> list[str]:
        """Both jobs, once each of the 4 engines runs a case (one case per batch: their
        durations are unknown)."""
        starts = [r for r in records(markers) if r["event"] == "start"]
        jobs = sorted({r["job"] for r in starts})
        return jobs if len(starts) >= 4 and len(jobs) == 2 else []

    victim = wait_for(two_jobs_running_cases, "cases on both jobs", process, out)[0]
    running_there = {r["case"] for r in records(markers) if r["job"] == victim}
    subprocess.run(["scancel", victim], check=True)
    # The cases wait for "go" until their job is gone (ipyparallel then says their
    # engines died), so that they are running when the job ends.
    wait_for(
        lambda: (
            "squeue"
            and victim
            not in subprocess.run(
                ["squeue", "-h", "-o", "%i"], capture_output=True, text=True
            ).stdout.split()
        ),
        f"job {victim} to leave squeue",
        process,
        out,
    )
    (markers / "go").touch()
    output = finish(process, out)
    ids = job_ids(output)
    assert process.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert outcomes_by_id(output) == expected
    moved = re.search(
        rf"gold: job {victim} was cancelled; (\d+) cases? moved to other engines", output
    )
    assert moved, output
    assert int(moved.group(1)) == len(running_there)
    assert "lost engine" not in output and "engines lost during the run" not in output
    # the moved cases ran again, on the other job, and finished there
    for case in running_there:
        ends = [r for r in records(markers) if r["case"] == case and r["event"] == "end"]
        assert [r["job"] for r in ends] != [] and all(r["job"] != victim for r in ends)
    assert wait_until_gone(ids) == ""


def test_no_case_starts_that_cannot_finish_before_its_jobs_time_limit(
    slurm: str,  # noqa: F811
    pytester: pytest.Pytester,
    ipython_dir: Path,  # noqa: F811
    markers: Path,
    leak_check: str,
    inner_runs: list[subprocess.Popen],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two jobs, one engine each; the first job's time limit is cut to 1 minute before
    it starts (the jobs are submitted held). Its engine gets only cases expected to end
    before then (--gold-timeout bounds them: 6 s, plus 10 % and 5 s), is released, and
    its job reaches its time limit with nothing running; the other job's engine runs the
    rest. Every case runs exactly once."""
    pytester.makepyfile(test_cases=LIMIT_CASES)
    expected = plain_run(pytester, markers)
    monkeypatch.setenv("WALLTIME_SLEEP", "1")
    process, out = start_on_new_profile(
        pytester,
        inner_runs,
        "short",
        2,
        "--gold-timeout=6",
        "--gold-walltime-margin=5",
        slurm_options="--slurm-option=--hold",
    )
    profile_dir = ipython_dir / "profile_short"
    # one job array; squeue may list its jobs apart (the run staggers their time limits)
    held = wait_for(lambda: profile_jobs(profile_dir), "the held jobs", process, out)
    (array,) = {job.split("_")[0] for job in held}
    short = f"{array}_0"
    subprocess.run(["scontrol", "update", f"JobId={short}", "TimeLimit=1"], check=True)
    subprocess.run(["scontrol", "release", array], check=True)
    said = f"gold: job {short} reached its time limit"
    wait_for(lambda: said in out.read_text(), f"'{said}'", process, out)
    (markers / "go").touch()
    output = finish(process, out)
    assert process.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert outcomes_by_id(output) == expected
    assert re.search(rf"gold: \S+ released: its Slurm job {short} ends in \d+ s", output), output
    assert re.search(rf"^gold: job {short} reached its time limit$", output, re.MULTILINE), output
    assert "moved to other engines" not in output and "lost engine" not in output
    assert "engine lost during the run" not in output  # (the recap of lost engines)
    starts = [r for r in records(markers) if r["event"] == "start"]
    assert sorted(r["case"] for r in starts) == list(range(37))  # each started once
    state = subprocess.run(
        ["scontrol", "-o", "show", "job", short], capture_output=True, text=True
    ).stdout
    assert "Reason=TimeLimit" in state, state  # (JobState=COMPLETING, then TIMEOUT)
    started = re.search(r"StartTime=(\S+)", state)
    assert started, state
    end = datetime.datetime.fromisoformat(started.group(1)).timestamp() + 60  # TimeLimit=1
    ran_there = [r for r in records(markers) if r["job"] == short and r["event"] == "end"]
    assert len(ran_there) >= 3, "the short job's engine took part"
    assert max(r["time"] for r in ran_there) < end
    assert wait_until_gone([array]) == ""


def test_a_profile_whose_jobs_are_too_short_for_every_known_case_submits_nothing(
    slurm: str,  # noqa: F811
    pytester: pytest.Pytester,
    ipython_dir: Path,  # noqa: F811
) -> None:
    pytester.makepyfile(test_long="def test_long():\n    pass\n")
    durations = pytester.path / ".pytest_cache" / "v" / "gold" / "durations"
    durations.parent.mkdir(parents=True)
    durations.write_text(json.dumps({"test_long.py::test_long": 90.0}))
    error, result = refused_run(
        pytester, ipython_dir, "tiny", "--engines 1 --time 1 --partition gold"
    )
    assert (
        "--gold-profile tiny: the profile's Slurm jobs have a time limit of 00:01:00 (60 s), "
        "shorter than the shortest case this run knows the duration of: "
        "test_long.py::test_long takes 90 s in its last run" in error
    ), error
    assert "submitted Slurm job" not in result.stdout.str()
    assert not profile_jobs(ipython_dir / "profile_tiny")
