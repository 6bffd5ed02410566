"""Fault handling of the controller: lost engines, a lost controller, interruptions.

A mixin of :class:`pytest_gold.controller.session.GoldController`; it uses the controller's
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

from pytest_gold.controller.reporting import Replayer
from pytest_gold.engine import remote as engine_module
from pytest_gold.policy.scheduling import DispatchQueue
from pytest_gold.protocol import timing
from pytest_gold.protocol.messages import Batch, BatchResult, EngineInfo
from pytest_gold.protocol.synthetic import failed_case_events
from pytest_gold.protocol.timing import CONTROLLER_POLL_SECONDS as POLL_SECONDS

#: After Ctrl-C, how long interrupted cases (and teardowns) get to report back: longer
#: than an engine waits for an interrupted case before it kills its worker.
INTERRUPT_GRACE_SECONDS = timing.INTERRUPT_GRACE_SECONDS + 5
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
    embedded cluster's engines have no nanny), through their nanny to the others. An
    engine that gave this run a signal of its own (``interrupt_signal``) gets that one
    instead: it interrupts only this run's batches there."""
    here = engine_module.this_machine()
    remote: dict[int, list[int]] = {}
    for eid, engine in engines.items():
        number = engine.interrupt_signal or int(signum)
        if not (engine.machine and engine.machine == here):
            remote.setdefault(number, []).append(eid)
            continue
        try:
            os.kill(engine.pid, number)
        except ProcessLookupError:  # it died: the run hears of it from ipyparallel
            pass
    for number, targets in sorted(remote.items()):
        # By name where it has one: the engine's platform may number signals differently.
        name = signal.Signals(number).name if number == signum else number
        client.send_signal(name, targets=sorted(targets), block=False)


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
        # Results keep coming in pytest's order where that matters: what finished before
        # the interruption is reported, as in a plain run.
        self.stop("interrupted", queue, client, keep_releasing=True)
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
            self.engine_lost(eid, list(batch.nodeids))
            retry = []
            for nodeid in batch.nodeids:
                state.losses[nodeid] = state.losses.get(nodeid, 0) + 1
                if state.losses[nodeid] <= self.settings.retries and state.stop_reason is None:
                    retry.append(nodeid)
                else:
                    self.report_failed(
                        nodeid,
                        engine,
                        f"engine lost: {engine.tag} (pid {engine.pid}) died while "
                        f"running this case ({state.losses[nodeid]} time(s)); {error}",
                        replayer,
                    )
            queue.requeue(retry)
            state.cases_resent += len(retry)
            state.cases_failed_lost += len(batch.nodeids) - len(retry)
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

    def engine_lost(self, eid: int, cases: list[str] | None = None) -> None:
        """The engine is gone (with ``cases`` of its batch, if it was running one)."""
        state = self.state
        engine = state.lost[eid] = state.engines.pop(eid)
        state.lost_engines.add(eid)
        if self.progress is not None:
            self.progress.lose_engine(engine.host)
        self.config.hook.pytest_gold_engine_lost(
            config=self.config, engine=engine, cases=cases or []
        )

    def drop_lost_idle(self, client: Any, queue: DispatchQueue) -> None:
        """Idle engines that ipyparallel no longer has (the controller stopped hearing
        their heartbeat): lost, and never sent a batch (ipyparallel would refuse it)."""
        state = self.state
        registered = set(client.ids)
        for eid in [eid for eid in state.idle if eid not in registered]:
            state.idle.remove(eid)
            engine = state.engines[eid]
            self.engine_lost(eid)
            self.write_line(
                f"gold: lost engine {engine.tag} (pid {engine.pid}) while it was idle",
                problem=True,
            )
        if not state.engines and queue and state.stop_reason is None:
            state.not_run.extend(queue.drain())
            state.stop_reason = EVERY_ENGINE_LOST

    def lost_recap(self) -> list[str]:
        """End-of-run lines about the engines lost during the run and their cases: the
        lines printed when they were lost may be far up among the results."""
        state = self.state
        if not state.lost:
            return []
        by_host: dict[str, list[EngineInfo]] = {}
        for engine in state.lost.values():
            by_host.setdefault(engine.host, []).append(engine)
        progress = self.progress
        parts = []
        for host, engines in sorted(by_host.items()):
            had = progress.hosts[host].engines if progress and host in progress.hosts else 0
            tags = ", ".join(engine.tag for engine in sorted(engines, key=lambda e: e.engine_id))
            whole = f"every engine of {host}: " if had and len(engines) >= had else ""
            parts.append(f"{whole}{tags}")
        count = len(state.lost)
        lines = [
            f"gold: {count} engine{'s' if count != 1 else ''} lost during the run "
            f"({'; '.join(parts)})"
        ]
        moved = state.cases_resent
        lines.append(
            f"gold: {moved} case{'s' if moved != 1 else ''} running on "
            f"{'them' if count != 1 else 'it'} went to other engines"
            + (
                f", {state.cases_failed_lost} failed as lost (--gold-retries)"
                if state.cases_failed_lost
                else ""
            )
            + "; the cluster keeps running without them: see 'Restarting lost engines' in "
            "the lab-cluster guide"
        )
        return lines

    def report_failed(
        self,
        nodeid: str,
        engine: EngineInfo,
        message: str,
        replayer: Replayer,
        when: str = "call",
    ) -> None:
        events = failed_case_events(nodeid, None, {}, when, message)
        result = BatchResult(engine=engine, events=events)
        self.take_result([nodeid], result, lambda: self.account(replayer.replay(result), engine))

    def check_stop(self, session: pytest.Session, queue: DispatchQueue, client: Any) -> None:
        reason = session.shouldfail or session.shouldstop
        if reason:
            self.stop(str(reason), queue, client)

    def stop(
        self, reason: str, queue: DispatchQueue, client: Any, *, keep_releasing: bool = False
    ) -> None:
        """No new case starts; the running ones are interrupted. Unless ``keep_releasing``,
        results held back for pytest's order (see pytest_gold.controller.verdicts) stay
        held: a plain run stopped before those cases."""
        if self.in_order is not None and not keep_releasing:
            self.in_order.close()
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
