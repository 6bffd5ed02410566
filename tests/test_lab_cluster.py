"""End-to-end on real SSH engines: six hosts (gold2 .. gold7) on loopback, see ``sshrig``.

The rig's cluster is started the way users start it (``ipcluster start --profile=gold``,
from a profile made by ``python -m pytest_gold profile create``); runs attach to it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
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
    # Every host is this machine: the default controller address is loopback.
    assert "c.Cluster.controller_ip = '127.0.0.1'" in (profile / "ipcluster_config.py").read_text()
    trace = in_lab.trace_ssh(profile)
    pytester.makepyfile(SWEEP.format(count=8, seconds=0.2))
    stop = None
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
        # One ssh command per host started its engines (ipyparallel's launcher: four per
        # engine); then a watcher per host, nothing copied.
        assert sorted(trace.read_text().splitlines()[:2]) == ["ssh gold2", "ssh gold3"]
        assert "scp" not in trace.read_text()
        client = ipp.Client(str(profile / "security" / "ipcontroller-client.json"), timeout=30)
        try:
            assert len(client.ids) == 2
        finally:
            client.close()
        before_stop = len(trace.read_text().splitlines())
        stop = in_lab.stop_cluster("pair")
    finally:
        if stop is None:
            in_lab.stop_cluster("pair")
    # Stopping: one ssh command per host, no log fetched over scp, nothing alarming.
    assert sorted(trace.read_text().splitlines()[before_stop:]) == ["ssh gold2", "ssh gold3"]
    assert stop.returncode == 0, stop.stdout + stop.stderr
    for alarming in ("scp", "Failed to get output", "Traceback", "No such file"):
        assert alarming not in stop.stdout + stop.stderr
    assert not (profile / "security" / "ipcontroller-client.json").exists()
    assert_gone(in_lab, profile, "after 'ipcluster stop'")
    # Not kept: started for the run and stopped at its end, quietly.
    once = pytester.runpytest_subprocess("--gold", "--gold-profile=pair", "-v")
    once.assert_outcomes(passed=8)
    once.stdout.fnmatch_lines(["gold: the cluster of profile 'pair', started in*"])
    assert "stays running" not in once.stdout.str()
    output = once.stdout.str() + once.stderr.str()
    for alarming in ("Traceback", "ProcessLookupError", "scp", "Failed to get output", "[Profile"):
        assert alarming not in output, output
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
    status = pytester.path / "status.json"
    with InnerPytest(
        pytester.path,
        "--gold",
        "--gold-profile=gold",
        "-v",
        "-p",
        "no:cacheprovider",
        f"--gold-status-file={status}",
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
    # After the results: a recap, and the per-host summary and status mark gold7's loss.
    recap = run.output[run.output.index("gold: per-host summary") :]
    assert re.search(r"gold: 2 engines lost during the run \(every engine of gold7: ", recap)
    assert re.search(r"gold: [12] cases? running on them went to other engines", recap)
    table = {
        line.split()[0]: line.split()
        for line in recap.splitlines()
        if line.startswith(("host ", "gold")) and len(line.split()) >= 6
    }
    assert table["host"][-1] == "lost" and table["gold7"][-1] == "2", recap
    hosts = json.loads(status.read_text())["hosts"]
    assert hosts["gold7"]["lost"] == 2 and hosts["gold2"]["lost"] == 0
    # The next run says the cluster is short of what the profile defines, and where.
    after = pytester.runpytest_subprocess("--gold", "--gold-profile=gold", "-p", "no:cacheprovider")
    after.assert_outcomes(passed=36)
    after.stdout.fnmatch_lines(
        [
            "gold: attached to the cluster of profile 'gold': 10 engines on 5 hosts (*); "
            "the profile defines 12 (gold7: 0 of 2)"
        ]
    )
    # gold7's engines again, in the running cluster, as the profile defines them.
    added = subprocess.run(
        [sys.executable, "-m", "pytest_gold", "profile", "engines", "gold", "gold7"],
        env=in_lab.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    assert "started 2 engines in the cluster of profile 'gold' (gold7: 2)" in added.stdout
    in_lab.wait_for_engines(12)
    client = ipp.Client(str(in_lab.connection_file), timeout=30)
    try:
        engines = client[:]
        engines.execute("import os; gold_host = os.environ.get('PYTEST_GOLD_HOST')", block=True)
        hosts = engines.pull("gold_host", block=True)
    finally:
        client.close()
    assert sorted(hosts).count("gold7") == 2
    # The cluster file still knows the controller and both engine sets: 'ipcluster stop'
    # stops everything (what 'ipcluster engines' would have lost).
    state = json.loads((in_lab.profile_dir / "security" / "cluster-.json").read_text())
    assert "controller" in state and len(state["engines"]["sets"]) == 2


def _environ(process: psutil.Process) -> dict[str, str]:
    try:
        return process.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return {}
