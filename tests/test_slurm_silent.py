"""Replacement jobs whose engines never register, on the real single-node Slurm
(``.ci/slurm-setup``): each is cancelled after --gold-wait seconds of running, the
terminal names it and its output file; after two in a row the run submits no more; the
first job's engine goes on, and once it has no time left the run stops and reports the
cases left as not run. See docs/slurm.rst, "Replacement jobs".

The engines' Python of the profile is a wrapper script (``--remote-python``): in the run's
first job it runs the real Python; in any later job it prints a line and sleeps, as an
engine that cannot start would leave its job running with nothing registering.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import pytest_gold.policy.silentjobs as silentjobs
from pytest_gold.policy.runtypes import NO_ENGINE_HAS_TIME
from tests.test_slurm import (  # noqa: F401  (fixtures)
    ipython_dir,
    job_ids,
    profile_jobs,
    run,
    slurm,
    wait_until_gone,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

PROFILE = "silent"
#: What a silent job's engine wrapper writes to the job's output before sleeping.
SILENT_SAYS = "silent-job: this job's engines do not start"
#: The wrapper: the first job that runs it claims the engines; later jobs sleep (bounded:
#: the partition's MaxTime ends a job the test failed to cancel anyway).
WRAPPER = """\
#!/bin/sh
first={job_dir}/first-job
[ -s "$first" ] || echo "$SLURM_ARRAY_JOB_ID" > "$first"
if [ "$(cat "$first")" != "$SLURM_ARRAY_JOB_ID" ]; then
    echo "{says} ($SLURM_ARRAY_JOB_ID)"
    exec sleep 600
fi
exec {python} "$@"
"""
#: Cases of CASE_SECONDS each, their durations known (the cache): 210 engine-seconds,
#: more than the one 3-minute job of one engine can do, so the run submits replacements
#: at once (up to --gold-max-jobs=2: one at a time).
CASES = 14
CASE_SECONDS = 15
SUITE = f"""
    import time
    import pytest

    @pytest.mark.parametrize("i", range({CASES}))
    def test_case(i):
        time.sleep({CASE_SECONDS})
