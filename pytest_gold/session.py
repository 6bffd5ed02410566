"""The controller's run loop: hand batches to idle engines, replay what comes back.

Registered as a plugin when ``--gold`` is on. It replaces pytest's ``pytest_runtestloop``
only after collection, so ``--collect-only`` and runs that select nothing never start a
cluster.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from . import engine as engine_module
from .cluster import ClusterError, ClusterHandle, attach, start_embedded
from .messages import (
    Batch,
    EngineInfo,
    RunSpec,
    engine_from_wire,
    result_from_wire,
    to_wire,
)
from .reporting import Replayer
from .scheduling import DispatchQueue
from .settings import GoldSettings

#: How often the loop wakes up to look for new engines and stop requests.
POLL_SECONDS = 0.2
#: How long the end-of-run teardown on the engines may take.
FINISH_TIMEOUT_SECONDS = engine_module.WORKER_FINISH_SECONDS + 30


@dataclass
class RunState:
    """Bookkeeping of one run on the controller."""

    engines: dict[int, EngineInfo] = field(default_factory=dict)
    idle: list[int] = field(default_factory=list)
    inflight: dict[Any, tuple[int, Batch]] = field(default_factory=dict)
    used_engines: set[int] = field(default_factory=set)
    not_run: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    exit_request: Any = None


class GoldController:
    """The controller-side plugin of a ``--gold`` run."""

    def __init__(self, config: pytest.Config, settings: GoldSettings) -> None:
        self.config = config
        self.settings = settings
        self.handle: ClusterHandle | None = None
        self.state = RunState()
        self.run_id = uuid.uuid4().hex

    # -- reporting hooks -----------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> str:
        return f"gold: {self.settings.describe()}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.state.not_run:
            count = len(self.state.not_run)
            terminalreporter.write_line(
                f"gold: {count} selected case{'s' if count != 1 else ''} did not run "
                f"({self.state.stop_reason or 'the run stopped early'}).",
                yellow=True,
            )

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close_cluster()

    # -- the run loop --------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(
                f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} "
                "during collection"
            )
        if session.config.option.collectonly or not session.items:
            return True
        items = list(dict.fromkeys(session.items))
        try:
            self.handle = self.open_cluster()
        except ClusterError as error:
            raise pytest.UsageError(str(error)) from None
        try:
            self.run(session, items)
        finally:
            self.close_cluster()
        if self.state.exit_request is not None:
            request = self.state.exit_request
            pytest.exit(request.reason, request.returncode)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    def open_cluster(self) -> ClusterHandle:
        settings = self.settings
        if settings.connection_file or settings.profile:
            return attach(
                connection_file=settings.connection_file,
                profile=settings.profile,
                cluster_id=settings.cluster_id,
                wait_seconds=settings.wait_seconds,
            )
        return start_embedded(settings.engines, settings.wait_seconds)

    def close_cluster(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            handle.close()

    def write_line(self, text: str) -> None:
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None and self.config.get_verbosity() >= 0:
            terminal.write_line(text)

    def run(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        assert self.handle is not None
        client = self.handle.client
        replayer = Replayer(self.config)
        self.discover_engines(client)
        if not self.state.engines:
            raise pytest.UsageError(
                f"pytest-gold: the cluster ({self.handle.description}) has no engines. "
                "Start engines (e.g. 'ipengine --profile=NAME' or 'ipcluster engines') "
                "and run again."
            )
        self.announce()
        spec = RunSpec(
            run_id=self.run_id,
            invocation_dir=str(self.config.invocation_params.dir),
            rootdir=str(self.config.rootpath),
            args=[str(arg) for arg in self.config.invocation_params.args],
            collect_paths=list(dict.fromkeys(str(item.path) for item in items)),
            engine_count=len(self.state.engines),
        )
        wire_spec = to_wire(spec)
        queue = DispatchQueue(
            [item.nodeid for item in items],
            engine_count=len(self.state.engines),
            target_batch_seconds=self.settings.batch_seconds,
        )
        state = self.state
        try:
            while queue or state.inflight:
                self.dispatch(client, queue, wire_spec)
                done, _ = concurrent.futures.wait(
                    list(state.inflight),
                    timeout=POLL_SECONDS,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
                for future in done:
                    self.collect(future, queue, replayer, client)
                if state.stop_reason is None:
                    self.check_stop(session, queue, client)
                self.discover_engines(client)
        finally:
            self.finish(client, replayer)

    def discover_engines(self, client: Any) -> None:
        new = [eid for eid in client.ids if eid not in self.state.engines]
        if not new:
            return
        results = {
            eid: client[eid].apply_async(engine_module.remote_engine_info, eid) for eid in new
        }
        engines = []
        for eid, result in results.items():
            info = engine_from_wire(result.get(timeout=self.settings.wait_seconds))
            self.state.engines[eid] = info
            self.state.idle.append(eid)
            engines.append(info)
        self.config.hook.pytest_gold_cluster_ready(
            config=self.config, client=client, engines=engines
        )

    def announce(self) -> None:
        assert self.handle is not None
        hosts: dict[str, int] = {}
        for info in self.state.engines.values():
            hosts[info.host] = hosts.get(info.host, 0) + 1
        on_hosts = ", ".join(f"{host}: {count}" for host, count in sorted(hosts.items()))
        started = f", started in {self.handle.started_seconds:.1f} s" if self.handle.owned else ""
        count = len(self.state.engines)
        self.write_line(
            f"gold: {self.handle.description}{started}: {count} engine{'s' if count != 1 else ''}"
            f" on {len(hosts)} host{'s' if len(hosts) != 1 else ''} ({on_hosts})"
        )

    def dispatch(self, client: Any, queue: DispatchQueue, wire_spec: dict[str, Any]) -> None:
        state = self.state
        while state.idle and queue and state.stop_reason is None:
            eid = state.idle.pop(0)
            batch = queue.next_batch()
            assert batch is not None
            future = client[eid].apply_async(
                engine_module.remote_run_batch, wire_spec, to_wire(batch)
            )
            state.inflight[future] = (eid, batch)
            state.used_engines.add(eid)
            engine = state.engines[eid]
            for nodeid in batch.nodeids:
                self.config.hook.pytest_gold_case_scheduled(
                    config=self.config, nodeid=nodeid, engine=engine
                )

    def collect(self, future: Any, queue: DispatchQueue, replayer: Replayer, client: Any) -> None:
        state = self.state
        eid, _batch = state.inflight.pop(future)
        result = result_from_wire(future.get())
        state.idle.append(eid)
        outcome = replayer.replay(result)
        queue.record(outcome.finished.values())
        if outcome.not_run:
            state.not_run.extend(outcome.not_run)
        if outcome.exit_request is not None and state.exit_request is None:
            state.exit_request = outcome.exit_request
            self.stop(f"pytest.exit() in {outcome.exit_request.nodeid}", queue, client)

    def check_stop(self, session: pytest.Session, queue: DispatchQueue, client: Any) -> None:
        reason = session.shouldfail or session.shouldstop
        if reason:
            self.stop(str(reason), queue, client)

    def stop(self, reason: str, queue: DispatchQueue, client: Any) -> None:
        """No new case starts; the running ones are interrupted."""
        state = self.state
        state.stop_reason = reason
        state.not_run.extend(queue.drain())
        busy = sorted({eid for eid, _ in state.inflight.values()})
        if busy:
            client.send_signal("SIGINT", targets=busy, block=False)

    def finish(self, client: Any, replayer: Replayer) -> None:
        """End the workers: last teardowns (reported), then their pytest sessions."""
        used = sorted(self.state.used_engines)
        if not used:
            return
        result = client[used].apply_async(engine_module.remote_finish_run, self.run_id)
        try:
            outcomes = result.get(timeout=FINISH_TIMEOUT_SECONDS)
        except Exception as error:  # the run's results stand; say what was not torn down
            self.write_line(f"gold: the end-of-run teardown on the engines failed: {error}")
            return
        for data in outcomes:
            replayer.replay(result_from_wire(data))
