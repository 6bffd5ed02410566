"""The supervisor: lives in each ipyparallel engine and owns that engine's worker process.

The controller calls the ``remote_*`` functions through ipyparallel. The engine process
itself never imports or runs a case: it starts a worker (:mod:`pytest_gold.worker`) per
run, relays batches to it and the worker's events back (:mod:`pytest_gold.relay`), which
turns the death of a worker into a failed report for the case it was running; it then
starts a new worker for the rest.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import platform
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

from .messages import (
    HOST_ENV,
    Batch,
    BatchResult,
    EngineInfo,
    Event,
    NotRun,
    RunSpec,
    WorkerCrashed,
    batch_from_wire,
    event_from_wire,
    is_event,
    spec_from_wire,
    to_wire,
)
from .relay import BatchRelay
from .standby import StandbyWorker
from .synthetic import failed_case_events
from .worker import (
    CAPTURE_FD,
    EXITED,
    FINISH,
    INTERRUPTED,
    RUN,
    TEARDOWN_DONE,
    WORKER_EXIT_GRACE_SECONDS,
)
from .workerprocess import (
    POLL_SECONDS,
    WORKER_FINISH_SECONDS,
    WorkerProcess,
    WorkerStartFailed,
)
from .xdistcompat import WORKER_FINISHED

#: The controller's request to interrupt the running batch (-x, Ctrl-C), sent by pid on
#: the controller's machine, else through the engine's nanny. Not SIGINT: ipykernel
#: catches a SIGINT that lands after our function returned but before the reply went
#: out, and then never sends the reply (the controller would wait forever). This one
#: only sets a flag the supervisor polls.
INTERRUPT_SIGNAL = signal.SIGUSR2


_engine_id: int | None = None
_interrupt_requested = False
_workers: dict[str, WorkerProcess] = {}
#: Workers that finished their run and are ending their pytest session.
_exiting: list[WorkerProcess] = []
#: The worker started ahead for the next run (see :mod:`pytest_gold.standby`).
_standby = StandbyWorker()


def _request_interrupt(signum: int, frame: Any) -> None:
    global _interrupt_requested
    _interrupt_requested = True


def _install_interrupt_handler() -> None:
    # At import, which ipyparallel does in the engine's main thread when it unpickles the
    # first call: from then on INTERRUPT_SIGNAL never ends the engine, even when late.
    try:
        signal.signal(INTERRUPT_SIGNAL, _request_interrupt)
    except ValueError:  # not the main thread (imported elsewhere): nothing to install
        pass


_install_interrupt_handler()


def this_machine() -> str:
    """This machine's boot and pid namespace: processes that share it can signal each other
    by pid. Empty where it cannot be told (not Linux)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            boot_id = boot.read().strip()
        return f"{boot_id}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def engine_info() -> EngineInfo:
    import pytest

    from . import __version__

    host = os.environ.get(HOST_ENV) or socket.gethostname().split(".")[0]
    return EngineInfo(
        engine_id=-1 if _engine_id is None else _engine_id,
        host=host,
        pid=os.getpid(),
        python=platform.python_version(),
        executable=sys.executable,
        platform=sys.platform,
        pytest_gold=__version__,
        pytest=pytest.__version__,
        machine=this_machine(),
    )


def _worker_for(spec: RunSpec, engine: EngineInfo) -> WorkerProcess:
    worker = _workers.get(spec.run_id)
    if worker is not None and worker.process.poll() is None:
        return worker
    for run_id in list(_workers):  # a previous run that never said finish, or a dead worker
        _workers.pop(run_id).close()
    standby = _standby.take(spec, engine)
    if standby is not None:
        _workers[spec.run_id] = standby
        try:
            standby.wait_ready()
            return standby
        except WorkerStartFailed:  # code changed since it started (or it broke): anew
            _workers.pop(spec.run_id).close()
    worker = WorkerProcess(spec, engine)
    _workers[spec.run_id] = worker
    worker.wait_ready()
    return worker


def run_batch(spec: RunSpec, batch: Batch) -> BatchResult:
    global _interrupt_requested
    engine = engine_info()
    events: list[Event] = []
    pending = deque(batch.nodeids)
    try:
        while pending:
            if _interrupt_requested:  # before or between workers: start nothing more
                events.append(NotRun(nodeids=list(pending), reason=INTERRUPTED))
                break
            try:
                worker = _worker_for(spec, engine)
            except WorkerStartFailed as error:
                events += _errors_for(pending, f"could not start a worker on {engine.tag}: {error}")
                break
            worker.channel.send(
                {"kind": RUN, "batch": to_wire(Batch(list(pending), batch.lookahead))}
            )
            relay = BatchRelay(
                worker,
                engine,
                pending,
                batch.time_limits,
                interrupt_requested=_is_interrupt_requested,
                forget=_forget,
            )
            waiting = len(pending)
            try:
                pending = relay.run()
            except KeyboardInterrupt:
                # A SIGINT from an older controller or a user: handled as the flag is.
                _interrupt_requested = True
                pending = relay.run()
            events.extend(relay.events)
            if pending and len(pending) == waiting and not _interrupt_requested:
                # The worker died before starting any case of what was left: report
                # those cases rather than start worker after worker.
                cause = next(
                    (e.cause for e in reversed(relay.events) if isinstance(e, WorkerCrashed)),
                    "?",
                )
                events += _errors_for(
                    pending, f"the worker on {engine.tag} died before this case started: {cause}"
                )
                break
    finally:
        # Served: a request that arrives from now on is late, and is dropped by the next
        # run's first call (remote_engine_info).
        _interrupt_requested = False
    return BatchResult(engine=engine, events=events)


