"""Fault handling of the controller: lost engines, a lost controller, interruptions.

A mixin of :class:`pytest_gold.session.GoldController`; it uses the controller's
``config``, ``settings``, ``state`` and ``write_line``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import ipyparallel as ipp
import pytest

from . import engine as engine_module
from . import relay
from .messages import Batch, BatchResult, EngineInfo
from .reporting import Replayer
from .scheduling import DispatchQueue
from .synthetic import failed_case_events

#: How often the loop wakes up to look for new engines and stop requests.
POLL_SECONDS = 0.2
#: After Ctrl-C, how long interrupted cases (and teardowns) get to report back: longer
#: than an engine waits for an interrupted case before it kills its worker.
INTERRUPT_GRACE_SECONDS = relay.INTERRUPT_GRACE_SECONDS + 5
#: After a stop (-x, --maxfail, pytest.exit()), how long running batches get to report
#: back before their cases count as not run and their engines as unresponsive.
STOP_GRACE_SECONDS = INTERRUPT_GRACE_SECONDS + 10
#: Why a run stopped when no engine was left.
EVERY_ENGINE_LOST = "every engine was lost"
#: Stands for "no engine" on reports of cases that never reached one.
NO_ENGINE = EngineInfo(
    engine_id=-1, host="controller", pid=0, python="", executable="", platform=""
)


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler ending the job, ``kill``) is handled like Ctrl-C: running cases
    are interrupted, results and JUnit XML kept, and the cluster this run started stopped.
    Without this, the process would die on the spot."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _is_engine_lost(error: Exception) -> bool:
    """ipyparallel reports a task whose engine died as an EngineError (maybe wrapped)."""
    if isinstance(error, ipp.error.EngineError):
        return True
    return getattr(error, "ename", None) == "EngineError"


def signal_engines(client: Any, engines: dict[int, EngineInfo], signum: signal.Signals) -> None:
    """Send ``signum`` to engines without waiting: by pid to those on this machine (an
    embedded cluster's engines have no nanny), through their nanny to the others."""
    here = engine_module.this_machine()
    remote = []
    for eid, engine in engines.items():
        if not (engine.machine and engine.machine == here):
            remote.append(eid)
            continue
        try:
            os.kill(engine.pid, signum)
        except ProcessLookupError:  # it died: the run hears of it from ipyparallel
            pass
    if remote:
        client.send_signal(signum.name, targets=sorted(remote), block=False)


class FaultHandling:
    """Lost engines, a lost controller, Ctrl-C and -x (a mixin of GoldController)."""

    def controller_lost(self, silent: float, queue: DispatchQueue, replayer: Replayer) -> None:
        """Every unfinished case becomes an error naming the cause; nothing waits on the
        dead controller again (no end-of-run teardown on the engines)."""
        state = self.state
        cause = (
            f"pytest-gold: the ipyparallel controller stopped answering ({silent:.0f} s "
            f"without a reply, limit --gold-wait={self.settings.wait_seconds:g}); this case "
            "did not finish. Check the controller's log, restart the cluster, and rerun "
            "what did not finish (e.g. with --lf)."
        )
        state.stop_reason = "the controller was lost"
        state.controller_lost = True
        unfinished = [(eid, n) for eid, batch in state.inflight.values() for n in batch.nodeids]
        unfinished += [(None, n) for n in queue.drain()]
        state.inflight.clear()
        for eid, nodeid in unfinished:
            engine = state.engines.get(eid) if eid is not None else None
            self.report_failed(nodeid, engine or NO_ENGINE, cause, replayer, when="setup")
        self.write_line(f"gold: {cause.removeprefix('pytest-gold: ')}", problem=True)

    def interrupted(self, client: Any, queue: DispatchQueue, replayer: Replayer) -> None:
        """Ctrl-C: interrupt the running cases and report what finished; a second Ctrl-C
        ends this at once (the cluster this run started is still stopped)."""
        self.stop("interrupted", queue, client)
        self.state.interrupted = True
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        while self.state.inflight and time.monotonic() < deadline:
            done, _ = concurrent.futures.wait(
                list(self.state.inflight),
                timeout=POLL_SECONDS,
                return_when=concurrent.futures.FIRST_COMPLETED,
            )
            for future in done:
                self.collect(future, queue, replayer, client)

    def batch_failed(
        self, eid: int, batch: Batch, error: Exception, queue: DispatchQueue, replayer: Replayer
    ) -> None:
        """A task raised instead of returning: its engine died, or the supervisor failed."""
        state = self.state
        engine = state.engines[eid]
        if _is_engine_lost(error):
            del state.engines[eid]
            state.lost_engines.add(eid)
            self.config.hook.pytest_gold_engine_lost(
                config=self.config, engine=engine, cases=list(batch.nodeids)
            )
            retry = []
            for nodeid in batch.nodeids:
                state.losses[nodeid] = state.losses.get(nodeid, 0) + 1
                if state.losses[nodeid] <= self.settings.retries and state.stop_reason is None:
                    retry.append(nodeid)
                else:
                    self.report_failed(
                        nodeid,
                        engine,
                        f"pytest-gold: engine lost: {engine.tag} (pid {engine.pid}) died while "
                        f"running this case ({state.losses[nodeid]} time(s)); {error}",
                        replayer,
                    )
            queue.requeue(retry)
            sent_again = (
                f"; {len(retry)} case{'s' if len(retry) != 1 else ''} sent again elsewhere"
                if retry
                else ""
            )
            self.write_line(
                f"gold: lost engine {engine.tag} (pid {engine.pid}) while it ran "
                f"{len(batch.nodeids)} case{'s' if len(batch.nodeids) != 1 else ''}{sent_again}",
                problem=True,
            )
            if not state.engines and queue:
                state.not_run.extend(queue.drain())
                state.stop_reason = EVERY_ENGINE_LOST
            return
        state.idle.append(eid)
        for nodeid in batch.nodeids:
            self.report_failed(
                nodeid,
                engine,
                f"pytest-gold: the supervisor on {engine.tag} failed while running this "
                f"case's batch (this is a bug in pytest-gold, please report it): {error}",
                replayer,
            )

    def report_failed(
        self,
        nodeid: str,
        engine: EngineInfo,
        message: str,
        replayer: Replayer,
        when: str = "call",
    ) -> None:
        events = failed_case_events(nodeid, None, {}, when, message)
        self.account(replayer.replay(BatchResult(engine=engine, events=events)), engine)

    def check_stop(self, session: pytest.Session, queue: DispatchQueue, client: Any) -> None:
        reason = session.shouldfail or session.shouldstop
        if reason:
            self.stop(str(reason), queue, client)

    def stop(self, reason: str, queue: DispatchQueue, client: Any) -> None:
        """No new case starts; the running ones are interrupted."""
        state = self.state
        state.stop_reason = reason
        state.stop_deadline = time.monotonic() + STOP_GRACE_SECONDS
        state.not_run.extend(queue.drain())
        engines = state.engines
        busy = {eid: engines[eid] for eid, _ in state.inflight.values() if eid in engines}
        if busy:
            signal_engines(client, busy, engine_module.INTERRUPT_SIGNAL)

    def abandon_unanswered(self) -> None:
        """Batches still out when the grace period after a stop ran out: their cases did
        not run, and their engines get nothing more from this run (not even the final
        teardown), so that nothing waits on them."""
        state = self.state
        engines = set()
        for eid, batch in state.inflight.values():
            engine = state.engines.get(eid, NO_ENGINE)
            engines.add(engine.tag)
            state.not_run.extend(batch.nodeids)
            state.cut_short.extend(f"{nodeid} (on {engine.tag})" for nodeid in batch.nodeids)
            state.unresponsive.add(eid)
        state.inflight.clear()
        self.write_line(
            f"gold: no answer from {', '.join(sorted(engines))} within {STOP_GRACE_SECONDS:g} s "
            "of the stop; the cases there count as not run",
            problem=True,
        )
