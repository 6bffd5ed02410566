"""Faults on the controller: signals to engines, Ctrl-C/SIGTERM, and what is said about
lost engines, a lost controller and engines that stopped answering.

The rules (what a loss costs, when a run stops) are :class:`pytest_gold.policy.run.Run`'s;
this module has the I/O and the wording.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import ipyparallel as ipp

import pytest_gold.controller.tasks as tasks
import pytest_gold.protocol.timing as timing
from pytest_gold.controller.progress import Progress
from pytest_gold.policy.run import EVERY_ENGINE_LOST
from pytest_gold.protocol.messages import EngineInfo

#: After Ctrl-C, how long interrupted cases (and teardowns) get to report back: longer
#: than an engine waits for an interrupted case before it kills its worker.
INTERRUPT_GRACE_SECONDS = timing.INTERRUPT_GRACE_SECONDS + 5
#: After a stop (-x, --maxfail, pytest.exit()), how long running batches get to report
#: back before their cases count as not run and their engines as unresponsive.
STOP_GRACE_SECONDS = INTERRUPT_GRACE_SECONDS + 10
__all__ = ["EVERY_ENGINE_LOST"]  # where the run's loop and the tests look for it
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


def is_engine_lost(error: Exception) -> bool:
    """ipyparallel reports a task whose engine died as an EngineError (maybe wrapped)."""
    if isinstance(error, ipp.error.EngineError):
        return True
    return getattr(error, "ename", None) == "EngineError"


def signal_engines(client: Any, engines: dict[int, EngineInfo], signum: signal.Signals) -> None:
    """Send ``signum`` to engines without waiting: by pid to those on this machine (an
    embedded cluster's engines have no nanny), through their nanny to the others. An
    engine that gave this run a signal of its own (``interrupt_signal``) gets that one
    instead: it interrupts only this run's batches there."""
    here = tasks.this_machine()
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


def controller_lost_cause(silent: float, wait_seconds: float) -> str:
    """What every case that did not finish says when the hub stopped answering."""
    return (
        f"pytest-gold: the ipyparallel controller stopped answering ({silent:.0f} s "
        f"without a reply, limit --gold-wait={wait_seconds:g}); this case "
        "did not finish. Check the controller's log, restart the cluster, and rerun "
        "what did not finish (e.g. with --lf)."
    )


def lost_case_message(engine: EngineInfo) -> str:
    """The failure of a case lost with its engine (Run appends how often it was lost)."""
    return f"engine lost: {engine.tag} (pid {engine.pid}) died while running this case"


def supervisor_failed_message(engine: EngineInfo, error: BaseException) -> str:
    return (
        f"pytest-gold: the supervisor on {engine.tag} failed while running this "
        f"case's batch (this is a bug in pytest-gold, please report it): {error}"
    )


def lost_engine_line(engine: EngineInfo, cases: int, resent: int) -> str:
    """The line said when an engine is lost (``cases``: what it was running)."""
    if not cases:
        return f"gold: lost engine {engine.tag} (pid {engine.pid}) while it was idle"
    sent_again = (
        f"; {resent} case{'s' if resent != 1 else ''} sent again elsewhere" if resent else ""
    )
    return (
        f"gold: lost engine {engine.tag} (pid {engine.pid}) while it ran "
        f"{cases} case{'s' if cases != 1 else ''}{sent_again}"
    )


def abandoned_line(tags: Iterable[str]) -> str:
    return (
        f"gold: no answer from {', '.join(sorted(set(tags)))} within {STOP_GRACE_SECONDS:g} s "
        "of the stop; the cases there count as not run"
    )


def lost_recap(
    lost: Mapping[int, EngineInfo], progress: Progress | None, resent: int, failed: int
) -> list[str]:
    """End-of-run lines about the engines lost during the run and their cases: the
    lines printed when they were lost may be far up among the results."""
    if not lost:
        return []
    by_host: dict[str, list[EngineInfo]] = {}
    for engine in lost.values():
        by_host.setdefault(engine.host, []).append(engine)
    parts = []
    for host, engines in sorted(by_host.items()):
        had = progress.hosts[host].engines if progress and host in progress.hosts else 0
        tags = ", ".join(engine.tag for engine in sorted(engines, key=lambda e: e.engine_id))
        whole = f"every engine of {host}: " if had and len(engines) >= had else ""
        parts.append(f"{whole}{tags}")
    count = len(lost)
    lines = [
        f"gold: {count} engine{'s' if count != 1 else ''} lost during the run ({'; '.join(parts)})"
    ]
    lines.append(
        f"gold: {resent} case{'s' if resent != 1 else ''} running on "
        f"{'them' if count != 1 else 'it'} went to other engines"
        + (f", {failed} failed as lost (--gold-retries)" if failed else "")
        + "; the cluster keeps running without them: see 'Restarting lost engines' in "
        "the lab-cluster guide"
    )
    return lines
