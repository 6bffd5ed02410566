"""The controller's engines: wait for them, check them, take in those that join later.

A mixin of :class:`pytest_gold.controller.session.GoldController`.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from typing import Any

import pytest

from pytest_gold import __version__
from pytest_gold.engine import remote as engine_module
from pytest_gold.engine.engineruns import ControllerId
from pytest_gold.launch.attaching import more_engines_than_defined, start_more_engines
from pytest_gold.launch.slurmjobs import queue_note, submitted_line
from pytest_gold.policy.enginecheck import Expected, advice, describe, mismatches
from pytest_gold.protocol.messages import EngineInfo, engine_from_wire

#: How often the registered engines are counted while the run waits for them.
WAIT_POLL_SECONDS = 0.2
#: How often a line saying how many engines registered is printed while waiting.
WAIT_LINE_SECONDS = 5.0
#: Once enough engines passed the first check, how long the run waits for the others'
#: answers before it starts (an engine busy with another run's case joins later).
CHECK_SETTLE_SECONDS = 5.0
#: How often unanswered engine checks are looked at meanwhile.
CHECK_POLL_SECONDS = 0.02


def busy_elsewhere(client: Any, eid: int) -> bool:
    """Whether the engine has other tasks than our check queued or running (another run's
    batch): then its check is not overdue, only waiting its turn."""
    try:
        status = client.queue_status(targets=eid)
        return status.get("queue", 0) > 1 or status.get("tasks", 0) > 0
    except Exception:  # no such query (an old hub) or no answer: not known to be busy
        return False


class EnginePool:
    """Needs ``config``, ``settings``, ``state``, ``handle``, ``progress``, ``write_line``."""

    config: pytest.Config
    settings: Any
    state: Any
    handle: Any
    progress: Any
    #: Which run asks (each run gets its own interruption signal on every engine).
    run_id: str = ""
    controller_id: ControllerId = ControllerId()

    def write_line(self, text: str, *, problem: bool = False) -> None:
        raise NotImplementedError

    def expected(self) -> Expected:
        return Expected(
            python=platform.python_version(),
            pytest=pytest.__version__,
            pytest_gold=__version__,
            rootdir=str(self.config.rootpath),
            invocation_dir=str(self.config.invocation_params.dir),
        )

    def wait_for_engines(self, client: Any) -> None:
        """Until --gold-min-engines engines registered and passed the check, or fail."""
        need = self.settings.min_engines
        deadline = time.monotonic() + self.settings.wait_seconds
        last_line = time.monotonic()
        last_count = -1
        defined = self.defined_engines()
        if defined is not None and need > defined and len(client.ids) < need:
            raise pytest.UsageError(self.more_than_defined(need, defined))
        if self.handle.slurm_jobs:
            self.write_line(submitted_line(self.handle.slurm_jobs, kept=self.handle.keep))
        while True:
            self.discover_engines(client, initial=True)
            usable = len(self.state.engines)
            if usable >= need:
                break
            registered = len(client.ids)
            now = time.monotonic()
            if now >= deadline:
                raise pytest.UsageError(self.too_few_engines(usable, registered))
            if registered != last_count or now - last_line >= WAIT_LINE_SECONDS:
                of = f" of {defined}" if defined else ""
                self.write_line(
                    f"gold: waiting for engines: {registered}{of} registered, {usable} "
                    f"usable, {need} needed (--gold-min-engines); "
                    f"{deadline - now:.0f} s left (--gold-wait)"
                )
                last_count, last_line = registered, now
            time.sleep(WAIT_POLL_SECONDS)
        if self.state.failed_check:
            for line in describe(self.state.failed_check):
                self.write_line(
                    f"gold: left out of the run, engine check failed: {line}", problem=True
                )

    def defined_engines(self) -> int | None:
        """How many engines the cluster can have at most: what this run started, or what
        the profile of the cluster it attached to defines (``None``: unknown)."""
        handle = self.handle
        return handle.expected_engines or handle.profile_engines

    def more_than_defined(self, need: int, defined: int) -> str:
        return more_engines_than_defined(
            need, defined, self.settings.profile, self.handle.profile_hosts
        )

    def too_few_engines(self, usable: int, registered: int) -> str:
        need = self.settings.min_engines
        failed = self.state.failed_check
        text = (
            f"pytest-gold: waited {self.settings.wait_seconds:g} s (--gold-wait) for "
            f"{need} usable engine{'s' if need != 1 else ''} (--gold-min-engines) of the "
            f"cluster ({self.handle.description}); {registered} registered"
        )
        if failed:
            problems = [p for _, found in failed.values() for p in found]
            text += (
                f", {len(failed)} failed the engine check: "
                + " | ".join(describe(failed))
                + f". To fix: {advice(problems)}."
            )
        elif self.handle.slurm_jobs:  # more engines would wait in the same queue
            text += "."
        else:
            more = start_more_engines(
                self.settings.profile, self.handle.profile_hosts, need - registered
            )
            text += (
                f". Start more engines (e.g. {more}), check the cluster's logs for engines "
                "that fail to start, or lower --gold-min-engines / raise --gold-wait."
            )
        return text + queue_note(self.handle.slurm_jobs)

    def discover_engines(self, client: Any, initial: bool = False) -> None:
        """Check engines that registered since last time; take in those that pass.

        The first time (``initial``) this waits for the answers: nothing runs before; but
        once --gold-min-engines engines passed, for at most :data:`CHECK_SETTLE_SECONDS`
        more: an engine busy with another run's case answers when that case ends, and
        joins then. Later it only looks at the answers that came in, so that engines still
        starting (each imports pytest for its check) never hold up the cases already
        running.
        """
        state = self.state
        checks = state.engine_checks
        known = (
            state.engines.keys() | state.lost_engines | state.failed_check.keys() | checks.keys()
        )
        new = [eid for eid in client.ids if eid not in known]
        if not (new or checks):
            return
        expected = self.expected()
        for eid in new:
            request = client[eid].apply_async(
                engine_module.remote_engine_info,
                eid,
                expected.rootdir,
                expected.invocation_dir,
                self.run_id,
                dataclasses.asdict(self.controller_id),
            )
            checks[eid] = (request, time.monotonic())
        settled = min(sent for _, sent in checks.values()) + CHECK_SETTLE_SECONDS
        engines: list[EngineInfo] = []
        while True:
            answered = {}
            for eid, (result, sent) in list(checks.items()):
                overdue = time.monotonic() - sent > self.settings.wait_seconds
                if overdue and not result.ready() and busy_elsewhere(client, eid):
                    checks[eid] = (result, time.monotonic())  # its turn comes: wait again
                elif result.ready() or overdue:
                    answered[eid] = result
                    del checks[eid]
            engines += [
                info
                for eid, result in answered.items()
                if (info := self.take_in(eid, result, expected, initial)) is not None
            ]
            if not (initial and checks):
                break
            enough = len(state.engines) >= self.settings.min_engines
            if not enough or time.monotonic() > settled:
                break  # wait_for_engines goes on waiting (and says so), or the run starts
            time.sleep(CHECK_POLL_SECONDS)
        if engines:
            self.config.hook.pytest_gold_cluster_ready(
                config=self.config, client=client, engines=engines
            )

    def take_in(
        self, eid: int, result: Any, expected: Expected, initial: bool
    ) -> EngineInfo | None:
        """The engine, if its check passed; else it is left out (and said so, later on)."""
        state = self.state
        try:  # an answer not there by now (after --gold-wait s) counts as a failure
            info: EngineInfo | None = engine_from_wire(result.get(timeout=0))
        except Exception as error:  # e.g. pytest-gold is not importable there
            info, problems = (
                None,
                [
                    f"could not run pytest-gold there ({type(error).__name__}: "
                    f"{getattr(error, 'evalue', None) or error}); is pytest-gold installed in "
                    "the engines' Python?"
                ],
            )
        else:
            problems = mismatches(expected, info)
        if problems:
            state.failed_check[eid] = (info, problems)
            if not initial:
                line = describe({eid: (info, problems)})[0]
                self.write_line(f"gold: engine check failed, left out: {line}", problem=True)
            return None
        assert info is not None
        state.engines[eid] = info
        state.idle.append(eid)
        if self.progress is not None:
            self.progress.add_engine(info.host)
        return info

    def announce(self) -> None:
        hosts: dict[str, int] = {}
        for info in self.state.engines.values():
            hosts[info.host] = hosts.get(info.host, 0) + 1
        on_hosts = ", ".join(f"{host}: {count}" for host, count in sorted(hosts.items()))
        started = f", started in {self.handle.started_seconds:.1f} s" if self.handle.owned else ""
        count = len(self.state.engines)
        engines = f"{count} engine{'s' if count != 1 else ''}"
        expected = self.handle.expected_engines
        if expected and count < expected:
            engines += f" of {expected} registered (the others join as they start)"
        self.write_line(
            f"gold: {self.handle.description}{started}: {engines}"
            f" on {len(hosts)} host{'s' if len(hosts) != 1 else ''} ({on_hosts})"
            + self.fewer_than_defined(hosts)
        )
        for warning in self.handle.warnings:
            self.write_line(f"gold: warning: {warning}", problem=True)

    def fewer_than_defined(self, hosts: dict[str, int]) -> str:
        """For a cluster this run attached to: how far it is from what its profile defines
        (e.g. a host lost in an earlier run), by host where the profile names them."""
        handle = self.handle
        defined = handle.profile_engines
        count = sum(hosts.values())
        if handle.owned or defined is None or count >= defined:
            return ""
        short = [
            f"{host}: {hosts.get(host, 0)} of {n}"
            for host, n in handle.profile_hosts.items()
            if hosts.get(host, 0) < n
        ]
        return f"; the profile defines {defined}" + (f" ({', '.join(short)})" if short else "")
