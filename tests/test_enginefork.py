"""--gold-fork-engines: the embedded cluster's engines are forked from one zygote (issue 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pytest_gold.launch.enginezygote import UsageError, parse

ENGINE_COMMAND = [sys.executable, "-m", "ipyparallel.engine"]

PLACEMENT = """
    import os

    import pytest


    def parent_of(pid):
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])


    @pytest.mark.parametrize("i", range(4))
    def test_where(i):
        engine = os.getppid()  # the worker's parent is its engine
        zygote = parent_of(engine)
        with open(f"/proc/{zygote}/cmdline", "rb") as cmdline:
            command = cmdline.read().replace(b"\\0", b" ").decode()
        with open(f"placement-{i}.txt", "w") as out:
            out.write(f"{engine} {zygote} {command}")
"""


@pytest.mark.cluster
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_embedded_engines_are_forked_from_one_zygote(pytester: pytest.Pytester, leak_check: str):
    pytester.makepyfile(test_where=PLACEMENT)
    result = pytester.runpytest_subprocess(
        "--gold", "--gold-engines=2", "--gold-fork-engines", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=4)
    placements = [
        (pytester.path / f"placement-{i}.txt").read_text().split(" ", 2) for i in range(4)
    ]
    zygotes = {zygote for _, zygote, _ in placements}
    assert len(zygotes) == 1, placements  # every engine: the same parent
    command = placements[0][2]
    assert "pytest_gold.launch.enginezygote -n 2" in command, command
    assert "-m ipyparallel.engine --IPEngine.enable_nanny=False" in command, command
    # leak_check: the zygote went with its engines.


def test_parse_takes_the_count_and_the_engine_arguments():
    assert parse(["-n", "3", *ENGINE_COMMAND, "--a=1", "--b"]) == (3, ["--a=1", "--b"])
    assert parse(["-n", "1", *ENGINE_COMMAND]) == (1, [])


@pytest.mark.parametrize(
    "argv, says",
    [
        (["-n", "x", *ENGINE_COMMAND], "-n takes a number of engines, not 'x'"),
        (["-n", "0", *ENGINE_COMMAND], "at least 1 engine"),
        (["-n", "2", sys.executable, "-m", "other"], "usage:"),
        (["2", *ENGINE_COMMAND], "usage:"),
        ([], "usage:"),
    ],
)
def test_parse_refuses_other_command_lines(argv: list[str], says: str):
    with pytest.raises(UsageError, match=says if says != "usage:" else "^usage:"):
        parse(argv)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_zygote_passes_sigterm_on_and_exits_with_its_engines(tmp_path):
    """Without a controller the forked engines wait for its connection file: a SIGTERM to
    the zygote ends them all, and the zygote exits once they have."""
    missing = tmp_path / "no-controller.json"
    zygote = subprocess.Popen(
        [sys.executable, "-m", "pytest_gold.launch.enginezygote", "-n", "2", *ENGINE_COMMAND,
         f"--IPEngine.url_file={missing}", "--IPEngine.wait_for_url_file=120"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        engines: list[int] = []
        while len(engines) < 2 and time.monotonic() < deadline:
            with open(f"/proc/{zygote.pid}/task/{zygote.pid}/children") as children:
                engines = [int(pid) for pid in children.read().split()]
            time.sleep(0.05)
        assert len(engines) == 2, engines
        zygote.send_signal(signal.SIGTERM)
        assert zygote.wait(timeout=60) == 0
        for pid in engines:
            assert not os.path.exists(f"/proc/{pid}/stat") or _zombie(pid), pid
    finally:
        if zygote.poll() is None:
            os.killpg(zygote.pid, signal.SIGKILL)
            zygote.wait()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
