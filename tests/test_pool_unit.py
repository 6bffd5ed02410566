"""The controller's engine checks and signals, with fakes in place of ipyparallel.

The engine checks run through the :class:`~pytest_gold.controller.driver.Driver` and the
pure :class:`~pytest_gold.policy.run.Run` it feeds; time is passed in, never slept.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import pytest_gold
from pytest_gold.controller import tasks
from pytest_gold.controller.driver import Driver
from pytest_gold.controller.enginepool import CHECK_SETTLE_SECONDS
from pytest_gold.controller.faults import signal_engines
from pytest_gold.controller.progress import Progress
from pytest_gold.engine import supervisor as engine_module
from pytest_gold.policy.run import EngineState, Run
from pytest_gold.policy.scheduling import DispatchQueue
from pytest_gold.protocol.identity import ControllerId
from pytest_gold.protocol.messages import (
    BatchResult,
    LogFinish,
    LogStart,
    NotRun,
    ReportEvent,
    to_wire,
)
from pytest_gold.worker.freshness import changed_since


class FakeResult:
    """An engine check in flight: answered once ``answer`` is set; never waits."""

    def __init__(self) -> None:
        self.answer: dict[str, Any] | None = None

    def ready(self) -> bool:
        return self.answer is not None

    def wait(self, timeout: float | None = None) -> None:
        assert self.answer is not None, "the run waited on an engine check"

    def get(self, timeout: float | None = None) -> dict[str, Any]:
        if self.answer is None:
            raise TimeoutError("Result not ready.")
        return self.answer


class FakeClient:
    """ipyparallel's client as far as engine checks and signals go; ``answers``: checks
    are answered at once (as a matching engine would)."""

    def __init__(self, answers: bool = False) -> None:
        self.ids: list[int] = []
        self.checks: dict[int, FakeResult] = {}
        self.signals: list[tuple[str, list[int]]] = []
        self.answers = answers

    def __getitem__(self, eid: int) -> Any:
        def apply_async(function: Any, *args: Any) -> FakeResult:
            assert tasks.is_check(function)
            result = self.checks.setdefault(eid, FakeResult())
            if self.answers and result.answer is None:
                result.answer = answer(eid)
            return result

        return SimpleNamespace(apply_async=apply_async)

    def send_signal(self, name: str, targets: list[int], block: bool) -> None:
        self.signals.append((name, targets))


class FakeTerminal:
    """The lines a run writes."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.status_line = SimpleNamespace(clear=lambda: None, shown=False)

    def write_line(self, text: str, *, problem: bool = False, always: bool = False) -> None:
        self.lines.append(text)

    def notice(self, text: str) -> None:
        self.lines.append(text)

    def write_output(self, text: str) -> None:
        pass


