"""A run stopped midway cancels every Slurm job it submitted, replacements too, and no
other (real single-node Slurm, ``.ci/slurm-setup``).

A run whose work does not fit its first generation's jobs submits a replacement job up
to ``--gold-max-jobs`` as soon as it knows the cases' durations; it is then stopped by
SIGTERM (a scheduler, ``kill``: cancelled by the run itself as it ends) or by SIGKILL
(the watchdog cancels them, from the cluster file).
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.inner import InnerPytest
from tests.test_slurm import ipython_dir, job_ids, run, slurm, wait_until_gone  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

#: 40 cases of 5 s: 200 engine-seconds, twice what 2 jobs of one engine give in a minute.
SLOW = """
    import time
    import pytest

    @pytest.mark.parametrize("i", range(40))
    def test_slow(i):
        time.sleep(5)
"""
PROFILE = (
    "python -m pytest_gold profile create ends --slurm --engines 2 --jobs 2 --time 1 "
    "--partition gold"
)
#: How long the stopped inner run may take to end (it stops its cluster).
END_SECONDS = 120
#: A job that no run of this test submitted: it must survive the run.
FOREIGN_JOB_SECONDS = 120


def foreign_job() -> str:
    """A job of somebody else's (here: submitted by the test, not by the run)."""
    return subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-p",
            "gold",
            "--time=2",
            "-o",
            "/dev/null",
            "--wrap",
            f"sleep {FOREIGN_JOB_SECONDS}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopped_run_cancels_every_job_it_submitted(
    signum: int,
    slurm: str,  # noqa: F811
    pytester: pytest.Pytester,
    ipython_dir: Path,  # noqa: F811
    leak_check: str,
) -> None:
    pytester.makepyfile(test_slow=SLOW)
    assert run(pytester, PROFILE).ret == 0
    other = foreign_job()
    try:
        args = ("--gold", "--gold-profile=ends", "--gold-max-jobs=3", "--gold-wait=120")
        with InnerPytest(pytester.path, *args, "-p", "no:randomly", "test_slow.py") as inner:
            first = job_ids(inner.read_until("gold: submitted Slurm job"))
            line = inner.read_until("gold: submitted replacement Slurm job")
            assert line, inner.output
            replaced = re.findall(r"\d+", line.split(" for ")[0])
            inner.send_signal(signum)
            inner.finish(timeout=END_SECONDS)
        # every job the run submitted is gone from squeue (leak_check: and its processes)
        assert wait_until_gone(first + replaced) == "", inner.output
        listed = subprocess.run(
            ["squeue", "-h", "-j", other, "-o", "%T"], capture_output=True, text=True
        ).stdout.split()
        assert listed and listed[0] in ("PENDING", "RUNNING"), listed  # not the run's: left
    finally:
        subprocess.run(["scancel", other], check=False)
