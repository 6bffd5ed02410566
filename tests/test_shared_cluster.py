"""End-to-end: several runs share one cluster (two people on the lab cluster).

Each run keeps its own worker per engine, whatever the other runs do there: its session
fixtures are set up once per engine and torn down at its end; a stop of one run never
cuts short the case of another; a run whose pytest is killed leaves no worker behind.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from pytest_gold.engine import supervisor as engine_module

from .conftest import REPLY_SECONDS
from .inner import InnerPytest

pytestmark = pytest.mark.cluster

#: How long a case or the test waits for the other side of a hand-over.
HANDOVER_SECONDS = 120.0
#: Cases per run: enough that the engines take turns between the runs.
CASES = 8

#: A run's suite: a session fixture that notes its setup and teardown with the engine
#: and the worker, and cases of which the first waits until the other run has started
#: cases too (so that the two runs use the engines at the same time).
SHARED_CONFTEST = """
    import os
    import pytest

    @pytest.fixture(scope="session")
    def tables():
        with open("fixture.log", "a") as log:
            log.write(f"setup {os.getppid()} {os.getpid()}\\n")
        yield
        with open("fixture.log", "a") as log:
            log.write(f"teardown {os.getppid()} {os.getpid()}\\n")
"""
SHARED_CASES = """
    import os
    import time
    import pytest

    @pytest.mark.parametrize("i", range({cases}))
    def test_case(i, tables):
        open("started", "w").close()
        with open("cases.log", "a") as log:
            log.write(f"{{os.getppid()}} {{os.getpid()}}\\n")
        if i == 0:
            deadline = time.monotonic() + {handover}
            while not os.path.exists({other!r}):
                assert time.monotonic() < deadline, "the other run never started a case"
                time.sleep(0.05)
"""


def make_suite(root: Path, name: str, other: str) -> Path:
    suite = root / name
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "conftest.py").write_text(_dedent(SHARED_CONFTEST))
    (suite / "test_shared.py").write_text(
        _dedent(
            SHARED_CASES.format(
                cases=CASES, handover=HANDOVER_SECONDS, other=str(root / other / "started")
            )
        )
    )
    return suite


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).lstrip()


def test_two_runs_at_once_each_keep_their_own_worker_per_engine(
    pytester: pytest.Pytester, gold_args
):
    suites = [make_suite(pytester.path, "a", "b"), make_suite(pytester.path, "b", "a")]
    runs = [InnerPytest(suite, *gold_args, "-p", "no:cacheprovider") for suite in suites]
    try:
        codes = [run.finish(timeout=HANDOVER_SECONDS + 120) for run in runs]
    finally:
        for run in runs:
            run.__exit__(None, None, None)
    for suite, run, code in zip(suites, runs, codes, strict=True):
        assert code == 0, run.output
        assert f"{CASES} passed" in run.output, run.output
        log = (suite / "fixture.log").read_text().split()
        setups = [tuple(log[i + 1 : i + 3]) for i in range(0, len(log), 3) if log[i] == "setup"]
        teardowns = [
            tuple(log[i + 1 : i + 3]) for i in range(0, len(log), 3) if log[i] == "teardown"
        ]
        engines = [engine for engine, _ in setups]
        # Once per engine it used, torn down once at the end: never rebuilt because the
        # other run used the same engine meanwhile.
        assert len(engines) == len(set(engines)), (suite.name, setups)
        assert sorted(teardowns) == sorted(setups), (suite.name, setups, teardowns)
        # And every case ran in its run's one worker on its engine.
        ran = {tuple(line.split()) for line in (suite / "cases.log").read_text().splitlines()}
        assert ran <= set(setups), (suite.name, ran, setups)


def wait_for(path: Path, seconds: float = HANDOVER_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def test_the_stop_of_one_run_does_not_cut_short_the_case_of_another(
    pytester: pytest.Pytester, gold_args, gold_cluster
):
    """Run A stops (-x, Ctrl-C) while run B's case runs on an engine where A's batch
    waits: A's interruption signal reaches that engine, and B's case goes on."""
    client = gold_cluster.client
    # Run A, as far as the engines know it: its engine check gave it its own signal.
    infos = [
        client[eid]
        .apply_async(engine_module.remote_engine_info, eid, "", "", "run-a", {})
        .get(timeout=REPLY_SECONDS)
        for eid in client.ids
    ]
    signals = {info["pid"]: info["interrupt_signal"] for info in infos}
    assert all(number != engine_module.INTERRUPT_SIGNAL for number in signals.values())
    pytester.makepyfile(
        """
        import os
        import time

        def wait_for(name):
            deadline = time.monotonic() + 120
            while not os.path.exists(name):
                assert time.monotonic() < deadline, name
                time.sleep(0.05)

        def test_long():
            with open("engine.pid", "w") as file:
                file.write(str(os.getppid()))
            wait_for("signalled")
            print("after the signal", flush=True)
            wait_for("seen")
            print("looked again", flush=True)
            wait_for("release")
        """
    )
    try:
        with InnerPytest(pytester.path, *gold_args, "-p", "no:cacheprovider", "-s") as run:
            wait_for(pytester.path / "engine.pid")
            engine_pid = int((pytester.path / "engine.pid").read_text())
            os.kill(engine_pid, signals[engine_pid])
            _wait_not_pending(engine_pid, signals[engine_pid])
            (pytester.path / "signalled").touch()
            # Each line is relayed by the engine's loop, which looks for interruption
            # requests each time round: the second shows it looked after the signal.
            run.read_until("after the signal")
            (pytester.path / "seen").touch()
            run.read_until("looked again")
            (pytester.path / "release").touch()
            code = run.finish(timeout=HANDOVER_SECONDS)
    finally:
        client[:].apply_async(engine_module.remote_finish_run, "run-a").get(timeout=REPLY_SECONDS)
    assert code == 0, run.output
    assert "1 passed" in run.output, run.output


def _wait_not_pending(pid: int, number: int) -> None:
    """Until the process has taken the signal (its handler ran)."""
    bit = 1 << (number - 1)
    deadline = time.monotonic() + REPLY_SECONDS
    while True:
        status = Path(f"/proc/{pid}/status").read_text()
        pending = 0
        for line in status.splitlines():
            if line.startswith(("SigPnd:", "ShdPnd:")):
                pending |= int(line.split()[1], 16)
        if not pending & bit:
            return
        assert time.monotonic() < deadline, "the engine never took the signal"
        time.sleep(0.01)


def test_a_killed_run_leaves_no_worker_behind(pytester: pytest.Pytester, gold_args):
    """Its pytest is killed (no finish): the engine on its machine stops its case and
    ends its worker, whose fixtures are torn down."""
    pytester.makeconftest(SHARED_CONFTEST)
    pytester.makepyfile(
        """
        import os
        import time

        def test_forever(tables):
            with open("worker.pid", "w") as file:
                file.write(str(os.getpid()))
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                time.sleep(0.05)
        """
    )
    with InnerPytest(pytester.path, *gold_args, "-p", "no:cacheprovider") as run:
        wait_for(pytester.path / "worker.pid")
        worker = int((pytester.path / "worker.pid").read_text())
        run.process.send_signal(signal.SIGKILL)  # no finish, no atexit in pytest
        run.process.wait()
    deadline = time.monotonic() + HANDOVER_SECONDS
    while _alive(worker):
        assert time.monotonic() < deadline, "the killed run's worker is still running"
        time.sleep(0.1)
    assert "teardown" in (pytester.path / "fixture.log").read_text()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return False
