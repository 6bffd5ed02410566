"""The supervisor: lives in each ipyparallel engine and owns that engine's worker process.

The controller calls the functions of :mod:`pytest_gold.engine.remote` through
ipyparallel, which call the ``serve_*`` functions here; only an engine imports this
module, and the first call installs the engine's signal handlers and exit hook
(:func:`_start`). The engine process
itself never imports or runs a case: it starts a worker (:mod:`pytest_gold.worker`) per
run, relays batches to it and the worker's events back (:mod:`pytest_gold.engine.relay`), which
turns the death of a worker into a failed report for the case it was running; it then
starts a new worker for the rest. Runs that share the engine each keep their own worker
(:mod:`pytest_gold.engine.engineruns`); the workers no run needs any more are ended
(:mod:`pytest_gold.engine.reaping`).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import platform
import socket
import sys
import time
from collections import deque
from typing import Any

import pytest_gold.engine.outputspool as outputspool
import pytest_gold.engine.reaping as reaping
import pytest_gold.engine.slurmjob as slurmjob
from pytest_gold.engine.endofrun import end_worker
from pytest_gold.engine.engineruns import (
    ControllerId,
    EngineRuns,
    SignalSlots,
    install_interrupt_handlers,
    this_machine,
)
from pytest_gold.engine.relay import BatchRelay
from pytest_gold.engine.remote import (  # the names the controller used before remote.py
    remote_engine_info,
    remote_finish_run,
    remote_read_output,
    remote_run_batch,
)
from pytest_gold.engine.standby import StandbyWorker
from pytest_gold.engine.workerprocess import WorkerProcess, WorkerStartFailed
from pytest_gold.protocol.control import (
    INTERRUPT_SIGNAL,
    INTERRUPTED,
    PROTOCOL_VERSION,
)
from pytest_gold.protocol.messages import (
    HOST_ENV,
    Batch,
    BatchResult,
    EngineInfo,
    Event,
    NotRun,
    RunSpec,
    WorkerCrashed,
    batch_from_wire,
    result_to_wire,
    spec_from_wire,
    to_wire,
)
from pytest_gold.protocol.synthetic import failed_case_events
from pytest_gold.protocol.timing import (
    CONTROLLER_LOOK_SECONDS,
    WORKER_EXIT_GRACE_SECONDS,
    WORKER_FINISH_SECONDS,
)

__all__ = [
    "INTERRUPT_SIGNAL",
    "WORKER_FINISH_SECONDS",
    "remote_engine_info",
    "remote_finish_run",
    "remote_read_output",
    "remote_run_batch",
    "this_machine",
]

_engine_id: int | None = None
#: INTERRUPT_SIGNAL came: the running batch, whatever its run, is interrupted.
_interrupt_any = False


def _request_interrupt(signum: int, frame: Any) -> None:
    global _interrupt_any
    _interrupt_any = True


def _request_run_interrupt(signum: int, frame: Any) -> None:
    if _runs is not None:  # else no run was given this signal yet: nothing to interrupt
        _runs.request_interrupt(signum)


#: The runs using this engine; made by :func:`_start` at the engine's first call.
_runs: EngineRuns | None = None
#: The worker started ahead for the next run (see :mod:`pytest_gold.engine.standby`).
_standby = StandbyWorker()


def _start() -> EngineRuns:
    """Take over this process as its engine's supervisor, once: signal handlers for the
    interruptions, an exit hook that ends the workers. Not at import, which would do it
    to any process that imports this module (a ``pytest`` that only calls engines)."""
    global _runs
    if _runs is None:
        _runs = EngineRuns(
            slots=SignalSlots(
                INTERRUPT_SIGNAL,
                install_interrupt_handlers(
                    INTERRUPT_SIGNAL, _request_interrupt, _request_run_interrupt
                ),
            ),
            clock=time.monotonic,
            exit_grace=WORKER_FINISH_SECONDS + WORKER_EXIT_GRACE_SECONDS,
        )
        atexit.register(reaping.stop_workers_at_exit, _runs, _standby)
    return _runs


def _engine_runs() -> EngineRuns:
    return _start()


def engine_info() -> EngineInfo:
    import pytest

    from pytest_gold import __version__

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
        protocol=PROTOCOL_VERSION,
        machine=this_machine(),
    )


def _worker_for(spec: RunSpec, engine: EngineInfo) -> WorkerProcess:
    """The run's worker on this engine: its own, never another run's."""
    run = _engine_runs().join(spec.run_id, ControllerId(**spec.controller))
    worker = run.worker
    if worker is not None and worker.alive:
        return worker
    if worker is not None:  # dead (its crash was reported)
        run.worker = None
        worker.close()
    standby = _standby.take(spec, engine)
    if standby is not None:
        run.worker = standby
        try:
            standby.wait_ready()
            return standby
        except WorkerStartFailed:  # code changed since it started (or it broke): anew
            run.worker = None
            standby.close()
    worker = WorkerProcess(spec, engine)
    run.worker = worker
    worker.wait_ready()
    return worker


def run_batch(spec: RunSpec, batch: Batch) -> BatchResult:
    global _interrupt_any
    engine = engine_info()
    events: list[Event] = []
    ended: list[str] = []
    pending = deque(batch.nodeids)
    spool = outputspool.spool_for(spec.run_id) if spec.stream_output else None
    if spool is not None:
        spool.settle()  # the controller collected the last batch's result, and its output
    restarted = False
    runs = _engine_runs()
    run = runs.join(spec.run_id, ControllerId(**spec.controller))
    run.running = True
    next_look = time.monotonic()

    def interrupt_requested() -> bool:
        nonlocal next_look
        if not (_interrupt_any or run.interrupt_requested) and time.monotonic() >= next_look:
            # A killed pytest on this machine sends no interruption: its cases stop anyway.
            next_look = time.monotonic() + CONTROLLER_LOOK_SECONDS
            run.interrupt_requested = run.controller.gone(runs.here)
        return _interrupt_any or run.interrupt_requested

    try:
        while pending:
            if interrupt_requested():  # before or between workers: start nothing more
                events.append(NotRun(nodeids=list(pending), reason=INTERRUPTED))
                break
            try:
                worker = _worker_for(spec, engine)
            except WorkerStartFailed as error:
                events += _errors_for(pending, f"could not start a worker on {engine.tag}: {error}")
                break
            try:
                worker.send_batch(Batch(list(pending), batch.lookahead))
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
                interrupt_requested=interrupt_requested,
                forget=_forget,
                spool=spool,
            )
            waiting = len(pending)
            try:
                pending = relay.run()
            except KeyboardInterrupt:
                # A SIGINT from an older controller or a user: handled as the flag is.
                _interrupt_any = True
                pending = relay.run()
            events.extend(relay.events)
            ended.extend(relay.leftovers)
            if pending and len(pending) == waiting and not interrupt_requested():
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
        # run's first call (remote_engine_info). A run's own request stays: the run is
        # stopping, and its batches still queued here start nothing.
        _interrupt_any = False
        runs.task_done(run)
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


def _forget(worker: WorkerProcess) -> None:
    """A dead or killed worker is no longer the run's."""
    run = _engine_runs().get(worker.spec.run_id)
    if run is not None and run.worker is worker:
        run.worker = None


