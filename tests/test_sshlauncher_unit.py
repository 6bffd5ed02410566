"""pytest-gold's SSH engine launcher with a fake ssh that runs the host's script here.

The fake logs which host got which script (its first line names it), so the tests see how
many ssh commands starting, watching and stopping take: one per host, not per engine. The
"engines" are ``sleep`` processes. The real thing, sshd and all, is in test_lab_cluster.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pytest_gold.launch import hostscripts
from pytest_gold.launch.sshlauncher import GoldSSHEngineSetLauncher

#: How long the launcher gets to notice things (a generous bound, never a sleep).
NOTICE_SECONDS = 30.0

FAKE_SSH = """#!/bin/sh
# ssh ARGS... HOST sh -s, run here: log the host and the script's title line
script=$(cat)
host=unknown
for arg; do case "$arg" in host* | *@host*) host=$arg ;; esac; done
printf '%s %s\\n' "$host" "$(printf '%s\\n' "$script" | head -n 1)" >> "{log}"
if [ "$host" = hostdown ]; then
  echo "ssh: connect to host hostdown port 22: No route to host" >&2
  exit 255
fi
printf '%s\\n' "$script" | exec sh -s
"""


@pytest.fixture
def fake_ssh(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "ssh.log"
    log.touch()
    command = tmp_path / "fake-ssh"
    command.write_text(FAKE_SSH.format(log=log))
    command.chmod(command.stat().st_mode | stat.S_IXUSR)
    return command, log


def make_set(tmp_path: Path, command: Path, engines: dict) -> GoldSSHEngineSetLauncher:
    profile = tmp_path / "profile_lab"
    (profile / "log").mkdir(parents=True, exist_ok=True)
    launcher = GoldSSHEngineSetLauncher(
        profile_dir=str(profile),
        cluster_id="t",
        engine_set_id="1",
        engines=engines,
        ssh_cmd=[str(command)],
        engine_cmd=["sh", "-c", "echo engine $PYTEST_GOLD_HOST; exec sleep 300"],
        log=logging.getLogger("test-sshlauncher"),
    )
    launcher.watch_seconds = 2.0
    launcher.stop_seconds_until_kill = 3
    return launcher


def titles(log: Path, kind: str) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines() if line.endswith(kind)]


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + NOTICE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"not within {NOTICE_SECONDS} s: {what}"
        await asyncio.sleep(0.1)


def test_one_ssh_command_per_host_starts_watches_and_stops(tmp_path, fake_ssh):
    command, log = fake_ssh
    engines = {
        "hosta": 2,
        "me@hostb": {"n": 1, "environment": {"PYTEST_GOLD_HOST": "b"}},
    }
    launcher = make_set(tmp_path, command, engines)
    stopped: list[dict] = []

    async def scenario() -> None:
        started = launcher.start(3)
        launcher.on_stop(stopped.append)
        assert sorted(started) == ["hosta/0", "hosta/1", "me@hostb/0"]
        assert sorted(titles(log, "start engines")) == ["hosta", "me@hostb"]  # not per engine
        assert engines["me@hostb"]["n"] == 1  # the configuration is left as it was
        pids = {key: el.pid for key, el in launcher.launchers.items()}
        assert all(running(pid) for pid in pids.values())
        # Its pid is the engine's from the start (nohup, setsid and env exec in turn).
        engine_b = psutil.Process(pids["me@hostb/0"])
        await until(lambda: "PYTEST_GOLD_HOST" in engine_b.environ(), "env applied")
        assert engine_b.environ()["PYTEST_GOLD_HOST"] == "b"
        assert engine_b.environ()["IPP_CLUSTER_ID"] == "t"
        # An engine that dies is noticed by its host's watcher.
        os.kill(pids["hosta/1"], signal.SIGKILL)
        await until(lambda: "hosta/1" not in launcher.launchers, "hosta/1 noticed as stopped")
        assert launcher.stop_data["engines"]["hosta/1"]["exit_code"] == -1
        output = launcher.launchers["hosta/0"]
        await until(lambda: Path(output.local_output_file).exists(), "the engine's output file")
        await launcher.stop()
        assert sorted(titles(log, "stop engines")) == ["hosta", "me@hostb"]
        await until(lambda: not any(map(running, pids.values())), "every engine gone")
        assert not launcher.launchers and stopped
        codes = {key: data["exit_code"] for key, data in stopped[0]["engines"].items()}
        assert codes == {"hosta/0": 0, "hosta/1": -1, "me@hostb/0": 0}  # -1: died, unasked
        assert launcher.outputs["me@hostb/0"] == "engine b\n"  # read where it is, not fetched
        assert not list((tmp_path / "profile_lab" / "log").glob("ipengine-*"))
        await until(lambda: not ssh_children(command), "the watchers' ssh commands ended")

    try:
        asyncio.run(scenario())
    finally:
        kill_all(launcher)


def test_a_host_that_cannot_be_reached_is_logged_and_the_others_start(tmp_path, fake_ssh, caplog):
    command, _ = fake_ssh
    launcher = make_set(tmp_path, command, {"hostdown": 2, "hosta": 1})

    async def scenario() -> None:
        with caplog.at_level(logging.ERROR, logger="test-sshlauncher"):
            assert launcher.start(3) == ["hosta/0"]
        assert launcher.n == 1
        assert "could not start 2 of the 2 engines on hostdown" in caplog.text
        assert "No route to host" in caplog.text
        await launcher.stop()

    try:
        asyncio.run(scenario())
    finally:
        kill_all(launcher)


def test_no_host_at_all_is_an_error(tmp_path, fake_ssh):
    command, _ = fake_ssh
    launcher = make_set(tmp_path, command, {"hostdown": 1})

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match=r"hostdown.*No route to host"):
            launcher.start(1)

    asyncio.run(scenario())


def test_an_engine_deaf_to_sigterm_is_killed(tmp_path, fake_ssh):
    command, _ = fake_ssh
    launcher = make_set(tmp_path, command, {"hosta": 1})
    launcher.engine_cmd = ["sh", "-c", "trap '' TERM; echo deaf; while :; do sleep 1; done"]

    async def scenario() -> None:
        launcher.start(1)
        engine = launcher.launchers["hosta/0"]
        pid = engine.pid
        output = Path(engine.local_output_file)
        await until(lambda: output.exists() and "deaf" in output.read_text(), "SIGTERM ignored")
        await launcher.stop()
        assert launcher.stop_data["engines"]["hosta/0"]["exit_code"] == -signal.SIGKILL
        await until(lambda: not running(pid), "the SIGKILLed engine gone")

    try:
        asyncio.run(scenario())
    finally:
        kill_all(launcher)


def test_scripts_treat_gone_engines_as_no_error():
    script = hostscripts.signal_script([2**22 + 12345], "TERM")
    assert script.splitlines()[0] == "# pytest-gold: signal engines"
    assert script.rstrip().endswith("exit 0")


def ssh_children(command: Path) -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and str(command) in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def kill_all(launcher: GoldSSHEngineSetLauncher) -> None:
    """Whatever a failed test left running."""
    launcher._stop_watching()
    for engine in list(launcher.launchers.values()):
        try:
            os.kill(engine.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


#: An "engine" that starts a child in a session of its own (as ipyparallel's engine starts
#: its nanny), says the child's pid, and waits.
ENGINE_WITH_NANNY = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(1000)\n"
)


def test_stopping_engines_ends_the_children_they_leave(tmp_path):
    """The nanny of an engine can outlive it (it waits for a controller that is gone):
    the stop script ends it too, and reports nothing for it."""
    engine = subprocess.Popen(
        [sys.executable, "-c", ENGINE_WITH_NANNY], stdout=subprocess.PIPE, text=True
    )
    nanny_pid = int(engine.stdout.readline())
    nanny = psutil.Process(nanny_pid)
    try:
        stop = subprocess.run(
            ["sh", "-c", hostscripts.stop_script([engine.pid], 2.0)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert stop.returncode == 0, stop.stderr
        assert "__stopped=1__" in stop.stdout and "__killed=" not in stop.stdout
        engine.wait(timeout=10)
        # Orphaned: init (or the nearest subreaper) reaps it; gone or a zombie is gone.
        deadline = time.monotonic() + 10
        while nanny.is_running() and nanny.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the engine's child outlived the stop"
            time.sleep(0.05)
    finally:
        for process in (engine,):
            if process.poll() is None:
                process.kill()
                process.wait()
        try:
            nanny.kill()
        except psutil.Error:
            pass
