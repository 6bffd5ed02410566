"""The supervisor's bookkeeping of the runs that use its engine.

Several runs may use one cluster at the same time (two people on the lab cluster). An
engine runs one task at a time, so their batches take turns on it, and each run keeps its
own worker there: its session fixtures stay set up between its batches, and only its own
``finish_run`` ends it. A run that never says finish (its ``pytest`` was killed) must not
keep a worker for ever, so its worker is ended as soon as its controller is seen gone (a
controller on the engine's machine: its pid), or once the run has left the engine idle for
:data:`IDLE_RUN_SECONDS`; the teardown reports of a worker ended that way wait for the
run's ``finish_run``, if it comes.

Interruptions (``-x``, Ctrl-C) are per run too: a run's controller interrupts an engine
with a signal number of its own (:class:`SignalSlots`), so that a stop of one run never
cuts short a case of another run that happens to be running on that engine.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_gold.protocol.identity import ControllerId, this_machine

#: How long a run may leave the engine idle (no batch of its own while the engine had
#: nothing else to do) before its worker is ended; its teardown is kept for its finish.
IDLE_RUN_SECONDS = 600.0
#: How long the record of a run without a worker is kept (teardown reports of an ended
#: worker, its interruption signal) while the run does not come back.
FORGET_RUN_SECONDS = 24 * 3600.0
#: At most this many runs are remembered per engine (the least recently active go first).
MAX_RUNS = 64

#: A signal handler as :func:`signal.signal` takes it.
SignalHandler = Callable[[int, Any], None]


class Worker(Protocol):
    """What the bookkeeping needs of a :class:`pytest_gold.engine.workerprocess.WorkerProcess`."""

    exit_deadline: float

    @property
    def alive(self) -> bool: ...

    def finish(self) -> None: ...

    def kill(self) -> None: ...

    def close(self) -> None: ...


def run_signal_candidates() -> list[int]:
    """The real-time signals of this platform (none where there are none), without the
    lowest and the highest, the likeliest to be used by a library."""
    low, high = getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", 0)
    return list(range(low + 1, high)) if low and high else []


def install_interrupt_handlers(
    shared: int, on_shared: SignalHandler, on_run: SignalHandler
) -> list[int]:
    """The handlers of ``shared`` (interrupts any run) and of the per-run signals; returns
    the per-run signals that have one (only those are handed out: unhandled, they end the
    engine)."""
    # At the engine's first call, which ipyparallel runs in the engine's main thread:
    # from then on these signals never end the engine, even when late. The controller
    # sends them only to engines that answered a call of its run.
    try:
        signal.signal(shared, on_shared)
    except ValueError:  # not the main thread (imported elsewhere): nothing to install
        return []
    installed = []
    for number in run_signal_candidates():
        try:
            signal.signal(number, on_run)
        except (ValueError, OSError):
            break
        installed.append(number)
    return installed


class SignalSlots:
    """A signal number per run: the run's controller interrupts the engine with it.

    Real-time signals are many (about 30) and have no other use in an engine. Where there
    are none (not Linux) or all are taken, a run gets ``shared``, which interrupts whatever
    batch the engine is running.
    """

    def __init__(self, shared: int, numbers: list[int]) -> None:
        self.shared = shared
        #: Free numbers, the longest free first: a late signal of a finished run is
        #: unlikely to reach the next owner of its number.
        self.free = list(numbers)
        self.owner: dict[int, str] = {}

    def take(self, run_id: str) -> int:
        if not self.free:
            return self.shared
        number = self.free.pop(0)
        self.owner[number] = run_id
        return number

    def give_back(self, number: int) -> None:
        if self.owner.pop(number, None) is not None:
            self.free.append(number)

    def run_of(self, number: int) -> str | None:
        return self.owner.get(number)

    @property
    def numbers(self) -> list[int]:
        return sorted([*self.free, *self.owner])


@dataclass
class EngineRun:
    """One run, as one engine knows it."""

    run_id: str
    controller: ControllerId
    interrupt_signal: int
    last_active: float
    worker: Any = None
    #: A worker ended while the run was idle: its teardown reports wait in its socket.
    retired: Any = None
    interrupt_requested: bool = False
    #: A batch of this run is running on the engine now.
    running: bool = False


@dataclass
class EngineRuns:
    """Every run known to one engine."""

    slots: SignalSlots
    clock: Callable[[], float]
    here: str = field(default_factory=this_machine)
    runs: dict[str, EngineRun] = field(default_factory=dict)
    #: When the engine last finished a task (of any run): idle time counts from then.
    busy_until: float = 0.0
    #: How long a retired worker may take for its teardown and the end of its session.
    exit_grace: float = 600.0

    def get(self, run_id: str) -> EngineRun | None:
        return self.runs.get(run_id)

    def join(self, run_id: str, controller: ControllerId) -> EngineRun:
        """The run's record (made on its first call here), marked active now."""
        run = self.runs.get(run_id)
        if run is None:
            run = EngineRun(
                run_id=run_id,
                controller=controller,
                interrupt_signal=self.slots.take(run_id),
                last_active=self.clock(),
            )
            self.runs[run_id] = run
        run.last_active = self.clock()
        return run

    def leave(self, run_id: str) -> EngineRun | None:
        run = self.runs.pop(run_id, None)
        if run is not None:
            self.slots.give_back(run.interrupt_signal)
        return run

    def task_done(self, run: EngineRun | None) -> None:
        self.busy_until = self.clock()
        if run is not None:
            run.last_active = self.busy_until
            run.running = False

    def request_interrupt(self, number: int) -> None:
        run_id = self.slots.run_of(number)
        run = self.runs.get(run_id) if run_id is not None else None
        if run is not None:
            run.interrupt_requested = True

    def with_workers(self) -> Iterator[EngineRun]:
        return (run for run in self.runs.values() if run.worker is not None)

    def busy(self) -> bool:
        """Some run has a worker here (a worker for the next run would only compete)."""
        return any(run.worker is not None or run.retired is not None for run in self.runs.values())

    def tidy(self, serving: str | None = None) -> list[Any]:
        """End the workers of runs that are gone or idle too long, forget stale runs
        (not the run being ``serving``: it is here now).

        Returns the workers whose teardown nobody will read (their run is gone or
        forgotten): the caller ends them like any finished worker.
        """
        now = self.clock()
        orphans: list[Any] = []
        for run in list(self.runs.values()):
            if run.running or run.run_id == serving:
                continue
            # Time the engine was free for this run: another run's batch may have kept it
            # busy while this run's batch waited in the engine's queue.
            idle = now - max(run.last_active, self.busy_until)
            if run.controller.gone(self.here):
                orphans += self.forget(run)
            elif run.worker is not None and idle > IDLE_RUN_SECONDS:
                self.retire(run, now)
            elif run.worker is None and idle > FORGET_RUN_SECONDS:
                orphans += self.forget(run)
        excess = len(self.runs) - MAX_RUNS
        if excess > 0:
            idle_runs = sorted(
                (r for r in self.runs.values() if r.worker is None and not r.running),
                key=lambda r: r.last_active,
            )
            for run in idle_runs[:excess]:
                orphans += self.forget(run)
        for run in self.runs.values():
            retired = run.retired
            if retired is not None and retired.alive and now > retired.exit_deadline:
                retired.kill()  # its teardown or session end hangs
        return orphans

    def retire(self, run: EngineRun, now: float) -> None:
        """End an idle run's worker; its teardown reports wait for the run's finish."""
        worker, run.worker = run.worker, None
        if worker.alive:
            worker.finish()
        worker.exit_deadline = now + self.exit_grace
        if run.retired is not None:  # an earlier one: its reports are older, and go
            run.retired.close()
        run.retired = worker

    def forget(self, run: EngineRun) -> list[Any]:
        """Drop the run; its workers, if any, to be ended."""
        self.leave(run.run_id)
        return [w for w in (run.worker, run.retired) if w is not None]
