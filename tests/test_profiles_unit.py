"""Profiles and the engine check without a cluster: parsing, rendering, summarising."""

from __future__ import annotations

import datetime
from pathlib import Path

import ipyparallel as ipp
import pytest
from traitlets.config.loader import PyFileConfigLoader

from pytest_gold.cli.main import main
from pytest_gold.launch.attaching import explicit_engine_count, permission_warnings
from pytest_gold.launch.profiles import (
    BLAS_THREAD_ENV,
    LAUNCHER_PATH,
    ProfileError,
    ProfileSpec,
    describe,
    parse_ssh_host,
    render_config,
    render_controller_config,
    summarize,
)
from pytest_gold.launch.sshlauncher import GoldSSHEngineSetLauncher
from pytest_gold.policy.enginecheck import Expected, mismatches
from pytest_gold.protocol.control import PROTOCOL_VERSION
from pytest_gold.protocol.messages import EngineInfo

NOW = datetime.datetime(2026, 1, 1)
SPEC = ProfileSpec(
    hosts=[parse_ssh_host("gold2.example.org:4"), parse_ssh_host("me@gold3:2")],
    controller_ip="10.0.0.1",
    remote_python="/shared/venv/bin/python",
    ssh_args=["-F", "/shared/ssh_config"],
    environment={"OMP_NUM_THREADS": "2"},
)


def load(tmp_path: Path, text: str):
    (tmp_path / "ipcluster_config.py").write_text(text)
    return PyFileConfigLoader("ipcluster_config.py", path=str(tmp_path)).load_config()


@pytest.mark.parametrize("text", ["gold2", "gold2:0", "gold2:x", ":4", "gold 2:4", "a:b:4"])
def test_bad_ssh_hosts_are_explained(text):
    with pytest.raises(ProfileError, match="expected HOST:ENGINES"):
        parse_ssh_host(text)


def test_rendered_profile_is_ipyparallel_config(tmp_path):
    text = render_config(
        SPEC, "python -m pytest_gold profile create gold ...", datetime.datetime(2026, 1, 1)
    )
    config = load(tmp_path, text)
    assert config.Cluster.engine_launcher_class == LAUNCHER_PATH
    assert config.Cluster.n == 6  # explicit, not capped at this machine's CPUs
    assert config.Cluster.controller_ip == "10.0.0.1"
    engines = config.SSHEngineSetLauncher.engines
    assert engines["gold2.example.org"]["n"] == 4 and engines["me@gold3"]["n"] == 2
    env = engines["me@gold3"]["environment"]
    assert env["OMP_NUM_THREADS"] == "2"  # the user's value wins
    assert env["MKL_NUM_THREADS"] == BLAS_THREAD_ENV["MKL_NUM_THREADS"]
    assert env["PYTEST_GOLD_HOST"] == "gold3"
    assert config.SSHEngineLauncher.to_send == [] and config.SSHEngineLauncher.to_fetch == []
    assert config.SSHEngineSetLauncher.remote_python == "/shared/venv/bin/python"
    assert config.SSHEngineSetLauncher.ssh_args == ["-F", "/shared/ssh_config"]


def test_ipyparallel_reads_the_profile_with_its_explicit_count(tmp_path):
    (tmp_path / "security").mkdir()
    (tmp_path / "ipcluster_config.py").write_text(
        render_config(SPEC, "cmd", datetime.datetime(2026, 1, 1))
    )
    cluster = ipp.Cluster(profile_dir=str(tmp_path), cluster_id="", shutdown_atexit=False)
    assert cluster.engine_launcher_class is GoldSSHEngineSetLauncher
    assert explicit_engine_count(cluster) == 6
    # The cluster file names the launcher so that 'ipcluster stop' finds it again.
    state = cluster.to_dict()
    assert state["engines"]["class"] == LAUNCHER_PATH
    again = ipp.Cluster.from_dict(state, shutdown_atexit=False)
    assert again.engine_launcher_class is GoldSSHEngineSetLauncher


def test_profiles_notice_a_lost_engine_within_ten_seconds(tmp_path):
    (tmp_path / "ipcontroller_config.py").write_text(
        render_controller_config("cmd", datetime.datetime(2026, 1, 1))
    )
    config = PyFileConfigLoader("ipcontroller_config.py", path=str(tmp_path)).load_config()
    period, misses = config.HeartMonitor.period, config.HeartMonitor.max_heartmonitor_misses
    assert period * (misses + 1) == 10_000  # ipyparallel's default: 33 s
    lines = describe(
        summarize("gold", tmp_path, load(tmp_path, render_config(SPEC, "cmd", NOW)), False, config),
        cpu_count=4,
    )
    assert (
        "  lost engines noticed after: 10 s (heartbeat 1000 ms, 10 missed in a row; "
        in "\n".join(lines)
    )
    assert "  ssh launcher: pytest-gold's (one ssh command per host, all hosts at once)" in lines