def _errors_for(nodeids: deque[str], reason: str) -> list[Event]:
    """Setup errors for cases that never got to run."""
    events: list[Event] = []
    for nodeid in nodeids:
        events += failed_case_events(nodeid, None, {}, "setup", f"pytest-gold: {reason}")
    return events


def _is_interrupt_requested() -> bool:
    return _interrupt_requested


def _forget(worker: WorkerProcess) -> None:
    """A dead or killed worker is no longer the run's."""
    _workers.pop(worker.spec.run_id, None)


def finish_run(run_id: str, prepare_next: bool = True, collect_output: bool = False) -> BatchResult:
    """End the run's worker: its final teardown (reported); the worker then finishes its
    session on its own and exits (see ``WORKER_EXIT_GRACE_SECONDS``). With
    ``collect_output``, wait for that end and return the worker's ``workeroutput``
    (controller plugins take part in xdist's protocol). With ``prepare_next``, a worker
    for the next run is started ahead (not when the run is about to stop this engine)."""
    engine = engine_info()
    events: list[Event] = []
    workeroutput = None
    worker = _workers.pop(run_id, None)
    if worker is None:
        return BatchResult(engine=engine, events=events)
    try:
        worker.channel.send({"kind": FINISH})
        deadline = time.monotonic() + WORKER_FINISH_SECONDS
        while time.monotonic() < deadline:
            message = worker.receive(POLL_SECONDS)
            if message is None:
                continue
            if message["kind"] == WORKER_FINISHED:
                workeroutput = message["workeroutput"]
                break
            if message["kind"] == EXITED or (
                message["kind"] == TEARDOWN_DONE and not collect_output
            ):
                break
            if message["kind"] == CAPTURE_FD:
                worker.channel.send({"kind": CAPTURE_FD})
            elif is_event(message):
                events.append(event_from_wire(message))
        else:
            worker.kill()
    except (EOFError, OSError):
        worker.kill()
    finally:
        # Whatever happened, the worker is reaped (or killed) later, never forgotten.
        worker.exit_deadline = time.monotonic() + WORKER_EXIT_GRACE_SECONDS + POLL_SECONDS
        _exiting.append(worker)
        if prepare_next:
            _standby.schedule(worker.spec, engine, busy=lambda: bool(_workers))
    return BatchResult(engine=engine, events=events, workeroutput=workeroutput)


def _reap_exiting() -> None:
    """Close finished workers; kill any that outlived their grace period."""
    for worker in list(_exiting):
        if worker.process.poll() is None and time.monotonic() < worker.exit_deadline:
            continue
        _exiting.remove(worker)
        worker.close()


@atexit.register
def _stop_workers_at_exit() -> None:
    """The engine is shutting down: a worker still running a case must not outlive it."""
    for worker in list(_workers.values()):
        worker.close()
    _standby.close()


def interrupt_run(run_id: str) -> None:
    """Interrupt the case the run's worker is running (SIGINT, like Ctrl-C)."""
    worker = _workers.get(run_id)
    if worker is not None:
        worker.interrupt()


# -- entry points called through ipyparallel (plain data in, plain data out) ------------


def remote_engine_info(
    engine_id: int, rootdir: str = "", invocation_dir: str = ""
) -> dict[str, Any]:
    """Who this engine is, and what the engine check needs to know about it. The first
    call of every run: an interruption request left over from an earlier run is dropped."""
    global _engine_id, _interrupt_requested
    _engine_id = engine_id
    _interrupt_requested = False
    info = engine_info()
    return to_wire(
        dataclasses.replace(
            info,
            rootdir_visible=not rootdir or os.path.isdir(rootdir),
            cwd_usable=not invocation_dir
            or (os.path.isdir(invocation_dir) and os.access(invocation_dir, os.R_OK | os.X_OK)),
        )
    )


def remote_run_batch(spec: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    _reap_exiting()
    return to_wire(run_batch(spec_from_wire(spec), batch_from_wire(batch)))


def remote_finish_run(
    run_id: str, prepare_next: bool = True, collect_output: bool = False
) -> dict[str, Any]:
    return to_wire(finish_run(run_id, prepare_next, collect_output))
