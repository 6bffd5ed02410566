"""The supervisor: lives in each ipyparallel engine and owns that engine's worker process.

The controller calls the ``remote_*`` functions through ipyparallel. The engine process
itself never imports or runs a case: it starts a worker (:mod:`pytest_gold.worker`) per
run, relays batches to it and the worker's events back (:mod:`pytest_gold.relay`), which
turns the death of a worker into a failed report for the case it was running; it then
starts a new worker for the rest.
"""

from __future__ import annotations

import asyncio
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

from . import leftovers, outputspool
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
    live_pids,
)

#: The controller's request to interrupt the running batch (-x, Ctrl-C), sent by pid on
#: the controller's machine, else through the engine's nanny. Not SIGINT: ipykernel
#: catches a SIGINT that lands after our function returned but before the reply went
#: out, and then never sends the reply (the controller would wait forever). This one
#: only sets a flag the supervisor polls.
INTERRUPT_SIGNAL = signal.SIGUSR2


#: How often an idle engine looks whether finished workers have exited.
TIDY_SECONDS = 1.0

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
    ended: list[str] = []
    pending = deque(batch.nodeids)
    spool = outputspool.spool_for(spec.run_id) if spec.stream_output else None
    if spool is not None:
        spool.settle()  # the controller collected the last batch's result, and its output
    restarted = False
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
            try:
                worker.channel.send(
                    {"kind": RUN, "batch": to_wire(Batch(list(pending), batch.lookahead))}
                )
            except OSError:  # it died since its last batch: a fresh one takes over, once
                _forget(worker)
                cause = worker.death_cause()
                worker.close()
                if not restarted:
                    restarted = True
                    continue
                events += _errors_for(
                    pending, f"the worker on {engine.tag} died before this case started: {cause}"
                )
                break
            relay = BatchRelay(
                worker,
                engine,
                pending,
                batch.time_limits,
                interrupt_requested=_is_interrupt_requested,
                forget=_forget,
                spool=spool,
            )
            waiting = len(pending)
            try:
                pending = relay.run()
            except KeyboardInterrupt:
                # A SIGINT from an older controller or a user: handled as the flag is.
                _interrupt_requested = True
                pending = relay.run()
            events.extend(relay.events)
            ended.extend(relay.leftovers)
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
    return _result(engine, events, spool, ended)


def _result(
    engine: EngineInfo, events: list[Event], spool: outputspool.OutputSpool | None, ended: list[str]
) -> BatchResult:
    return BatchResult(
        engine=engine,
        events=events,
        output_end=spool.end if spool is not None else 0,
        output_path=spool.path if spool is not None else "",
        leftovers=ended,
    )


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


def finish_run(run_id: str, prepare_next: bool = True) -> BatchResult:
    """End the run's worker: its final teardown (reported); the worker then finishes its
    session on its own and exits (see ``WORKER_EXIT_GRACE_SECONDS``). With
    ``prepare_next``, a worker for the next run is started ahead (not when the run is
    about to stop this engine)."""
    engine = engine_info()
    events: list[Event] = []
    worker = _workers.pop(run_id, None)
    if worker is None:
        return BatchResult(engine=engine, events=events)
    spool = outputspool.spool_for(run_id) if worker.spec.stream_output else None
    if spool is not None:
        spool.settle()
    try:
        worker.channel.send({"kind": FINISH})
        deadline = time.monotonic() + WORKER_FINISH_SECONDS
        while time.monotonic() < deadline:
            more = spool is not None and spool.pump(worker)
            message = worker.receive(0 if more else POLL_SECONDS)
            if message is None:
                continue
            if message["kind"] in (TEARDOWN_DONE, EXITED):
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
        if spool is not None:
            spool.pump(worker, everything=True)
            outputspool.finished(run_id)
        # The last teardown is done: what the cases started and left running is ended
        # now, so that the run can say so.
        ended = worker.end_leftovers()
        # Whatever happened, the worker is reaped (or killed) later, never forgotten.
        worker.exit_deadline = time.monotonic() + WORKER_EXIT_GRACE_SECONDS + POLL_SECONDS
        _exiting.append(worker)
        if prepare_next:
            _standby.schedule(worker.spec, engine, busy=lambda: bool(_workers))
        _tidy_later()
    return _result(engine, events, spool, ended)


def _tidy_later() -> None:
    """Once the engine is idle: close workers that ended their session and collect what
    their cases left (otherwise done at the next task, maybe the next run)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not inside the kernel's event loop
        return
    loop.call_later(TIDY_SECONDS, _tidy)


def _tidy() -> None:
    _reap_exiting()
    leftovers.reap_adopted(live_pids())
    if _exiting:
        _tidy_later()


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
    for worker in [*_workers.values(), *_exiting]:
        worker.close()
    _standby.close()
    outputspool.close_all()


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
    _adopt_leftovers()
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


def _adopt_leftovers() -> None:
    """The engine becomes the subreaper of what workers start (see
    :mod:`pytest_gold.leftovers`), and collects those of them that ended."""
    leftovers.become_subreaper()
    leftovers.reap_adopted(live_pids())


def remote_run_batch(spec: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    _adopt_leftovers()
    _reap_exiting()
    return to_wire(run_batch(spec_from_wire(spec), batch_from_wire(batch)))


def remote_finish_run(run_id: str, prepare_next: bool = True) -> dict[str, Any]:
    _adopt_leftovers()
    return to_wire(finish_run(run_id, prepare_next))


def remote_read_output(run_id: str, start: int, max_bytes: int) -> dict[str, Any]:
    """Live output (-s) the controller did not receive: see :mod:`pytest_gold.outputspool`."""
    return outputspool.read(run_id, start, max_bytes)