def test_unset_count_is_the_sum_of_the_hosts(tmp_path):
    (tmp_path / "security").mkdir()
    (tmp_path / "ipcluster_config.py").write_text(
        "c = get_config()\nc.Cluster.engine_launcher_class = 'ssh'\n"
        "c.SSHEngineSetLauncher.engines = {'a': 16, 'b': {'n': 16}}\n"
    )
    cluster = ipp.Cluster(profile_dir=str(tmp_path), cluster_id="")
    assert cluster.n is None
    assert explicit_engine_count(cluster) == 32


def test_show_warns_about_a_capped_count(tmp_path):
    config = load(
        tmp_path,
        "c = get_config()\nc.Cluster.engine_launcher_class = 'ssh'\n"
        "c.SSHEngineSetLauncher.engines = {'a': 16, 'b': 16}\n",
    )
    lines = describe(summarize("gold", tmp_path, config, running=False), cpu_count=4)
    text = "\n".join(lines)
    assert "no explicit count: at most 4" in text
    assert "set c.Cluster.n = 32" in text
    assert "copied to each host" in text
    # ipyparallel's own launcher: slow to stop; pytest-gold's profiles have their own.
    assert "ssh launcher: ipyparallel's" in text and "fetching each engine's log" in text
    assert "33 s (heartbeat 3000 ms, 11 missed in a row, ipyparallel's default)" in text


def test_cli_create_then_show(tmp_path, capsys):
    ipython = tmp_path / "ipython"
    argv = ["profile", "create", "gold", "--ipython-dir", str(ipython), "--controller-ip=10.0.0.1"]
    assert main([*argv, "--ssh-host=gold2:4", "--ssh-host=gold3:4"]) == 0
    created = capsys.readouterr().out
    assert "engines: ssh launcher, 8" in created and "ipcluster start --profile=gold" in created
    assert f"wrote {ipython / 'profile_gold' / 'ipcontroller_config.py'}" in created
    assert main([*argv, "--ssh-host=gold2:4"]) == 2  # never overwrites silently
    assert "--force" in capsys.readouterr().err
    assert main(["profile", "show", "gold", "--ipython-dir", str(ipython)]) == 0
    shown = capsys.readouterr().out
    assert "gold2: 4" in shown and "gold3: 4" in shown and "nothing copied" in shown
    assert main(["profile", "show", "nosuch", "--ipython-dir", str(ipython)]) == 2
    assert "profile create nosuch" in capsys.readouterr().err


EXPECTED = Expected(
    python="3.11.7", pytest="9.2.0", pytest_gold="0.1.0", rootdir="/proj", invocation_dir="/proj"
)


def engine(**changes) -> EngineInfo:
    base = dict(
        engine_id=3,
        host="gold4",
        pid=1,
        python="3.11.2",
        executable="/usr/bin/python3",
        platform="linux",
        pytest_gold="0.1.0",
        pytest="9.2.0",
        protocol=PROTOCOL_VERSION,
    )
    return EngineInfo(**{**base, **changes})


def test_same_minor_python_and_versions_pass():
    assert mismatches(EXPECTED, engine()) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"python": "3.12.1"}, "Python 3.12.1 (/usr/bin/python3) where this run has Python 3.11.7"),
        ({"pytest": "8.4.0"}, "pytest 8.4.0 where this run has 9.2.0"),
        ({"pytest_gold": "0.0.9"}, "pytest-gold 0.0.9 where this run has 0.1.0"),
        ({"rootdir_visible": False}, "the rootdir /proj does not exist there"),
        ({"cwd_usable": False}, "the directory /proj cannot be its working directory"),
    ],
)
def test_each_mismatch_is_named(changes, expected):
    assert mismatches(EXPECTED, engine(**changes)) == [expected]


def test_permission_warnings(tmp_path):
    secret = tmp_path / "security" / "ipcontroller-client.json"
    secret.parent.mkdir(mode=0o700)
    secret.write_text("{}")
    secret.chmod(0o600)
    assert permission_warnings(secret) == []
    secret.chmod(0o640)
    secret.parent.chmod(0o755)
    warnings = permission_warnings(secret)
    assert f"chmod 600 {secret}" in warnings[0]
    assert f"chmod 700 {secret.parent}" in warnings[1]
