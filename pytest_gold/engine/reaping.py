"""Ending the workers that no run needs any more, on an engine.

Those of runs that are gone (their controller was killed) or idle too long, those that
finished their run and are ending their pytest session, whatever the workers' own children
left behind (:mod:`pytest_gold.engine.leftovers`), and every worker when the engine exits.
The supervisor (:mod:`pytest_gold.engine.supervisor`) calls these around each task.
"""

from __future__ import annotations

import asyncio
import time

import pytest_gold.engine.leftovers as leftovers
import pytest_gold.engine.outputspool as outputspool
from pytest_gold.engine.engineruns import EngineRuns
from pytest_gold.engine.standby import StandbyWorker
from pytest_gold.engine.workerprocess import WorkerProcess, live_pids
from pytest_gold.protocol.timing import WORKER_FINISH_SECONDS

#: How often the workers of runs that are gone or idle are looked for, while there are any.
TIDY_SECONDS = 2.0

#: Workers that finished their run and are ending their pytest session.
exiting: list[WorkerProcess] = []
_tidy_scheduled = False


def adopt_leftovers() -> None:
    """The engine becomes the subreaper of what workers start (see
    :mod:`pytest_gold.engine.leftovers`), and collects those of them that ended."""
    leftovers.become_subreaper()
    leftovers.reap_adopted(live_pids())


def reap_exiting() -> None:
    """Close finished workers; kill any that outlived their grace period."""
    for worker in list(exiting):
        if worker.alive and time.monotonic() < worker.exit_deadline:
            continue
        exiting.remove(worker)
        worker.close()


def tidy(runs: EngineRuns, serving: str | None = None) -> None:
    """End the workers of runs that are gone (their controller was killed) or idle too
    long, and reap the workers that finished; again later while there are any."""
    global _tidy_scheduled
    _tidy_scheduled = False
    try:
        for worker in runs.tidy(serving):
            if worker.alive:
                worker.finish()  # fixtures are torn down; nobody reads the reports
            worker.exit_deadline = time.monotonic() + WORKER_FINISH_SECONDS
            exiting.append(worker)
        reap_exiting()
        leftovers.reap_adopted(live_pids())
    finally:
        if exiting or runs.busy():
            schedule_tidy(runs)


def schedule_tidy(runs: EngineRuns) -> None:
    """On the engine's event loop: runs between tasks, whether or not more tasks come."""
    global _tidy_scheduled
    if _tidy_scheduled:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not inside the kernel's event loop: the next call tidies
        return
    _tidy_scheduled = True
    loop.call_later(TIDY_SECONDS, tidy, runs)


def stop_workers_at_exit(runs: EngineRuns, standby: StandbyWorker) -> None:
    """The engine is shutting down: a worker still running a case must not outlive it."""
    for run in list(runs.runs.values()):
        for worker in (run.worker, run.retired):
            if worker is not None:
                worker.close()
    for worker in exiting:
        worker.close()
    standby.close()
    outputspool.close_all()
