"""One run from start to end: the Run and its Driver set up, the first wait for engines,
the loop, Ctrl-C, and the end of the run on the engines.

Called by :meth:`pytest_gold.controller.session.GoldController.pytest_runtestloop` with the
cluster open; the rules are :class:`pytest_gold.policy.run.Run`'s, the ipyparallel side is
:class:`pytest_gold.controller.driver.Driver`'s.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import pytest

import pytest_gold.controller.tasks as tasks
from pytest_gold.controller.driver import Driver, TooFewEngines
from pytest_gold.controller.enginepool import (
    CHECK_SETTLE_SECONDS,
    WAIT_LINE_SECONDS,
    WAIT_POLL_SECONDS,
    announce_lines,
    defined_engines,
    more_than_defined,
    too_few_engines,
    waiting_line,
)
from pytest_gold.controller.faults import INTERRUPT_GRACE_SECONDS, STOP_GRACE_SECONDS
from pytest_gold.controller.taskoutput import note_leftovers
from pytest_gold.controller.verdicts import (
    first_cases,
    stepwise_allowed,
    stops_on_failure,
    without_left_out,
)
from pytest_gold.launch.cluster import ClusterHandle
from pytest_gold.launch.slurmjobs import submitted_line
from pytest_gold.policy.enginecheck import describe
from pytest_gold.policy.run import BATCHES_IN_FLIGHT, Run
from pytest_gold.policy.scheduling import DispatchQueue, InOrderRelease, dispatch_order
from pytest_gold.policy.walltime import Margin
from pytest_gold.protocol.collecting import selected_paths
from pytest_gold.protocol.identity import ControllerId
from pytest_gold.protocol.messages import RunSpec, result_from_wire
from pytest_gold.protocol.xdistcompat import pytest_environment
from pytest_gold.settings import DEFAULT_WORKER_ENV, LEFTOVERS_END, GoldSettings

#: How long the end-of-run teardown on the engines may take.
FINISH_TIMEOUT_SECONDS = tasks.WORKER_FINISH_SECONDS + 30


def make_run(
    config: pytest.Config,
    settings: GoldSettings,
    nodeids: list[str],
    known: Mapping[str, float],
    time_limits: Mapping[str, float],
) -> Run:
    """The Run of these cases: in pytest's order, one case per task, where the verdict
    depends on the order (see pytest_gold.controller.verdicts); else by duration."""
    in_order = stops_on_failure(config)
    if not in_order:
        first = first_cases(config, nodeids)
        nodeids = dispatch_order(nodeids, known, settings.order, first=first)
    queue = DispatchQueue(
        nodeids,
        engine_count=1,  # set once the engines are there
        target_batch_seconds=settings.batch_seconds,
        known_seconds=known,
        max_batch_cases=1 if in_order else None,
        keep_order=in_order,
    )
    return Run(
        queue,
        min_engines=settings.min_engines,
        retries=settings.retries,
        wait_seconds=settings.wait_seconds,
        stop_grace_seconds=STOP_GRACE_SECONDS,
        interrupt_grace_seconds=INTERRUPT_GRACE_SECONDS,
        time_limits=dict(time_limits),
        started_at=time.monotonic(),
        settle_seconds=CHECK_SETTLE_SECONDS,
        in_order=InOrderRelease(nodeids) if in_order else None,
        maxfail=config.getoption("maxfail", 0) or 0,
        stepwise_allowed=stepwise_allowed(config),
        margin=Margin(seconds=settings.walltime_margin_seconds),
        # With live output (-s) an engine keeps a batch's output until its next batch
        # starts, and the controller reads what it missed with a task queued behind
        # what the engine holds: one batch at a time there.
        batches_in_flight=1 if config.getoption("capture") == "no" else BATCHES_IN_FLIGHT,
    )


def wait_for_engines(driver: Driver, handle: ClusterHandle, settings: GoldSettings) -> None:
    """Until --gold-min-engines engines registered and passed the check, or fail."""
    run, client, terminal = driver.run, driver.client, driver.terminal
    need = settings.min_engines
    deadline = run.started_at + settings.wait_seconds
    last_line = time.monotonic()
    last_count = -1
    last_jobs = ""
    defined = defined_engines(handle)
    if defined is not None and need > defined and len(client.ids) < need:
        raise pytest.UsageError(more_than_defined(handle, settings.profile, need, defined))
    if handle.slurm_jobs:
        terminal.write_line(submitted_line(handle.slurm_jobs, kept=handle.keep))
    while True:
        now = driver.discover(time.monotonic())
        usable = len(run.usable)
        if usable >= need:
            break
        registered = len(client.ids)
        try:
            driver.apply(run.tick(now), now)
        except TooFewEngines:
            text = too_few_engines(handle, settings, usable, registered, driver.failed_check)
            raise pytest.UsageError(text) from None
        jobs_changed = (
            driver.jobs is not None
            and driver.jobs.poll(now)
            and (driver.jobs.status() != last_jobs)
        )
        if registered != last_count or jobs_changed or now - last_line >= WAIT_LINE_SECONDS:
            line = waiting_line(registered, defined, usable, need, deadline - now)
            last_jobs = driver.jobs.status() if driver.jobs is not None else ""
            terminal.write_line(f"{line}; {last_jobs}" if last_jobs else line)
            last_count, last_line = registered, now
        driver.checks.wait_for_news(registered, WAIT_POLL_SECONDS)
    driver.initial = False
    for line in describe(driver.failed_check):
        terminal.write_line(f"gold: left out of the run, engine check failed: {line}", problem=True)
    for line in announce_lines(handle, driver.engines):
        terminal.write_line(line)
    for warning in handle.warnings:
        terminal.write_line(f"gold: warning: {warning}", problem=True)


def run_spec(
    config: pytest.Config,
    settings: GoldSettings,
    items: list[pytest.Item],
    *,
    run_id: str,
    controller_id: ControllerId,
    engine_count: int,
    stream_output: bool,
) -> RunSpec:
    return RunSpec(
        run_id=run_id,
        invocation_dir=str(config.invocation_params.dir),
        rootdir=str(config.rootpath),
        inifile=str(config.inipath or ""),
        args=[str(arg) for arg in config.invocation_params.args],
        collect_paths=selected_paths(items),
        collect_args=list(config.args),
        engine_count=engine_count,
        env={**pytest_environment(), **settings.env},
        default_env=DEFAULT_WORKER_ENV,
        stream_output=stream_output,
        end_leftovers=settings.leftovers == LEFTOVERS_END,
        controller=dataclasses.asdict(controller_id),
    )


def drive(driver: Driver, session: pytest.Session) -> None:
    """The loop; on Ctrl-C the interruption (a second Ctrl-C: leave at once); at the end
    the teardowns on the engines."""
    try:
        try:
            driver.loop(session)
        except KeyboardInterrupt:
            try:
                driver.interrupt(session)
            except KeyboardInterrupt:
                driver.hard_stop = True  # a second Ctrl-C: leave at once
            raise
    finally:
        driver.terminal.stop_status_line()
        try:
            finish(driver)
        finally:
            driver.engine_nodes.all_down()
        driver.progress.stop()  # engine use ends here, not after the cluster stops
        driver.ticker.state = driver.run.stop_reason or "finished"
        driver.ticker.tick(driver.run, force=True)


def left_out(run: Run) -> list[str]:
    """Cases that finished after the point where the run stopped: not reported."""
    return run.in_order.left_over() if run.in_order is not None else []


def finish(driver: Driver) -> None:
    """End the workers: last teardowns (reported), then their pytest sessions."""
    run = driver.run
    used = run.engines_to_finish()
    if not used or driver.controller_lost or driver.hard_stop:
        return
    # A worker ahead for the next run only where the engines outlive this one.
    handle = driver.handle
    prepare_next = handle is None or not handle.owned or handle.keep
    result = tasks.finish_run(
        driver.client, used, driver.run_id, prepare_next, driver.engine_nodes.wants_output
    )
    timeout = INTERRUPT_GRACE_SECONDS if driver.interrupted else FINISH_TIMEOUT_SECONDS
    try:
        outcomes = driver.output.await_finish(result, used, timeout)
    except Exception as error:  # the run's results stand; say what was not torn down
        driver.terminal.write_line(
            f"gold: the end-of-run teardown on the engines failed: {error}", problem=True
        )
        return
    skipped = set(left_out(run))
    for eid, metadata, data in outcomes:
        finished = result_from_wire(data)
        driver.output.settle(metadata, eid, finished)
        driver.replayer.replay(without_left_out(finished, skipped))
        note_leftovers(driver.terminal, finished)
        driver.engine_nodes.node_down(finished.engine.engine_id, finished.workeroutput)
