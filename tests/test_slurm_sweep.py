"""A campaign longer than its jobs, on the real single-node Slurm (``.ci/slurm-setup``):
jobs end at their time limit mid-campaign and the run replaces them.

The sweep: 200 cases of 1-5 s (3 s on average: 600 engine-seconds) on 4 engines in 2
jobs whose time limit is 2 minutes, so the campaign (about 150 s of engine time each)
outlives the first generation. Its time limits are staggered (2 and 1 minutes): the
second job ends after a minute and is replaced while the first one still runs. The
plain run that the results are compared with runs the same suite with the sleeps scaled
to nothing (``SWEEP_SCALE=0``): a case's outcome depends on its index only, and 600 s of
sleeping in one process would take the test past its 5 minutes.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.test_slurm import ipython_dir, job_ids, run, slurm, wait_until_gone  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

CASES = 200
SWEEP = f"""
    import os, time
    import pytest

    SCALE = float(os.environ.get("SWEEP_SCALE", "1"))

    @pytest.mark.parametrize("i", range({CASES}))
    def test_sweep(i):
        time.sleep((1 + i % 5) * SCALE)
        assert i % 7 != 3
"""
PROFILE = (
    "python -m pytest_gold profile create sweep --slurm --engines 4 --jobs 2 --time 2 "
    "--partition gold"
)
#: Long enough for the first job to start on a busy machine; not the campaign's bound.
#: Cases of 1-5 s: a 10 s margin keeps every case clear of its job's time limit.
GOLD_RUN = (
    "pytest --gold --gold-profile=sweep --gold-wait=120 --gold-walltime-margin=10 -p no:randomly"
)


def outcomes(junit_xml: Path) -> tuple[dict[str, str], Counter[str]]:
    """Each case's outcome in a JUnit XML report, and how often it was reported."""
    found: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for case in ElementTree.parse(junit_xml).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[name] = kinds[0] if kinds else "passed"
        seen[name] += 1
    return found, seen


def replacement_ids(output: str) -> list[str]:
    return [
        job.strip()
        for match in re.finditer(r"submitted replacement Slurm jobs? ([\d, ]+) for", output)
        for job in match.group(1).split(",")
    ]


def test_sweep_outlives_its_jobs(
    slurm: str,  # noqa: F811
    pytester: pytest.Pytester,
    ipython_dir: Path,  # noqa: F811
    leak_check: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makepyfile(test_sweep=SWEEP)
    assert run(pytester, PROFILE).ret == 0
    monkeypatch.setenv("SWEEP_SCALE", "0")
    plain = pytester.runpytest("-p", "no:randomly", "--junitxml=plain.xml", "test_sweep.py")
    monkeypatch.setenv("SWEEP_SCALE", "1")
    gold = run(pytester, GOLD_RUN, "--junitxml=gold.xml", "test_sweep.py")
    output = gold.stdout.str()
    first = job_ids(output)
    replaced = replacement_ids(output)
    # nothing of the run is left in squeue (leak_check: nor in the process table)
    assert wait_until_gone(first + replaced) == "", output
    # at least two generations of jobs: the first one's ended mid-campaign
    assert replaced, output
    # the run's jobs counted while it waits for its first engine, and in the status lines
    assert re.search(r"waiting for engines: .*; jobs: \d running, \d queued", output), output
    assert re.search(r"ETA [\d:?]+, jobs: \d running, \d queued", output), output
    plain_outcomes, _ = outcomes(pytester.path / "plain.xml")
    gold_outcomes, seen = outcomes(pytester.path / "gold.xml")
    assert len(plain_outcomes) == CASES
    assert set(seen) == set(plain_outcomes), output  # every case reported
    assert max(seen.values()) == 1, output  # and once
    # no case was running where its job ended: none lost, none moved for a time limit
    assert "engine lost:" not in output, output
    assert "moved to other engines" not in output, output
    assert gold_outcomes == plain_outcomes, output
    assert gold.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
