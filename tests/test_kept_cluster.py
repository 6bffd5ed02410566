"""End-to-end: the embedded cluster kept with --gold-keep-cluster (a warm start for the
next runs), its idle stop, ``python -m pytest_gold cluster status|stop``, a stale kept
cluster, and a suite changed between two runs on it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from pytest_gold.launch.idlewatch import KeptPaths, KeptState
from pytest_gold.launch.keptcluster import kept_dir

from .conftest import processes_with_token

pytestmark = pytest.mark.cluster

#: How long a test waits for a condition that takes a second or two (the idle stop, the
#: processes of a stopped cluster going away): long, since it only bounds a failure.
CONDITION_SECONDS = 60.0
#: A run's own time limit: a hang fails the test instead of the suite.
RUN_SECONDS = 300.0
ENGINES = 2

CASES = """
    import pytest

    @pytest.mark.parametrize("i", range(4))
    def test_case(i):
        assert i >= 0
"""


@dataclass
class KeptProject:
    """A pytester project whose kept clusters live in a private runtime dir of its own."""

    pytester: pytest.Pytester
    token: str

    @property
    def paths(self) -> KeptPaths:
        return KeptPaths(kept_dir(self.pytester.path))

    def state(self) -> KeptState:
        state = self.paths.read_state()
        assert state is not None, f"no kept cluster in {self.paths.root}"
        return state

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(
            "--gold", f"--gold-engines={ENGINES}", "-p", "no:cacheprovider", *args,
            timeout=RUN_SECONDS,
        )  # fmt: skip

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest_gold", "cluster", *args],
            cwd=self.pytester.path,
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
        )

    def controllers(self) -> list[psutil.Process]:
        """The controllers running (not their scheduler processes, which are forks of
        them: each controller leads its own process group)."""
        return [
            p
            for p in processes_with_token(self.token)
            if "ipyparallel.controller" in _cmd(p) and _group(p) == p.pid
        ]


def _cmd(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def _group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except ProcessLookupError:
        return None


def wait_for(condition, what: str) -> None:
    """Until ``condition()`` holds; fail after :data:`CONDITION_SECONDS`."""
    deadline = time.monotonic() + CONDITION_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {CONDITION_SECONDS:g} s: {what}")
        time.sleep(0.1)


@pytest.fixture
def kept_project(
    pytester: pytest.Pytester,
    leak_check: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[KeptProject]:
    """Stops the project's kept cluster at the end, also when the test failed (before
    leak_check looks for what is left)."""
    runtime = tmp_path_factory.mktemp("runtime")
    runtime.chmod(0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    project = KeptProject(pytester, leak_check)
    yield project
    project.cli("stop", "--rootdir", str(pytester.path))


def test_kept_cluster_is_reused_by_the_next_run_then_stopped(kept_project: KeptProject):
    kept_project.pytester.makepyfile(test_cases=CASES)
    first = kept_project.run("--gold-keep-cluster")
    first.assert_outcomes(passed=4)
    first.stdout.fnmatch_lines(
        [
            f"gold: embedded cluster, {ENGINES} engines on 127.0.0.1, kept (--gold-keep-cluster)",
            "gold: embedded cluster on 127.0.0.1, kept for the next runs, started in *",
            "gold: the embedded cluster stays running (kept in *); the next 'pytest --gold' of "
            "this project attaches to it. It stops after 15 min without a run*",
        ]
    )
    state = kept_project.state()
    assert [p.pid for p in kept_project.controllers()] == [state.controller.pid]
    _assert_private(kept_project.paths, state)

    # Without --gold-keep-cluster: the kept cluster of this project is used, not a new one.
    second = kept_project.run()
    second.assert_outcomes(passed=4)
    second.stdout.fnmatch_lines(
        ["gold: attached to the kept embedded cluster on 127.0.0.1 in * s (up * min): 2 engines*"]
    )
    assert "started in" not in second.stdout.str()
    assert [p.pid for p in kept_project.controllers()] == [state.controller.pid]

    status = kept_project.cli("status")
    assert status.returncode == 0, status.stderr
    assert f"kept cluster of {kept_project.pytester.path.resolve()}: running" in status.stdout
    assert f"engines: {ENGINES}, {ENGINES} registered" in status.stdout
    assert "without a run (idle stop 15.0 min)" in status.stdout

    stop = kept_project.cli("stop")
    assert stop.returncode == 0, stop.stderr
    assert f"controller (pid {state.controller.pid})" in stop.stdout
    assert f"{ENGINES} engines" in stop.stdout and "idle watch (pid" in stop.stdout
    wait_for(lambda: not processes_with_token(kept_project.token), "nothing left running")
    assert not kept_project.paths.root.exists()
    assert "no kept cluster is running" in kept_project.cli("status").stdout
    assert "no kept cluster is running" in kept_project.cli("stop").stdout


def _assert_private(paths: KeptPaths, state: KeptState) -> None:
    """0700 directories, 0600 connection files, loopback only, signed messages."""
    for directory in (paths.root, paths.root.parent, Path(state.connection_file).parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    connection = Path(state.connection_file)
    assert stat.S_IMODE(connection.stat().st_mode) == 0o600
    info = json.loads(connection.read_text())
    assert info["interface"] == "tcp://127.0.0.1"
    assert info["key"] and info["signature_scheme"].startswith("hmac-")
    listening = [
        c.laddr.ip
        for c in psutil.Process(state.controller.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening and set(listening) == {"127.0.0.1"}


def test_kept_cluster_stops_itself_when_idle_but_not_during_a_run(kept_project: KeptProject):
    # The case runs for longer than the idle time: the run's own mark keeps the cluster.
    kept_project.pytester.makepyfile(
        """
        import time

        def test_longer_than_the_idle_time():
            time.sleep(3)
        """
    )
    result = kept_project.run("--gold-keep-cluster", "--gold-idle-stop=0.01")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["gold: the embedded cluster stays running*after 0.01 min*"])
    wait_for(lambda: not kept_project.paths.root.exists(), "the idle watch removed the cluster")
    wait_for(lambda: not processes_with_token(kept_project.token), "nothing left running")


def test_stale_kept_cluster_is_cleaned_up_and_started_afresh(kept_project: KeptProject):
    kept_project.pytester.makepyfile(test_cases=CASES)
    kept_project.run("--gold-keep-cluster").assert_outcomes(passed=4)
    old = kept_project.state()
    # Its idle watch too (else it may notice first, and clean up before the run looks).
    assert old.watch is not None
    for process in (old.watch, old.controller):
        os.kill(process.pid, signal.SIGKILL)
        wait_for(lambda process=process: not process.alive, f"pid {process.pid} is gone")

    again = kept_project.run("--gold-keep-cluster")
    again.assert_outcomes(passed=4)
    again.stdout.fnmatch_lines(
        [
            f"gold: the kept cluster of this project lost its controller (pid "
            f"{old.controller.pid}) (stopped what was left: {ENGINES} engines*; starting a "
            "new one.",
            "gold: embedded cluster on 127.0.0.1, kept for the next runs, started in *",
        ]
    )
    assert "Traceback" not in again.stdout.str() + again.stderr.str()
    new = kept_project.state()
    assert new.controller.pid != old.controller.pid
    assert not any(ref.alive for ref in old.engine_processes)
    assert [p.pid for p in kept_project.controllers()] == [new.controller.pid]


def test_idle_watch_stops_the_engines_of_a_lost_controller(kept_project: KeptProject):
    kept_project.pytester.makepyfile(test_cases=CASES)
    kept_project.run("--gold-keep-cluster").assert_outcomes(passed=4)
    controller = kept_project.state().controller
    os.kill(controller.pid, signal.SIGKILL)
    wait_for(lambda: not kept_project.paths.root.exists(), "the idle watch cleaned up")
    wait_for(lambda: not processes_with_token(kept_project.token), "nothing left running")


def test_kept_cluster_of_another_size_is_left_alone(kept_project: KeptProject):
    kept_project.pytester.makepyfile(test_cases=CASES)
    kept_project.run("--gold-keep-cluster").assert_outcomes(passed=4)
    kept = kept_project.state()
    other = kept_project.pytester.runpytest_subprocess(
        "--gold", "--gold-engines=1", "-p", "no:cacheprovider", timeout=RUN_SECONDS
    )
    other.assert_outcomes(passed=4)
    other.stdout.fnmatch_lines(
        [
            f"gold: the kept cluster of this project has {ENGINES} engines, --gold-engines asks "
            "for 1: this run starts an embedded cluster of its own*",
            "gold: embedded cluster on 127.0.0.1, started in *: 1 engine on 1 host*",
        ]
    )
    assert kept_project.state().controller == kept.controller and kept.controller.alive


CONFTEST_BEFORE = """
    import pytest

    @pytest.fixture
    def value():
        return 1