"""
#: The first job's engine must register within it; each silent job is cancelled after it.
WAIT_SECONDS = 25
RUN_ARGS = (
    "--gold",
    f"--gold-profile={PROFILE}",
    f"--gold-wait={WAIT_SECONDS}",
    "--gold-max-jobs=2",
    # A case needs 15 s + 10 % + 45 s of its job's time left: the first job's engine runs
    # cases for about 120 s of its 180, then is released (the run's natural end) -- some
    # 40 s after the second silent job was cancelled (2 x --gold-wait and a few polls).
    "--gold-walltime-margin=45",
    "--gold-retries=0",
    "-p",
    "no:randomly",
    "-v",
    "test_cases.py",
)
#: Bounds of the test's waits (each only bounds a failure: a working run gets there).
REACH_SECONDS = 200
STOP_SECONDS = 60
POLL_SECONDS = 0.2
SILENT_LINE = re.compile(
    r"^gold: Slurm job (\d+_0) ran for (\S+) s \(--gold-wait\) and none of its engines "
    r"registered; cancelled it \(its engines' output: (\S+)\)$",
    re.MULTILINE,
)


class Inner:
    """The inner run, its output in a file the test reads while it runs."""

    def __init__(self, cwd: Path) -> None:
        self.out = cwd / "inner.out"
        with open(self.out, "w") as stream:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pytest", *RUN_ARGS],
                cwd=cwd,
                stdout=stream,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.out.read_text()

    def wait_for(self, pattern: re.Pattern[str], count: int = 1) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern`` in the output, while the run runs."""
        deadline = time.monotonic() + REACH_SECONDS
        while time.monotonic() < deadline:
            found = list(pattern.finditer(self.text()))
            if len(found) >= count:
                return found[:count]
            if self.process.poll() is not None:
                pytest.fail(f"the run ended before {pattern.pattern!r}:\n{self.text()}")
            time.sleep(POLL_SECONDS)
        pytest.fail(f"no {pattern.pattern!r} within {REACH_SECONDS} s:\n{self.text()}")

    def finish(self) -> str:
        try:
            self.process.wait(timeout=REACH_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run did not end (it hangs):\n{self.text()}")
        return self.text()


@dataclass
class SilentProfile:
    """The profile, and the inner runs started on it."""

    directory: Path
    cwd: Path
    runs: list[Inner] = field(default_factory=list)

    def start(self) -> Inner:
        inner = Inner(self.cwd)
        self.runs.append(inner)
        return inner


@pytest.fixture
def silent_profile(
    pytester: pytest.Pytester,
    ipython_dir: Path,  # noqa: F811
) -> Iterator[SilentProfile]:
    """A profile of one 3-minute job of one engine whose later jobs are silent. At the
    end, whether the test passed or not, a run still going is stopped as Ctrl-C would (it
    cancels its jobs), and any job of the profile still in squeue is cancelled: only jobs
    whose batch script is this test's profile's, never another's."""
    wrapper = pytester.path / "engine-python"
    wrapper.write_text(
        WRAPPER.format(says=SILENT_SAYS, python=sys.executable, job_dir=pytester.path)
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    create = run(
        pytester,
        f"python -m pytest_gold profile create {PROFILE} --slurm --engines 1 --jobs 1 "
        f"--time 3 --partition gold --remote-python {wrapper}",
    )
    assert create.ret == 0, create.stderr.str()
    profile = SilentProfile(ipython_dir / f"profile_{PROFILE}", pytester.path)
    yield profile
    for inner in profile.runs:
        if inner.process.poll() is None:
            inner.process.terminate()
            try:
                inner.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                inner.process.kill()
                inner.process.wait()
    left = profile_jobs(profile.directory)
    if left:
        subprocess.run(["scancel", *left], check=False)
        assert wait_until_gone(left) == ""


def squeue_lists(job: str) -> bool:
    listed = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, check=True
    ).stdout.split()
    return job in listed


def job_state(job: str) -> str:
    shown = subprocess.run(
        ["scontrol", "-o", "show", "job", job], capture_output=True, text=True
    ).stdout
    match = re.search(r"JobState=(\S+)", shown)
    return match.group(1) if match else ""


def test_silent_replacement_jobs_are_cancelled_and_the_run_gives_up_on_them(
    slurm: str,  # noqa: F811
    pytester: pytest.Pytester,
    leak_check: str,  # (before the profile: its teardown stops the run first)
    silent_profile: SilentProfile,
) -> None:
    pytester.makepyfile(test_cases=SUITE)
    durations = pytester.path / ".pytest_cache" / "v" / "gold" / "durations"
    durations.parent.mkdir(parents=True)
    known = {f"test_cases.py::test_case[{i}]": CASE_SECONDS for i in range(CASES)}
    durations.write_text(json.dumps(known))
    inner = silent_profile.start()

    # Each silent job: cancelled while the run goes on, named with its output file.
    silent: list[str] = []
    for count in (1, 2):
        match = inner.wait_for(SILENT_LINE, count)[-1]
        job, grace, log = match.groups()
        assert float(grace) == WAIT_SECONDS
        deadline = time.monotonic() + STOP_SECONDS
        while squeue_lists(job) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        assert not squeue_lists(job), f"{job} still in squeue"
        assert inner.process.poll() is None, "the job left squeue only as the run ended"
        assert job_state(job) == "CANCELLED"
        assert log == f"{silent_profile.directory}/log/slurm-engines-{job}.log"
        assert SILENT_SAYS in Path(log).read_text()
        silent.append(job)

    output = inner.finish()
    first = job_ids(output)
    replaced = re.findall(r"^gold: submitted replacement Slurm job (\d+) for", output, re.MULTILINE)
    # The two silent jobs are the replacements, and the only ones: none after the second.
    assert [f"{job}_0" for job in replaced] == silent, output
    assert f"\n{silentjobs.gave_up_line(silent)}\n" in output, output
    assert len(SILENT_LINE.findall(output)) == len(silent)
    assert first == [(pytester.path / "first-job").read_text().strip()]  # its engine started
    # The first job's engine went on after the run gave up on replacements.
    after = output.split(silentjobs.gave_up_line(silent), 1)[1]
    assert re.search(r"PASSED test_cases\.py::test_case\[\d+\]", after), output
    # It stopped once that engine had no time left: the cases left did not run.
    passed = len(re.findall(r"PASSED test_cases\.py::test_case", output))
    assert 0 < passed < CASES, output
    not_run = f"gold: {CASES - passed} selected cases did not run ({NO_ENGINE_HAS_TIME})."
    assert not_run in output, output
    assert inner.process.returncode == pytest.ExitCode.TESTS_FAILED, output
    # Every job of the run is gone (the first one cancelled at the end of the run).
    assert wait_until_gone([*first, *replaced]) == ""
    assert profile_jobs(silent_profile.directory) == []