def make_driver(
    client: FakeClient,
    *,
    wait_seconds: float = 60.0,
    min_engines: int = 1,
    cases: tuple[str, ...] = ("t::a", "t::b"),
    started_at: float = 100.0,
    handle: Any = None,
) -> Driver:
    """A Driver on fakes; ``driver.hook_calls`` records the hooks it calls."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def recorder(name: str) -> Any:
        return lambda **kwargs: calls.append((name, kwargs))

    config = SimpleNamespace(
        rootpath=Path.cwd(),
        invocation_params=SimpleNamespace(dir=Path.cwd()),
        hook=SimpleNamespace(
            pytest_gold_cluster_ready=recorder("cluster_ready"),
            pytest_gold_engine_lost=recorder("engine_lost"),
        ),
    )
    queue = DispatchQueue(list(cases), engine_count=1, target_batch_seconds=1.0)
    run = Run(
        queue,
        min_engines=min_engines,
        wait_seconds=wait_seconds,
        settle_seconds=CHECK_SETTLE_SECONDS,
        started_at=started_at,
    )
    driver = Driver(
        config,
        handle or SimpleNamespace(client=client),
        run,
        FakeTerminal(),
        Progress(total=len(cases)),
        run_id="run",
        controller_id=ControllerId(),
        engine_nodes=None,
        replayer=None,
        ticker=None,
        stream_output=False,
    )
    driver.hook_calls = calls
    return driver


def answer(eid: int, **changes: Any) -> dict[str, Any]:
    info = dataclasses.replace(engine_module.engine_info(), engine_id=eid, **changes)
    return to_wire(info)


def test_engines_joining_later_never_hold_up_the_run():
    client = FakeClient()
    driver = make_driver(client)
    client.ids = [0]
    client.checks[0] = FakeResult()
    client.checks[0].answer = answer(0)
    driver.discover(100.0)
    assert driver.run.usable == [0]
    driver.initial = False  # the run started

    client.ids = [0, 1, 2]  # two engines registered while cases run
    driver.discover(101.0)  # FakeResult.wait asserts if this blocks on them
    assert driver.run.usable == [0]
    assert set(driver.checks.pending) == {1, 2}
    assert driver.run.engines_in(EngineState.CHECKING) == [1, 2]

    client.checks[2].answer = answer(2)
    driver.discover(102.0)
    assert driver.run.usable == [0, 2] and driver.run.idle_order == [0, 2]
    ready = [kwargs["engines"] for name, kwargs in driver.hook_calls if name == "cluster_ready"]
    assert [[e.engine_id for e in call] for call in ready] == [[0], [2]]

    client.checks[1].answer = answer(1, pytest_gold="0.0.1")
    driver.discover(103.0)
    assert 1 in driver.failed_check and 1 not in driver.run.usable
    assert driver.run.engines[1].state is EngineState.LEFT_OUT
    lines = driver.terminal.lines
    assert lines and "engine check failed, left out" in lines[-1]
    assert "pytest-gold 0.0.1 where this run has " + pytest_gold.__version__ in lines[-1]


def test_an_engine_check_unanswered_for_the_wait_is_a_failed_check():
    client = FakeClient()
    driver = make_driver(client, wait_seconds=5)
    driver.initial = False
    client.ids = [3]
    driver.discover(100.0)
    assert 3 in driver.checks.pending
    driver.discover(106.0)
    assert not driver.checks.pending and 3 in driver.failed_check
    assert driver.run.engines[3].state is EngineState.LEFT_OUT
    assert "TimeoutError" in driver.terminal.lines[-1]


def test_the_first_check_does_not_wait_for_an_engine_busy_with_another_run(monkeypatch):
    """Once enough engines answered, the run starts within the settle time; an engine
    whose check waits behind another run's case joins when it answers."""
    client = FakeClient()
    driver = make_driver(client)
    client.ids = [0, 1]
    client.checks[0] = FakeResult()
    client.checks[0].answer = answer(0)
    clock = [100.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr("pytest_gold.controller.driver.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("pytest_gold.controller.driver.time.sleep", sleep)
    driver.discover(clock[0])  # FakeResult.wait asserts if it blocks
    assert driver.run.usable == [0] and set(driver.checks.pending) == {1}
    assert clock[0] - 100.0 <= CHECK_SETTLE_SECONDS + 1
    driver.run.tick(clock[0])
    assert driver.run.phase.value == "running"  # the settle time is over: it runs
    client.checks[1].answer = answer(1)
    driver.discover(clock[0])
    assert driver.run.usable == [0, 1]


def test_a_check_waiting_behind_another_runs_batch_is_not_overdue():
    client = FakeClient()
    driver = make_driver(client, wait_seconds=5)
    client.ids = [3]
    client.queue_status = lambda targets: {"queue": 2, "completed": 7, "tasks": 0}
    driver.discover(100.0)
    driver.discover(106.0)
    driver.run.tick(106.0)  # nor does the Run give up on it
    assert 3 in driver.checks.pending and 3 not in driver.failed_check
    assert driver.run.engines[3].state is EngineState.CHECKING
    client.queue_status = lambda targets: {"queue": 1, "completed": 8, "tasks": 0}
    driver.discover(112.0)  # only our check is left, still unanswered: now it is overdue
    assert 3 in driver.failed_check


def test_signals_go_by_pid_here_and_through_the_nanny_elsewhere():
    here = engine_module.this_machine()
    if not here:
        pytest.skip("no machine identity on this platform")
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = engine_module.engine_info()
        local = dataclasses.replace(info, engine_id=0, pid=process.pid)
        remote = dataclasses.replace(info, engine_id=1, pid=process.pid, machine="elsewhere")
        client = FakeClient()
        signal_engines(client, {1: remote}, signal.SIGTERM)
        assert client.signals == [("SIGTERM", [1])]
        assert process.poll() is None  # a pid on another machine is not ours to signal
        signal_engines(client, {0: local}, signal.SIGTERM)
        assert process.wait(timeout=10) == -signal.SIGTERM
        assert client.signals == [("SIGTERM", [1])]
    finally:
        process.kill()
        process.wait()


def test_to_wire_matches_a_deep_conversion():
    """The shallow conversion gives what ``dataclasses.asdict`` gave, plus the kinds."""
    engine = engine_module.engine_info()
    events = [
        LogStart(nodeid="a.py::t", location=("a.py", 1, "t"), log_offset=3),
        ReportEvent(data={"nodeid": "a.py::t", "when": "call", "sections": [["x", "y"]]}),
        LogFinish(nodeid="a.py::t", location=("a.py", 1, "t")),
        NotRun(nodeids=["a.py::u"], reason="interrupted", cut_short=[]),
    ]
    result = BatchResult(engine=engine, events=events)
    wire = to_wire(result)
    deep = dataclasses.asdict(result)
    deep["events"] = [{**dataclasses.asdict(e), "kind": e.kind} for e in events]
    assert wire == deep
    assert to_wire(engine) == dataclasses.asdict(engine)


def test_a_worker_started_ahead_sees_files_changed_since(tmp_path):
    module = tmp_path / "simcode.py"
    module.write_text("x = 1\n")
    written = module.stat().st_mtime_ns
    seen = {str(module): written}
    later = time.time_ns() + 10**9  # a process that started after the file was written
    assert not changed_since(seen, later)
    os.utime(module, ns=(written, written + 1))  # changed after it was seen
    assert changed_since(seen, later)
    seen = {str(module): module.stat().st_mtime_ns}
    assert changed_since(seen, written - 1)  # written after the process started
    module.unlink()
    assert changed_since(seen, later)


def test_a_worker_whose_engine_died_during_its_start_ends_at_once():
    """The engine passes its pid; a worker whose parent is someone else by the time it
    can ask to die with its parent (it was orphaned while importing) exits at once."""
    command = [sys.executable, "-m", "pytest_gold.worker", "999", "vm:e0", str(time.time_ns())]
    orphan = subprocess.run([*command, "1"], capture_output=True, timeout=60)
    assert orphan.returncode == 0 and not orphan.stderr
    # With its real parent it goes on (and fails here on the bogus socket descriptor).
    child = subprocess.run([*command, str(os.getpid())], capture_output=True, timeout=60)
    assert child.returncode != 0 and b"Bad file descriptor" in child.stderr


def test_the_first_wait_reacts_to_an_answer_or_a_registration_at_once():
    """The wait for engines looks again as soon as a check is answered or an engine
    registers, not at its next count (which used to be most of a kept cluster's time
    to the first case); with nothing new it waits the whole poll time."""
    import threading

    client = FakeClient()
    driver = make_driver(client)
    client.ids = [0]
    driver.discover(100.0)
    assert set(driver.checks.pending) == {0}

    def answer_later() -> None:
        client.checks[0].answer = answer(0)

    timer = threading.Timer(0.05, answer_later)
    timer.start()
    started = time.monotonic()
    driver.checks.wait_for_news(registered=1, timeout=30.0)
    assert time.monotonic() - started < 10.0  # woke on the answer, long before 30 s
    timer.join()
    assert client.checks[0].ready()

    driver.discover(101.0)  # the answer taken in: nothing pending now
    assert not driver.checks.pending
    timer = threading.Timer(0.05, lambda: client.ids.append(1))
    timer.start()
    started = time.monotonic()
    driver.checks.wait_for_news(registered=1, timeout=30.0)
    assert time.monotonic() - started < 10.0  # woke on the registration
    timer.join()

    started = time.monotonic()
    driver.checks.wait_for_news(registered=2, timeout=0.1)
    assert time.monotonic() - started >= 0.1  # nothing new: the whole poll time
