"""End-to-end: clusters of ipyparallel profiles (local launchers), started or attached to.

The SSH topology is in ``test_lab_cluster.py``; here the profile's own launchers are
local ones, which is enough for starting, stopping and keeping a profile's cluster.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import ipyparallel as ipp
import pytest

pytestmark = pytest.mark.cluster

#: Enough for a profile's two local engines to start and register on a busy machine.
REGISTER_SECONDS = 20

SWEEP = """
    import pytest

    @pytest.mark.parametrize("i", range(4))
    def test_sweep(i):
        assert i >= 0
"""

LOCAL_PROFILE = """
c = get_config()
c.Cluster.n = 2
c.Cluster.controller_ip = "127.0.0.1"
c.Cluster.controller_args = ["--HeartMonitor.period=500"]
c.LocalEngineSetLauncher.delay = 0
"""


@pytest.fixture
def ipython_dir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = pytester.path / "ipython"
    monkeypatch.setenv("IPYTHONDIR", str(path))
    pytester.makepyfile(test_sweep=SWEEP)
    return path


def make_profile(ipython_dir: Path, name: str, config: str) -> Path:
    profile = ipython_dir / f"profile_{name}"
    (profile / "security").mkdir(parents=True)
    (profile / "ipcluster_config.py").write_text(config)
    return profile


@pytest.fixture
def stop_profile_cluster(ipython_dir: Path) -> Iterator[list[Path]]:
    """Profiles whose clusters the test leaves running: stopped here, even on failure."""
    profiles: list[Path] = []
    yield profiles
    for profile in profiles:
        try:
            ipp.Cluster.from_file(profile_dir=str(profile), cluster_id="").stop_cluster_sync()
        except FileNotFoundError:
            pass


def start_kept(
    pytester: pytest.Pytester, ipython_dir: Path, name: str, stop_profile_cluster: list[Path]
) -> tuple[Path, pytest.RunResult]:
    """A run that starts the profile's cluster and keeps it (stopped by the fixture)."""
    profile = make_profile(ipython_dir, name, LOCAL_PROFILE)
    stop_profile_cluster.append(profile)
    result = pytester.runpytest_subprocess(
        "--gold", f"--gold-profile={name}", "--gold-keep-cluster"
    )
    result.assert_outcomes(passed=4)
    return profile, result


def test_profile_cluster_is_started_and_stopped(
    pytester: pytest.Pytester, ipython_dir: Path, leak_check: str
):
    profile = make_profile(ipython_dir, "local", LOCAL_PROFILE)
    result = pytester.runpytest_subprocess("--gold", "--gold-profile=local", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        # 1 or 2 engines: the run starts with the first that registers.
        ["gold: the cluster of profile 'local', started in *: * on 1 host*"]
    )
    # Stopped at the end: no connection file, and leak_check finds no process.
    assert not (profile / "security" / "ipcontroller-client.json").exists()


def test_keep_cluster_then_attach(
    pytester: pytest.Pytester, ipython_dir: Path, stop_profile_cluster: list[Path]
):
    _, first = start_kept(pytester, ipython_dir, "kept", stop_profile_cluster)
    first.stdout.fnmatch_lines(
        [
            "gold: the cluster of profile 'kept', started in*",
            "gold: the cluster of profile 'kept' stays running (--gold-keep-cluster)*"
            "ipcluster stop --profile=kept",
        ]
    )
    client = ipp.Client(profile="kept", timeout=30)
    try:
        assert len(client.ids) == 2
        engine_pids = set(client[:].apply_sync(os.getpid))
    finally:
        client.close()
    second = pytester.runpytest_subprocess("--gold", "--gold-profile=kept")
    second.assert_outcomes(passed=4)
    second.stdout.fnmatch_lines(["gold: attached to the cluster of profile 'kept': 2 engines*"])
    assert "started in" not in second.stdout.str()
    # Attached: the profile's engine count is read from its configuration.
    third = pytester.runpytest_subprocess(
        "--gold", "--gold-profile=kept", "--gold-min-engines=3", "--gold-wait=300"
    )
    assert third.ret == pytest.ExitCode.USAGE_ERROR
    third.stderr.fnmatch_lines(["*--gold-min-engines=3 *the profile 'kept' defines only 2*"])
    assert "waiting for engines" not in third.stdout.str()
    # A cluster the run attached to is never stopped by it: the same engines are still up.
    client = ipp.Client(profile="kept", timeout=30)
    try:
        assert set(client[:].apply_sync(os.getpid)) == engine_pids
    finally:
        client.close()


def test_permission_warning_for_readable_connection_file(
    pytester: pytest.Pytester, ipython_dir: Path, stop_profile_cluster: list[Path]
):
    profile, _ = start_kept(pytester, ipython_dir, "open", stop_profile_cluster)
    connection = profile / "security" / "ipcontroller-client.json"
    quiet = pytester.runpytest_subprocess("--gold", "--gold-profile=open")
    quiet.assert_outcomes(passed=4)
    assert "gold: warning" not in quiet.stdout.str()
    connection.chmod(0o644)
    loud = pytester.runpytest_subprocess("--gold", "--gold-profile=open")
    loud.assert_outcomes(passed=4)
    loud.stdout.fnmatch_lines(
        [f"gold: warning: the connection file {connection} can be read by others*"]
    )
    assert f"chmod 600 {connection}" in loud.stdout.str()
    # Never print a key.
    key = ipp.Client(profile="open", timeout=30)
    try:
        secret = key.session.key.decode()
    finally:
        key.close()
    assert secret and secret not in loud.stdout.str() + loud.stderr.str()
    assert stat.S_IMODE(connection.stat().st_mode) == 0o644  # reported, never changed


def test_profile_that_cannot_start_is_a_clear_error(
    pytester: pytest.Pytester, ipython_dir: Path, leak_check: str
):
    make_profile(
        ipython_dir, "broken", 'c = get_config()\nc.Cluster.engine_launcher_class = "nosuch"\n'
    )
    result = pytester.runpytest_subprocess("--gold", "--gold-profile=broken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --gold-profile broken: the profile has no running cluster, and starting it*"]
    )
    assert "Traceback" not in result.stderr.str()


def test_min_engines_above_what_the_profile_defines_is_said_at_once(
    pytester: pytest.Pytester, ipython_dir: Path, leak_check: str
):
    """Before the cluster starts: no wait (of --gold-wait=300) could ever be enough."""
    make_profile(ipython_dir, "small", LOCAL_PROFILE)
    # The profile's two engines must register (and pass the check) within --gold-wait for
    # the error to say so: 4 s were not enough on a busy machine.
    result = pytester.runpytest_subprocess(
        "--gold", "--gold-profile=small", "--gold-min-engines=3", "--gold-wait=300"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-gold: --gold-min-engines=3 asks for more engines than the cluster "
            "can have: the profile 'small' defines only 2, so the run would wait*"
            "'ipcluster engines --profile=small -n 1'*"
        ]
    )
    assert "waiting for engines" not in result.stdout.str()
    assert "started the cluster" not in result.stdout.str()
