"""End-to-end on a real single-node Slurm (``.ci/slurm-setup``): profiles whose engines are
Slurm jobs, started by ``pytest --gold --gold-profile=NAME``.

The commands of docs/slurm.rst's walkthrough are run here verbatim (see
:data:`WALKTHROUGH`); a test checks that the page shows no other command.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

REPO = Path(__file__).resolve().parent.parent
SETUP = REPO / ".ci" / "slurm-setup"
DOCS_PAGE = REPO / "docs" / "slurm.rst"
#: Installing slurm-wlm and munge on a fresh machine, then starting the daemons.
SETUP_SECONDS = 600
#: How long a cancelled job may stay in squeue (COMPLETING) after the run ended.
JOB_GONE_SECONDS = 60
#: The docs' walkthrough on the local Slurm: these commands, verbatim, in this order.
WALKTHROUGH = [
    "python -m pytest_gold profile create hpc --slurm --engines 4 --jobs 2 --time 5 "
    "--partition gold",
    "python -m pytest_gold profile show hpc",
    "pytest --gold --gold-profile=hpc",
]
#: The docs' example for a real site, run by tests/test_slurm_profile_unit.py (no
#: partition "compute" here).
SITE_EXAMPLE = [
    "python -m pytest_gold profile create hpc --slurm --engines 96 --jobs 4 --time 02:00:00 "
    "--partition compute --account proj42",
]
#: The commands of the docs, as this environment runs them.
TOOLS = {
    "python": [sys.executable],
    "pytest": [sys.executable, "-m", "pytest"],
    "ipcluster": [str(Path(sys.executable).with_name("ipcluster"))],
}
#: A documented command that takes longer has hung.
COMMAND_SECONDS = 240
SWEEP = """
    import pytest

    @pytest.mark.parametrize("i", range(20))
    def test_sweep(i):
        assert i % 7 != 3
"""

CURVE_CHECK = """
    import json, os

    def test_connection_is_encrypted():
        security = os.environ["SLURM_TEST_SECURITY"]
        info = json.load(open(os.path.join(security, "ipcontroller-client.json")))
        assert info["curve_serverkey"]  # the controller runs with CurveZMQ
        assert os.environ["IPP_ENABLE_CURVE"] == "1"  # and the engine's job with it too
"""


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def _unavailable(reason: str) -> None:
    if _under_ci():
        pytest.fail(f"the Slurm tests must run under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm() -> Iterator[str]:
    """A running single-node Slurm; stopped at the end if this session started it."""
    if os.geteuid() != 0:
        _unavailable("the Slurm tests install and start Slurm: they need root")
    started_file = Path("/run/pytest-gold-slurm/started")
    before = started_file.read_text() if started_file.exists() else ""
    try:
        setup = subprocess.run(
            ["bash", str(SETUP)], capture_output=True, text=True, timeout=SETUP_SECONDS
        )
    except subprocess.TimeoutExpired:
        _unavailable(f"{SETUP} did not finish within {SETUP_SECONDS} s")
    if setup.returncode != 0:
        _unavailable(f"{SETUP} failed: {setup.stderr.strip()[-2000:]}")
    yield setup.stdout.strip()
    if not before.strip():  # this session started the daemons: leave the machine as found
        subprocess.run(["bash", str(SETUP), "--stop"], check=True, timeout=SETUP_SECONDS)


@pytest.fixture
def ipython_dir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = pytester.path / "ipython"
    monkeypatch.setenv("IPYTHONDIR", str(path))
    pytester.makepyfile(test_sweep=SWEEP)
    return path


def run(pytester: pytest.Pytester, command: str, *more: str) -> pytest.RunResult:
    """A documented command as a user types it, with this environment's tools."""
    tool, *args = command.split()
    return pytester.run(*TOOLS[tool], *args, *more, timeout=COMMAND_SECONDS)


def refused_run(
    pytester: pytest.Pytester, ipython_dir: Path, profile: str, create_options: str, *more: str
) -> tuple[str, pytest.RunResult]:
    """A new Slurm profile (``create_options`` of ``profile create NAME --slurm``) that
    ``pytest --gold --gold-profile=NAME`` (and ``more``) refuses as bad input: a usage error
    without a traceback, and no controller left (no connection file). Its error, on one
    line, and the run."""
    create = run(
        pytester, f"python -m pytest_gold profile create {profile} --slurm {create_options}"
    )
    assert create.ret == 0, create.stderr.str()
    result = run(pytester, f"pytest --gold --gold-profile={profile}", *more)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    # The next run starts the cluster again: no connection file of a stopped controller.
    assert not list((ipython_dir / f"profile_{profile}" / "security").glob("*.json"))
    return " ".join(result.stderr.str().split()), result


def documented_show_output() -> list[str]:
    """The ``profile show`` sample of the docs page (its first line names a home dir)."""
    text = DOCS_PAGE.read_text()
    block = text.split("``profile show`` describes the profile", 1)[1]
    block = block.split(".. code-block:: text\n\n", 1)[1].split("\n\n", 1)[0]
    return [line[3:] for line in block.splitlines()]


