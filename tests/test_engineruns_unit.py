"""The supervisor's bookkeeping of the runs sharing an engine (no cluster)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_gold.engine import engineruns
from pytest_gold.engine.engineruns import EngineRuns, SignalSlots
from pytest_gold.protocol import identity
from pytest_gold.protocol.identity import ControllerId, this_machine

SHARED = 12


class FakeWorker:
    def __init__(self) -> None:
        self.alive = True
        self.finished = self.killed = self.closed = False
        self.exit_deadline = 0.0

    def finish(self) -> None:
        self.finished = True

    def kill(self) -> None:
        self.killed, self.alive = True, False

    def close(self) -> None:
        self.closed, self.alive = True, False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_runs(numbers: list[int] | None = None) -> tuple[EngineRuns, Clock]:
    clock = Clock()
    slots = SignalSlots(SHARED, [40, 41] if numbers is None else numbers)
    return EngineRuns(slots=slots, clock=clock, exit_grace=30.0), clock


def test_each_run_gets_its_own_interrupt_signal_and_only_it_is_interrupted():
    runs, _ = make_runs()
    a = runs.join("a", ControllerId())
    b = runs.join("b", ControllerId())
    c = runs.join("c", ControllerId())  # the numbers ran out: the shared signal
    assert (a.interrupt_signal, b.interrupt_signal, c.interrupt_signal) == (40, 41, SHARED)
    assert runs.join("a", ControllerId()) is a  # a second call changes nothing
    runs.request_interrupt(41)
    assert b.interrupt_requested and not a.interrupt_requested
    runs.leave("b")
    runs.request_interrupt(41)  # late: nobody's now
    d = runs.join("d", ControllerId())
    assert d.interrupt_signal == 41 and not d.interrupt_requested


def test_a_freed_signal_goes_to_a_new_run_last():
    runs, _ = make_runs([40, 41, 42])
    runs.join("a", ControllerId())
    runs.leave("a")
    assert [runs.join(r, ControllerId()).interrupt_signal for r in "bcd"] == [41, 42, 40]


def dead_process_id() -> ControllerId:
    here = this_machine()
    if not here:
        pytest.skip("no machine identity on this platform")
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    started = identity.process_start(process.pid)
    process.wait()
    return ControllerId(machine=here, pid=process.pid, started=started)


def test_the_worker_of_a_run_whose_controller_died_here_is_ended_at_once():
    runs, _ = make_runs()
    alive = runs.join("alive", ControllerId.of_this_process())
    alive.worker = FakeWorker()
    gone = runs.join("gone", dead_process_id())
    gone.worker = worker = FakeWorker()
    assert runs.tidy() == [worker]
    assert runs.get("gone") is None and runs.get("alive") is alive
    assert 41 in runs.slots.free  # its signal is free again


def test_a_controller_elsewhere_or_of_unknown_start_is_never_taken_for_gone():
    here = this_machine()
    assert not ControllerId(machine="elsewhere", pid=1, started=1).gone(here)
    assert not ControllerId(machine=here, pid=1, started=None).gone(here)
    assert not ControllerId().gone(here)
    assert not ControllerId.of_this_process().gone(here)


def test_an_idle_run_loses_its_worker_but_keeps_its_teardown_for_its_finish():
    runs, clock = make_runs()
    run = runs.join("a", ControllerId())
    run.worker = worker = FakeWorker()
    runs.task_done(run)
    clock.now += engineruns.IDLE_RUN_SECONDS - 1
    assert runs.tidy() == [] and run.worker is worker
    clock.now += 2
    assert runs.tidy() == []
    assert run.worker is None and run.retired is worker and worker.finished
    # Its session end hangs: killed after the grace period, the reports stay readable.
    clock.now += 31
    runs.tidy()
    assert worker.killed and not worker.closed and runs.get("a") is run


def test_idle_counts_only_while_the_engine_was_free():
    """A run whose batch waits in the engine's queue behind another run's long case is
    not idle."""
    runs, clock = make_runs()
    waiting = runs.join("waiting", ControllerId())
    waiting.worker = FakeWorker()
    runs.task_done(waiting)
    busy = runs.join("busy", ControllerId())
    busy.running = True
    clock.now += engineruns.IDLE_RUN_SECONDS * 3  # the other run's long case
    runs.task_done(busy)
    assert runs.tidy() == [] and waiting.worker is not None


def test_the_run_being_served_and_a_running_run_are_never_tidied():
    runs, clock = make_runs()
    run = runs.join("a", ControllerId())
    run.worker = FakeWorker()
    clock.now += engineruns.IDLE_RUN_SECONDS * 2
    runs.tidy(serving="a")
    assert run.worker is not None
    run.running = True
    runs.tidy()
    assert run.worker is not None


def test_runs_without_a_worker_are_forgotten_in_time_and_beyond_the_cap():
    runs, clock = make_runs(list(range(100, 100 + engineruns.MAX_RUNS + 5)))
    for index in range(engineruns.MAX_RUNS + 5):
        runs.join(f"r{index}", ControllerId())
        clock.now += 1
    runs.tidy()
    assert len(runs.runs) == engineruns.MAX_RUNS
    assert "r0" not in runs.runs and f"r{engineruns.MAX_RUNS + 4}" in runs.runs
    retired = FakeWorker()
    runs.get("r10").retired = retired
    clock.now += engineruns.FORGET_RUN_SECONDS + 1
    assert runs.tidy() == [retired] and not runs.runs


def test_process_start_names_one_process():
    here = this_machine()
    if not here:
        pytest.skip("no /proc on this platform")
    me = ControllerId.of_this_process()
    assert me.started is not None and me.started == identity.process_start(me.pid)
    assert identity.process_start(2**22 + 7) is None  # no such pid
