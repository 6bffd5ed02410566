"""The worker an engine starts ahead for its next run.

A run's first batch on an engine would otherwise wait for Python to start and import
pytest (about 0.3 s of CPU time). The standby has done that; it gets its run only if the
run's launch settings are its own (:func:`pytest_gold.engine.workerprocess.launch_key`), and it
starts no pytest session if a file it imported changed since it started (see
:mod:`pytest_gold.worker.freshness`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pytest_gold.engine.workerprocess import WorkerProcess, launch_key, launch_settings
from pytest_gold.protocol.messages import EngineInfo, RunSpec

#: How long after a run's end the worker for the next run is started: after the
#: controller's own end of run, so the two do not compete for the CPU.
STANDBY_DELAY_SECONDS = 1.0


class StandbyWorker:
    """At most one worker, started for the next run of the engine it belongs to."""

    def __init__(self) -> None:
        self.worker: WorkerProcess | None = None

    @property
    def pid(self) -> int | None:
        worker = self.worker
        if worker is None or not worker.alive:
            return None
        return worker.pid

    def take(self, spec: RunSpec, engine: EngineInfo) -> WorkerProcess | None:
        """The worker, given this run, if it can serve it (else it is ended)."""
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
        """Start a worker like ``spec``'s a little later, unless ``busy()`` by then. On
        the engine's main thread: a worker dies with the thread that started it
        (``PR_SET_PDEATHSIG``), so not in a timer's."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not inside the kernel's event loop
            self.start(spec, engine, busy)
            return
        loop.call_later(STANDBY_DELAY_SECONDS, self.start, spec, engine, busy)

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