def profile_jobs(profile_dir: Path) -> list[str]:
    """squeue's jobs of a profile (their batch script is in the profile)."""
    rows = subprocess.run(
        ["squeue", "-h", "-o", "%i|%o"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return [row.split("|")[0] for row in rows if row.split("|")[1].startswith(str(profile_dir))]


def job_ids(output: str) -> list[str]:
    match = re.search(r"gold: submitted Slurm jobs? ([\d, ]+) for the engines", output)
    assert match, output
    return [job.strip() for job in match.group(1).split(",")]


def wait_until_gone(job_ids: list[str]) -> str:
    """squeue's lines for the jobs once they left it (bounded: they are cancelled)."""
    deadline = time.monotonic() + JOB_GONE_SECONDS
    while True:
        listed = subprocess.run(
            ["squeue", "-h", "-j", ",".join(job_ids)], capture_output=True, text=True
        ).stdout.strip()
        if not listed or time.monotonic() > deadline:
            return listed
        time.sleep(0.5)


def test_walkthrough_runs_a_sweep_on_slurm_jobs(
    slurm: str, pytester: pytest.Pytester, ipython_dir: Path, leak_check: str
) -> None:
    create = run(pytester, WALKTHROUGH[0])
    assert create.ret == 0, create.stderr.str()
    show = run(pytester, WALKTHROUGH[1])
    assert show.ret == 0
    assert show.stdout.lines[1:] == documented_show_output()[1 : len(show.stdout.lines)]
    assert "  slurm jobs: 2 (job array), 2 engines per job" in show.stdout.lines
    config = (ipython_dir / "profile_hpc" / "ipcluster_config.py").read_text()
    assert "c.Cluster.controller_ip = '127.0.0.1'" in config  # the nodes are this machine

    plain = pytester.runpytest("-p", "no:randomly")
    gold = run(pytester, WALKTHROUGH[2], "-p", "no:randomly", "-v")
    output = gold.stdout.str()
    ids = job_ids(output)
    assert gold.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    assert gold.parseoutcomes() == plain.parseoutcomes() == {"passed": 17, "failed": 3}
    # Dispatch starts with the first engine; the jobs' other engines join as they start.
    assert re.search(
        r"(4 engines|\d engines? of 4 registered \(the others join as they start\)) on 1 host",
        output,
    ), output
    assert wait_until_gone(ids) == ""  # the run cancelled its jobs
    # leak_check: no engine, nanny or batch script of the jobs is left running


def test_job_that_never_starts_is_said_with_squeues_reason(
    slurm: str, pytester: pytest.Pytester, ipython_dir: Path, leak_check: str
) -> None:
    create = run(
        pytester,
        "python -m pytest_gold profile create later --slurm --engines 2 --time 5 "
        "--slurm-option=--begin=now+1hour",
    )
    assert create.ret == 0, create.stderr.str()
    result = run(pytester, "pytest --gold --gold-profile=later --gold-wait=5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    ids = job_ids(result.stdout.str())
    error = " ".join(result.stderr.str().split())
    assert "waited 5 s (--gold-wait)" in error
    assert (
        f"The engines are Slurm job {ids[0]}: squeue says: job {ids[0]}_[0] PENDING (BeginTime)"
        in error
    )
    assert "ipcluster engines" not in error  # more engines would wait in the same queue
    assert wait_until_gone(ids) == ""


def test_cluster_started_beforehand_with_curvezmq(
    slurm: str,
    pytester: pytest.Pytester,
    ipython_dir: Path,
    leak_check: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The docs' ``ipcluster start --profile=hpc --daemonize``: the run attaches and leaves
    the jobs running; ``ipcluster stop --profile=hpc`` cancels them. With the docs'
    encryption on: IPP_ENABLE_CURVE=1, which the jobs inherit (--export=ALL)."""
    assert run(pytester, WALKTHROUGH[0]).ret == 0
    profile_dir = ipython_dir / "profile_hpc"
    pytester.makepyfile(test_curve=CURVE_CHECK)
    monkeypatch.setenv("IPP_ENABLE_CURVE", "1")
    monkeypatch.setenv("SLURM_TEST_SECURITY", str(profile_dir / "security"))
    started = run(pytester, "ipcluster start --profile=hpc --daemonize")
    try:
        assert started.ret == 0, started.stderr.str()
        gold = run(pytester, "pytest --gold --gold-profile=hpc --gold-wait=120 -p no:randomly")
        assert gold.ret == pytest.ExitCode.TESTS_FAILED
        assert "gold: attached to the cluster of profile 'hpc'" in gold.stdout.str()
        assert gold.parseoutcomes() == {"passed": 18, "failed": 3}
        assert profile_jobs(profile_dir)  # still there: the run did not submit them
    finally:
        ids = profile_jobs(profile_dir)
        stopped = run(pytester, "ipcluster stop --profile=hpc")
    assert stopped.ret == 0
    assert ids and wait_until_gone(ids) == ""


def test_jobs_sbatch_refuses_are_said_and_nothing_is_left(
    slurm: str, pytester: pytest.Pytester, ipython_dir: Path, leak_check: str
) -> None:
    """A constraint no node has: sbatch refuses the job at once (Slurm 22.05)."""
    error, _ = refused_run(
        pytester,
        ipython_dir,
        "nofeature",
        "--engines 2 --time 5 --slurm-option=--constraint=nosuchfeature",
        "--gold-wait=5",
    )
    assert (
        "sbatch refused the engines' jobs: 'sbatch: error: Batch job submission failed: "
        "Invalid feature specification'. Nothing was submitted" in error
    )
    # leak_check: the controller (and its schedulers) stopped
