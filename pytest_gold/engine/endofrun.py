"""The end of a run on an engine: its worker's last teardown, read by the supervisor."""

from __future__ import annotations

import time
from typing import Any

from pytest_gold.engine.outputspool import OutputSpool
from pytest_gold.engine.workerprocess import WorkerProcess
from pytest_gold.protocol.control import Exited, TeardownDone, WorkerFinished
from pytest_gold.protocol.messages import Event
from pytest_gold.protocol.timing import (
    SUPERVISOR_POLL_SECONDS,
    WORKER_EXIT_GRACE_SECONDS,
    WORKER_FINISH_SECONDS,
)


def end_worker(
    worker: WorkerProcess,
    finish_sent: bool,
    spool: OutputSpool | None,
    ended: list[str],
    collect_output: bool,
    exiting: list[WorkerProcess],
) -> tuple[list[Event], dict[str, Any] | None]:
    """The worker's end-of-run teardown, and its reports; it then exits on its own.
    What its cases started and left running is ended then (added to ``ended``); the
    worker goes to ``exiting``, to be reaped (or killed) once its grace period is over."""
    events: list[Event] = []
    workeroutput = None
    pump = (lambda: spool.pump(worker)) if spool is not None else None
    try:
        if not finish_sent:
            worker.finish()
        deadline = time.monotonic() + WORKER_FINISH_SECONDS
        for message in worker.messages(deadline=deadline, pump=pump):
            if isinstance(message, WorkerFinished):
                workeroutput = message.workeroutput
                break
            if isinstance(message, Exited) or (
                isinstance(message, TeardownDone) and not collect_output
            ):
                break
            if isinstance(message, Event):
                events.append(message)
        else:
            worker.kill()
    except (EOFError, OSError):
        worker.kill()
    finally:
        if spool is not None:
            spool.pump(worker, everything=True)
        # The last teardown is done: what the cases started and left running is ended
        # now, so that the run can say so.
        ended.extend(worker.end_leftovers())
        # Whatever happened, the worker is reaped (or killed) later, never forgotten.
        worker.exit_deadline = (
            time.monotonic() + WORKER_EXIT_GRACE_SECONDS + SUPERVISOR_POLL_SECONDS
        )
        exiting.append(worker)
    return events, workeroutput
