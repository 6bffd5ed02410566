"""Processes that cases start and leave running are ended with their worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from pytest_gold.engine import leftovers

#: How long ended processes may take to be gone (reaped) after the run.
GONE_SECONDS = 15.0

LEAVING_SUITE = """
import os
import subprocess

PIDS = {pids!r}

def note(pid):
    with open(PIDS, "a") as file:
        file.write(f"{{pid}}\\n")

def test_child():
    note(subprocess.Popen(["sleep", "1000"]).pid)

def test_own_session():
    note(subprocess.Popen(["sleep", "1001"], start_new_session=True).pid)

def test_daemon_with_a_bare_environment():
    # A shell that exits at once: its background child is orphaned, without the
    # environment it came from.
    subprocess.run(
        f"sleep 1002 </dev/null >/dev/null 2>&1 & echo $! >> {{PIDS}}",
        shell=True,
        env={{"PATH": os.environ["PATH"]}},
        check=True,
    )
"""


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def exists(pid: int) -> bool:
    return psutil.pid_exists(pid)


def noted(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def wait_until(condition, seconds: float = GONE_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.cluster
def test_processes_left_running_are_ended_and_named(pytester: pytest.Pytester, gold_args):
    """A plain child, one in a session of its own and an orphan that lost its
    environment: all three ended when the run ends, said on the terminal, and reaped."""
    pids = pytester.path / "pids"
    pytester.makepyfile(LEAVING_SUITE.format(pids=str(pids)))
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider", "-q")
    try:
        result.assert_outcomes(passed=3)
        left = noted(pids)
        assert len(left) == 3
        assert not [pid for pid in left if running(pid)]
        ended = [line for line in result.stdout.lines if line.startswith("gold: ended ")]
        counts = [int(line.split()[2]) for line in ended]
        assert sum(counts) == 3, ended
        assert all(" left behind by tests on " in line for line in ended)
        named = dict(re.findall(r"(\d+) (sleep 100\d)", " ".join(ended)))
        assert sorted(named) == sorted(str(pid) for pid in left)
        assert sorted(named.values()) == ["sleep 1000", "sleep 1001", "sleep 1002"]
        # Not even zombies: the engines collect them once their workers have exited.
        assert wait_until(lambda: not [pid for pid in left if exists(pid)])
    finally:
        for pid in noted(pids) if pids.exists() else []:
            _kill(pid)


@pytest.mark.cluster
def test_keep_leaves_them_running(pytester: pytest.Pytester, gold_args):
    pids = pytester.path / "pids"
    pytester.makepyfile(LEAVING_SUITE.format(pids=str(pids)))
    pytester.makeini("[pytest]\ngold_leftovers = keep\n")
    try:
        result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider")
        result.assert_outcomes(passed=3)
        assert all(running(pid) for pid in noted(pids))
        assert "gold: ended" not in result.stdout.str()
    finally:
        for pid in noted(pids) if pids.exists() else []:
            _kill(pid)


@pytest.mark.cluster
def test_a_crashed_workers_processes_are_ended_at_once(pytester: pytest.Pytester, gold_args):
    pids = pytester.path / "pids"
    pytester.makepyfile(
        f"""
        import os
        import subprocess

        def test_starts_then_dies():
            pid = subprocess.Popen(["sleep", "1003"], start_new_session=True).pid
            with open({str(pids)!r}, "w") as file:
                file.write(str(pid))
            os._exit(3)

        def test_after():
            pass
        """
    )
    try:
        result = pytester.runpytest(
            *gold_args, "-p", "no:cacheprovider", "--gold-batch-seconds=60", "-rA"
        )
        result.assert_outcomes(passed=1, failed=1)
        (pid,) = noted(pids)
        assert not running(pid)
        result.stdout.fnmatch_lines_random(
            [
                "crashed its worker: exited with code 3 on *:e* (pid *)",
                f"gold: ended 1 process left behind by tests on *:e*: {pid} sleep 1003",
            ]
        )
    finally:
        for pid in noted(pids) if pids.exists() else []:
            _kill(pid)


@pytest.mark.cluster
def test_a_stopped_case_takes_its_process_group_and_names_what_left_it(
    pytester: pytest.Pytester, gold_args
):
    """A case stopped at its time limit: the program it was waiting for goes with its
    process group (its work, not a leftover); one that left the group is named."""
    pids = pytester.path / "pids"
    pytester.makepyfile(
        f"""
        import subprocess

        import pytest

        def note(pid):
            with open({str(pids)!r}, "a") as file:
                file.write(f"{{pid}}\\n")

        @pytest.mark.gold(timeout=1)
        def test_hangs():
            note(subprocess.Popen(["sleep", "1005"], start_new_session=True).pid)
            waited_for = subprocess.Popen(["sleep", "1006"])
            note(waited_for.pid)
            waited_for.wait()
        """
    )
    try:
        result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider")
        result.assert_outcomes(failed=1)
        left_the_group, waited_for = noted(pids)
        assert wait_until(lambda: not running(left_the_group) and not running(waited_for))
        ended = [line for line in result.stdout.lines if line.startswith("gold: ended ")]
        assert len(ended) == 1 and ended[0].endswith(f": {left_the_group} sleep 1005"), ended
    finally:
        for pid in noted(pids) if pids.exists() else []:
            _kill(pid)


def test_orphans_are_found_by_the_token_they_inherit():
    """Without a subreaper (this test process is none), an orphan that started a
    session of its own is found anywhere by the worker token in its environment."""
    token = uuid.uuid4().hex
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess; "
            "print(subprocess.Popen(['sleep', '1004'], start_new_session=True, "
            "stdout=subprocess.DEVNULL).pid)",
        ],
        env={**os.environ, leftovers.WORKER_TOKEN_ENV: token},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, _ = starter.communicate(timeout=60)
    orphan = int(out)
    try:
        found = leftovers.find_leftovers(starter.pid, token, set())
        assert found == [orphan]
        assert leftovers.find_leftovers(starter.pid, uuid.uuid4().hex, set()) == []
        assert leftovers.end_processes(found) == [f"{orphan} sleep 1004"]
        assert wait_until(lambda: not running(orphan))
    finally:
        _kill(orphan)


def _kill(pid: int) -> None:
    try:
        psutil.Process(pid).kill()
    except psutil.NoSuchProcess:
        pass


def test_bad_leftovers_mode_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--gold", "--gold-leftovers=kill")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --gold-leftovers (ini gold_leftovers) must be one of end, keep, not 'kill'."]
    )