"""
CONFTEST_AFTER = """
    import pytest

    VALUE = 22

    @pytest.fixture
    def value():
        return VALUE
"""
TESTS_BEFORE = """
    def test_value(value):
        assert value == 1
"""
TESTS_AFTER = """
    def test_value(value):
        assert value == 1

    def test_added(value):
        assert value == 22
"""


def test_changed_test_file_and_conftest_are_picked_up(kept_project: KeptProject):
    pytester = kept_project.pytester
    pytester.makeconftest(CONFTEST_BEFORE)
    pytester.makepyfile(test_value=TESTS_BEFORE)
    kept_project.run("--gold-keep-cluster").assert_outcomes(passed=1)
    # The engine that ran the case starts a worker ahead for the next run once this one
    # ended: the change comes after that worker started (it must not run the suite as it
    # was when it started).
    wait_for(lambda: _standby_workers(kept_project) >= 1, "a worker started ahead")
    pytester.makeconftest(CONFTEST_AFTER)
    pytester.makepyfile(test_value=TESTS_AFTER)

    changed = kept_project.run("-v")
    changed.stdout.fnmatch_lines(["gold: attached to the kept embedded cluster*"])
    changed.assert_outcomes(passed=1, failed=1)
    changed.stdout.fnmatch_lines(["*PASSED test_value.py::test_added*", "E       assert 22 == 1"])
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    plain.assert_outcomes(passed=1, failed=1)


def _standby_workers(project: KeptProject) -> int:
    return sum("pytest_gold.worker" in _cmd(p) for p in processes_with_token(project.token))
