"""End-to-end on real SSH engines: six hosts (gold2 .. gold7) on loopback, see ``sshrig``.

The rig's cluster is started the way users start it (``ipcluster start --profile=gold``,
from a profile made by ``python -m pytest_gold profile create``); runs attach to it.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import ipyparallel as ipp
import psutil
import pytest

from .inner import InnerPytest
from .sshrig import HOSTS, LabRig, sshd_available

pytestmark = pytest.mark.cluster

#: How long the rig's killed processes get to be gone.
EXIT_SECONDS = 10.0
#: How long a stopped cluster's controller and engines get to exit.
STOPPED_SECONDS = 30.0

SWEEP = """
    import time
    import pytest

    @pytest.mark.parametrize("case", range({count}))
    def test_case(case):
        time.sleep({seconds})
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRig]:
    if not sshd_available():
        if os.environ.get("CI"):
            pytest.fail("sshd is missing: .ci/run installs openssh-server for these tests")
        pytest.skip("needs sshd (apt-get install -y openssh-server)")
    rig = LabRig(tmp_path_factory.mktemp("lab"))
    try:
        rig.start_sshd()
        rig.start_cluster()
        yield rig
    finally:
        rig.stop()
        deadline = time.monotonic() + EXIT_SECONDS
        while (left := rig.rig_processes()) and time.monotonic() < deadline:
            time.sleep(0.2)  # killed, still exiting
        assert not left, f"left running after the lab tests: {[p.cmdline() for p in left]}"


@pytest.fixture
def in_lab(lab: LabRig, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> LabRig:
    monkeypatch.setenv("IPYTHONDIR", str(lab.ipython_dir))
    return lab


def engine_pids(lab: LabRig) -> dict[int, int]:
    client = ipp.Client(str(lab.connection_file), timeout=30)
    try:
        return dict(zip(client.ids, client[:].apply_sync(os.getpid), strict=True))
    finally:
        client.close()


def hosts_in(output: str) -> set[str]:
    return set(re.findall(r"\[(gold\d):e\d+\]", output))


def test_cases_run_on_all_six_hosts_and_the_cluster_stays(pytester: pytest.Pytester, in_lab):
    before = engine_pids(in_lab)
    assert len(before) == 12
    pytester.makepyfile(SWEEP.format(count=48, seconds=0.3))
    result = pytester.runpytest_subprocess("--gold", "--gold-profile=gold", "-v")
    result.assert_outcomes(passed=48)
    result.stdout.fnmatch_lines(
        ["gold: attached to the cluster of profile 'gold': 12 engines on 6 hosts (gold2: 2, *"]
    )
    assert "started in" not in result.stdout.str()  # attached: no start-up
    assert hosts_in(result.stdout.str()) == set(HOSTS)
    # Never stopped by a run that attached to it: the same engines are still there.
    assert engine_pids(in_lab) == before


def test_failure_report_names_the_host(pytester: pytest.Pytester, in_lab):
    pytester.makepyfile(
        """
        def test_broken():
            assert 1 + 1 == 3
        """
    )
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess("--gold", "--gold-profile=gold", f"--junitxml={junit}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*gold?:e* * Python *"])  # the failure header
    assert re.search(r'name="gold_host" value="gold\d"', junit.read_text())


def test_profile_cluster_started_by_the_run_and_kept(pytester: pytest.Pytester, in_lab: LabRig):
    profile = in_lab.create_profile("pair", hosts=["gold2", "gold3"], per_host=1)
    pytester.makepyfile(SWEEP.format(count=8, seconds=0.2))
    try:
        kept = pytester.runpytest_subprocess(
            "--gold", "--gold-profile=pair", "--gold-keep-cluster", "--gold-min-engines=2", "-v"
        )
        kept.assert_outcomes(passed=8)
        kept.stdout.fnmatch_lines(
            [
                "gold: the cluster of profile 'pair', started in *: 2 engines on 2 hosts*",
                "*stays running*ipcluster stop --profile=pair",
            ]
        )
        assert hosts_in(kept.stdout.str()) == {"gold2", "gold3"}
        client = ipp.Client(str(profile / "security" / "ipcontroller-client.json"), timeout=30)
        try:
            assert len(client.ids) == 2
        finally:
            client.close()
    finally:
        in_lab.stop_cluster("pair")
    assert not (profile / "security" / "ipcontroller-client.json").exists()
    assert_gone(in_lab, profile, "after 'ipcluster stop'")
    # Not kept: started for the run and stopped at its end.
    once = pytester.runpytest_subprocess("--gold", "--gold-profile=pair", "-v")
    once.assert_outcomes(passed=8)
    once.stdout.fnmatch_lines(["gold: the cluster of profile 'pair', started in*"])
    assert "stays running" not in once.stdout.str()
    assert not (profile / "security" / "ipcontroller-client.json").exists()
    assert_gone(in_lab, profile, "after the run that started it")


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return ["(gone)"]


def assert_gone(lab: LabRig, profile: Path, when: str) -> None:
    """No controller or engine of the profile's cluster is left (they get a moment)."""
    deadline = time.monotonic() + STOPPED_SECONDS
    while left := lab.rig_processes(profile):
        assert time.monotonic() < deadline, f"{profile.name} processes left {when}: " + "; ".join(
            f"{p.pid}: {' '.join(_cmdline(p))}" for p in left
        )
        time.sleep(0.5)


def test_losing_a_host_costs_no_case(pytester: pytest.Pytester, in_lab: LabRig):
    """Every engine of gold7 dies at once mid-run (last: it leaves the rig with 10 engines)."""
    pytester.makepyfile(SWEEP.format(count=36, seconds=1))
    with InnerPytest(
        pytester.path, "--gold", "--gold-profile=gold", "-v", "-p", "no:cacheprovider"
    ) as run:
        assert run.read_until("PASSED"), run.output
        on_gold7 = {
            process.pid: process
            for process in psutil.process_iter()
            if _environ(process).get("PYTEST_GOLD_HOST") == "gold7"
        }
        # The engines: gold7's processes that no other gold7 process started.
        engines = [p for p in on_gold7.values() if p.ppid() not in on_gold7]
        assert len(engines) == 2, [p.cmdline() for p in engines]
        for engine in engines:
            for process in [engine, *engine.children(recursive=True)]:
                process.send_signal(signal.SIGKILL)
        assert run.finish(timeout=240) == 0, run.output
    # Every case passed: the two that were running on gold7 ran again elsewhere.
    assert re.search(r"^=+ 36 passed in [\d.]+s =+$", run.output, re.MULTILINE), run.output
    assert len(re.findall(r"gold: lost engine gold7:e\d+", run.output)) == 2, run.output
    assert len(set(re.findall(r" PASSED \S+::test_case\[(\d+)\]", run.output))) == 36


def _environ(process: psutil.Process) -> dict[str, str]:
    try:
        return process.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return {}
