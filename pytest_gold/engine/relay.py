"""The supervisor's relay of one batch: the worker's events in, what they mean out.

It tracks the case the worker is running, so that a worker that dies, or a case that runs
past its time limit, becomes a failed report for that case; and it carries out the
controller's request to interrupt (SIGINT to the worker's process group, then a kill).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import pytest_gold.engine.leftovers as leftovers
import pytest_gold.engine.workerprocess as workerprocess
from pytest_gold.engine.outputspool import OutputSpool
from pytest_gold.engine.workerprocess import STDERR_TAIL_LINES, WorkerProcess
from pytest_gold.protocol.control import INTERRUPTED, BatchDone
from pytest_gold.protocol.messages import (
    EngineInfo,
    Event,
    LogFinish,
    LogStart,
    NotRun,
    ReportEvent,
    WorkerCrashed,
)
from pytest_gold.protocol.synthetic import failed_case_events
from pytest_gold.protocol.timing import INTERRUPT_GRACE_SECONDS, STACK_DUMP_WAIT_SECONDS

#: Lines of a timed-out worker's output quoted: the stacks of all its threads.
STACK_TAIL_LINES = 400
#: How often processes that cases left behind and that ended since are reaped.
REAP_SECONDS = 5.0


class BatchRelay:
    """Relays one batch's events from the worker, tracking the case it is running.

    An object rather than a loop's locals, because a KeyboardInterrupt (a SIGINT from a
    user) restarts the loop, which must keep what it knew.
    """

    def __init__(
        self,
        worker: WorkerProcess,
        engine: EngineInfo,
        pending: deque[str],
        time_limits: dict[str, float],
        *,
        interrupt_requested: Callable[[], bool],
        forget: Callable[[WorkerProcess], None],
        spool: OutputSpool | None = None,
    ) -> None:
        self.interrupt_requested = interrupt_requested
        self.forget = forget
        self.worker = worker
        self.engine = engine
        self.pending = pending
        self.time_limits = time_limits
        self.current_started = 0.0
        #: With -s: where the worker's output goes on its way to the controller.
        self.spool = spool
        self.events: list[Event] = []
        #: Processes the cases left running that were ended with the worker.
        self.leftovers: list[str] = []
        self.last_reap = time.monotonic()
        self.current: str | None = None
        self.current_start = 0
        self.location: tuple[str, int | None, str] | None = None
        self.phases: dict[str, str] = {}
        #: Once interrupted: when the worker is killed if the case has not stopped.
        self.deadline = math.inf

    def run(self) -> deque[str]:
        """Relay until the batch is done; return the cases that must be rerun.

        When the controller asks for an interruption, the worker gets SIGINT (like
        Ctrl-C); past :data:`INTERRUPT_GRACE_SECONDS` (a case that ignores SIGINT) it is
        killed and the case counts as not run.
        """
        try:
            for message in self.worker.messages(pump=self.stream_output):
                if self.interrupt_requested() and self.deadline == math.inf:
                    self.worker.interrupt()
                    self.deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
                if time.monotonic() > self.deadline:
                    return self.abandon()
                if time.monotonic() - self.last_reap > REAP_SECONDS:
                    self.last_reap = time.monotonic()
                    leftovers.reap_adopted(workerprocess.live_pids())
                if message is None:
                    limit = self.time_limits.get(self.current or "")
                    if limit is not None and time.monotonic() - self.current_started > limit:
                        return self.timed_out(limit)
                elif isinstance(message, BatchDone):
                    self.stream_output(everything=True)
                    return deque()
                elif isinstance(message, Event):  # not a stray control message (a late Ready)
                    self.handle(message)
        except EOFError:
            return self.worker_died()
        raise AssertionError("a worker's messages end only with the worker")

    def stream_output(self, *, everything: bool = False) -> bool:
        """With -s: pass on what the worker wrote (see :mod:`pytest_gold.engine.outputspool`);
        whether more is waiting."""
        if self.spool is None:
            return False
        return self.spool.pump(self.worker, everything=everything)

    def handle(self, event: Event) -> None:
        if isinstance(event, NotRun) and self.current is not None and event.reason == INTERRUPTED:
            # A case cut short reports nothing: it counts among those that did not run.
            del self.events[self.current_start :]
            rest = [nodeid for nodeid in event.nodeids if nodeid != self.current]
            event = NotRun(
                nodeids=[self.current, *rest],
                reason=event.reason,
                cut_short=[self.current],
            )
            self.current = None
        self.events.append(event)
        if isinstance(event, LogStart):
            self.current, self.location, self.phases = event.nodeid, event.location, {}
            self.current_started = time.monotonic()
            self.worker.case_log_offset = event.log_offset  # its crash report quotes from there
            self.current_start = len(self.events) - 1
            if event.nodeid in self.pending:
                self.pending.remove(event.nodeid)
        elif isinstance(event, ReportEvent) and event.data.get("nodeid") == self.current:
            self.phases[event.data["when"]] = event.data["outcome"]
        elif isinstance(event, LogFinish):
            self.current = None
        elif isinstance(event, NotRun):
            for nodeid in event.nodeids:
                if nodeid in self.pending:
                    self.pending.remove(nodeid)

    def abandon(self) -> deque[str]:
        self.worker.kill()
        self.stream_output(everything=True)
        self.close_worker()
        self.handle(NotRun(nodeids=list(self.pending), reason=INTERRUPTED))
        return deque()

    def close_worker(self) -> None:
        self.forget(self.worker)
        self.worker.close()
        self.leftovers.extend(self.worker.ended_leftovers)

    def timed_out(self, limit: float) -> deque[str]:
        """Stop a case over its limit: stacks of every thread first, then SIGKILL, which
        also stops code that ignores signals (a C or Fortran loop)."""
        worker = self.worker
        worker.dump_stacks()
        time.sleep(STACK_DUMP_WAIT_SECONDS)
        worker.kill()
        where = "live output above" if self.spool is not None else "worker's own output below"
        return self.worker_died(
            f"exceeded its time limit of {limit:g} s on {self.engine.tag} "
            f"(pid {worker.pid}) and was stopped; the stacks of every thread at "
            f"that moment are in the {where}"
        )

    def worker_died(self, headline: str | None = None) -> deque[str]:
        """Report the case the worker was running (if any) as failed, the cause first."""
        worker, current = self.worker, self.current
        self.stream_output(everything=True)  # its last lines and fatal error, before the report
        cause = worker.death_cause(
            STACK_TAIL_LINES if headline else STDERR_TAIL_LINES, streamed=self.spool is not None
        )
        self.close_worker()
        if current is None:
            # Between cases (e.g. tearing down a module's fixtures): no case to blame;
            # the rest of the batch goes to a fresh worker unless nothing progresses.
            self.events.append(WorkerCrashed(nodeid=None, cause=str(cause)))
            return self.pending
        first_line = headline or (
            f"crashed its worker: {cause.summary} on {self.engine.tag} (pid {worker.pid})"
        )
        message = f"{first_line}\n{cause.details}" if cause.details else first_line
        self.events.extend(failed_case_events(current, self.location, self.phases, None, message))
        self.events.append(WorkerCrashed(nodeid=current, cause=str(cause)))
        return self.pending