def finish_run(run_id: str, prepare_next: bool = True, collect_output: bool = False) -> BatchResult:
    """End the run's worker: its final teardown (reported); the worker then finishes its
    session on its own and exits (see ``WORKER_EXIT_GRACE_SECONDS``). With
    ``prepare_next``, a worker for the next run is started ahead (not when the run is
    about to stop this engine, nor while another run has a worker here). With
    ``collect_output``, wait for that end and return the worker's ``workeroutput``
    (controller plugins take part in xdist's protocol)."""
    engine = engine_info()
    runs = _engine_runs()
    run = runs.leave(run_id)
    runs.task_done(None)
    if run is None:
        return BatchResult(engine=engine, events=[])
    events: list[Event] = []
    ended: list[str] = []
    workeroutput = None
    spool = None
    # A worker ended while the run was idle first: its teardown came before.
    for worker, finish_sent in ((run.retired, True), (run.worker, False)):
        if worker is not None:
            if spool is None and worker.spec.stream_output:
                spool = outputspool.spool_for(run_id)
                spool.settle()
            worker_events, output = end_worker(
                worker, finish_sent, spool, ended, collect_output, reaping.exiting
            )
            events += worker_events
            workeroutput = output if output is not None else workeroutput
    if spool is not None:
        outputspool.finished(run_id)
    if prepare_next and run.worker is not None:
        _standby.schedule(run.worker.spec, engine, busy=runs.busy)
    reaping.reap_exiting()
    return dataclasses.replace(_result(engine, events, spool, ended), workeroutput=workeroutput)


# -- what the functions of pytest_gold.engine.remote call (plain data in and out) -------


def serve_engine_info(
    engine_id: int,
    rootdir: str = "",
    invocation_dir: str = "",
    run_id: str = "",
    controller: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Who this engine is, and what the engine check needs to know about it. The first
    call of every run: an interruption request left over from an earlier run is dropped,
    and the run gets the signal that interrupts its own batches here."""
    global _engine_id, _interrupt_any
    runs = _start()
    reaping.adopt_leftovers()
    _engine_id = engine_id
    _interrupt_any = False
    job, job_end = slurmjob.job_facts()
    info = dataclasses.replace(
        engine_info(),
        slurm_job=job,
        job_end=job_end,
        rootdir_visible=not rootdir or os.path.isdir(rootdir),
        cwd_usable=not invocation_dir
        or (os.path.isdir(invocation_dir) and os.access(invocation_dir, os.R_OK | os.X_OK)),
    )
    if run_id:
        run = runs.join(run_id, ControllerId(**(controller or {})))
        info = dataclasses.replace(info, interrupt_signal=run.interrupt_signal)
    runs.task_done(None)
    reaping.tidy(runs, serving=run_id)
    return to_wire(info)


def serve_run_batch(spec: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    _start()
    reaping.adopt_leftovers()
    run_spec = spec_from_wire(spec)
    reaping.tidy(_engine_runs(), serving=run_spec.run_id)
    try:
        return result_to_wire(run_batch(run_spec, batch_from_wire(batch)))
    finally:
        reaping.schedule_tidy(_engine_runs())


def serve_finish_run(
    run_id: str, prepare_next: bool = True, collect_output: bool = False
) -> dict[str, Any]:
    _start()
    reaping.adopt_leftovers()
    try:
        return result_to_wire(finish_run(run_id, prepare_next, collect_output))
    finally:
        reaping.tidy(_engine_runs())


def serve_read_output(run_id: str, start: int, max_bytes: int) -> dict[str, Any]:
    return outputspool.read(run_id, start, max_bytes)
