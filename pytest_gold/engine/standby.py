"""The worker an engine starts ahead for its next run.

A run's first batch on an engine would otherwise wait for Python to start and import
pytest (about 0.3 s of CPU time). The standby has done that; it gets its run only if the
run's launch settings are its own (:func:`pytest_gold.engine.workerprocess.launch_key`), and it
starts no pytest session if a file it imported changed since it started (see
:mod:`pytest_gold.worker.freshness`).

It is started once the last run's ``pytest`` has exited, if it ran on this machine: the
user waits for that exit, and twelve workers starting on two cores would make it longer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pytest_gold.engine.workerprocess import WorkerProcess, launch_key, launch_settings
from pytest_gold.protocol.identity import ControllerId, this_machine
from pytest_gold.protocol.messages import EngineInfo, RunSpec

#: How long after a run's end the worker for the next run is started at the earliest
#: (a controller on another machine: after its own end of run, so that its last calls
#: find the engine idle).
STANDBY_DELAY_SECONDS = 1.0
#: How often the engine looks whether the run's controller (on this machine) has exited.
STANDBY_POLL_SECONDS = 0.2
#: The longest the engine waits for that exit (a controller that lingers on, in a
#: debugger or a notebook): then the worker is started anyway.
STANDBY_MAX_WAIT_SECONDS = 10.0


class StandbyWorker:
    """At most one worker, started for the next run of the engine it belongs to."""

    def __init__(self) -> None:
        self.worker: WorkerProcess | None = None
        #: Counts the schedules and takes: a start scheduled before the latest of them is
        #: for an older run, and is dropped.
        self.generation = 0

    @property
    def pid(self) -> int | None:
        worker = self.worker
        if worker is None or not worker.alive:
            return None
        return worker.pid

    def take(self, spec: RunSpec, engine: EngineInfo) -> WorkerProcess | None:
        """The worker, given this run, if it can serve it (else it is ended)."""
        self.generation += 1
        worker, self.worker = self.worker, None
        if worker is None:
            return None
        wanted = launch_key(*launch_settings(spec), engine)
        if worker.alive and worker.launch_key == wanted:
            try:
                worker.activate(spec)
                return worker
            except OSError:  # it died just now
                pass
        worker.close()
        return None

    def schedule(self, spec: RunSpec, engine: EngineInfo, busy: Callable[[], bool]) -> None:
        """Start a worker like ``spec``'s once the run's controller has exited (if on
        this machine; else a little later), unless ``busy()`` by then. On the engine's
        main thread: a worker dies with the thread that started it (``PR_SET_PDEATHSIG``),
        so not in a timer's."""
        self.generation += 1
        generation = self.generation
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not inside the kernel's event loop
            self.start(spec, engine, busy)
            return
        controller = ControllerId(**spec.controller)
        local = bool(controller.machine) and controller.machine == this_machine()
        give_up = time.monotonic() + STANDBY_MAX_WAIT_SECONDS

        def when_due() -> None:
            if generation != self.generation:  # a run came, or a later run ended, since
                return
            if local and not controller.gone(this_machine()) and time.monotonic() < give_up:
                loop.call_later(STANDBY_POLL_SECONDS, when_due)
                return
            self.start(spec, engine, busy)

        loop.call_later(STANDBY_POLL_SECONDS if local else STANDBY_DELAY_SECONDS, when_due)

    def start(self, spec: RunSpec, engine: EngineInfo, busy: Callable[[], bool]) -> None:
        if self.worker is not None or busy():  # there is one, or a run started meanwhile
            return
        try:
            self.worker = WorkerProcess(spec, engine, standby=True)
        except Exception:  # only an optimisation: the next run starts its own worker
            self.worker = None

    def close(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.close()
