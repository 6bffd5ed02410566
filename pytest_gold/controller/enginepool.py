"""The controller's engine checks, and what is said about the cluster's engines.

:class:`EngineChecks` sends the engine check to engines that registered and reads the
answers; whether an engine joins the run is :class:`pytest_gold.policy.run.Run`'s to say.
The functions below word the lines and errors about the cluster's engines.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from typing import Any

import pytest

import pytest_gold.controller.tasks as tasks
from pytest_gold import __version__
from pytest_gold.launch.attaching import more_engines_than_defined, start_more_engines
from pytest_gold.launch.slurmjobs import queue_note
from pytest_gold.policy.enginecheck import Expected, advice, describe, mismatches
from pytest_gold.protocol.identity import ControllerId
from pytest_gold.protocol.messages import EngineInfo, engine_from_wire

#: How often the run's first wait for engines says what it waits for, and looks at the
#: jobs and the deadline (it reacts to an answer or a registration at once).
WAIT_POLL_SECONDS = 0.2
#: How often a line saying how many engines registered is printed while waiting.
WAIT_LINE_SECONDS = 5.0
#: Once enough engines passed the first check, how long the run waits for the others'
#: answers before it starts (an engine busy with another run's case joins later).
CHECK_SETTLE_SECONDS = 5.0
#: How often unanswered engine checks are looked at meanwhile.
CHECK_POLL_SECONDS = 0.02

#: An engine left out: what it said (``None``: nothing) and what differs.
FailedCheck = tuple[EngineInfo | None, list[str]]


def expected_of(config: pytest.Config) -> Expected:
    """What an engine must match to take part in this run."""
    return Expected(
        python=platform.python_version(),
        pytest=pytest.__version__,
        pytest_gold=__version__,
        rootdir=str(config.rootpath),
        invocation_dir=str(config.invocation_params.dir),
    )


def busy_elsewhere(client: Any, eid: int) -> bool:
    """Whether the engine has other tasks than our check queued or running (another run's
    batch): then its check is not overdue, only waiting its turn."""
    try:
        status = client.queue_status(targets=eid)
        return status.get("queue", 0) > 1 or status.get("tasks", 0) > 0
    except Exception:  # no such query (an old hub) or no answer: not known to be busy
        return False


class EngineChecks:
    """Engine checks in flight, by engine id, with when they were (last) sent."""

    def __init__(
        self,
        client: Any,
        expected: Expected,
        run_id: str,
        controller_id: ControllerId,
        wait_seconds: float,
    ) -> None:
        self.client = client
        self.expected = expected
        self.run_id = run_id
        self.controller_id = controller_id
        self.wait_seconds = wait_seconds
        self.pending: dict[int, tuple[Any, float]] = {}

    def send(self, eid: int, now: float) -> None:
        request = tasks.send_check(self.client, eid, self.expected, self.run_id, self.controller_id)
        self.pending[eid] = (request, now)

    def settled_at(self) -> float:
        """When the first wait stops waiting for the answers still out."""
        return min(sent for _, sent in self.pending.values()) + CHECK_SETTLE_SECONDS

    def answers(
        self, now: float
    ) -> tuple[list[int], list[tuple[int, EngineInfo | None, list[str]]]]:
        """Engines whose overdue checks wait behind another run's task (sent again as of
        ``now``), and the checks answered or overdue: (engine, what it said, problems)."""
        requeued: list[int] = []
        answered: list[tuple[int, EngineInfo | None, list[str]]] = []
        for eid, (result, sent) in list(self.pending.items()):
            overdue = now - sent > self.wait_seconds
            if overdue and not result.ready() and busy_elsewhere(self.client, eid):
                self.pending[eid] = (result, now)  # its turn comes: wait again
                requeued.append(eid)
            elif result.ready() or overdue:
                del self.pending[eid]
                answered.append((eid, *self.read(result)))
        return requeued, answered

    def wait_for_news(self, registered: int, timeout: float) -> None:
        """Until a check in flight is answered, the number of registered engines is no
        longer ``registered``, or ``timeout`` s passed: the first wait for engines then
        starts the run as soon as the answers are in, not at its next look (which on a
        running cluster was most of the time to the first case)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(result.ready() for result, _ in self.pending.values()):
                return
            if len(self.client.ids) != registered:
                return
            time.sleep(CHECK_POLL_SECONDS)

    def read(self, result: Any) -> tuple[EngineInfo | None, list[str]]:
        try:  # an answer not there by now (after --gold-wait s) counts as a failure
            info: EngineInfo = engine_from_wire(result.get(timeout=0))
        except Exception as error:  # e.g. pytest-gold is not importable there
            return None, [
                f"could not run pytest-gold there ({type(error).__name__}: "
                f"{getattr(error, 'evalue', None) or error}); is pytest-gold installed in "
                "the engines' Python?"
            ]
        return info, mismatches(self.expected, info)


def defined_engines(handle: Any) -> int | None:
    """How many engines the cluster can have at most: what this run started, or what
    the profile of the cluster it attached to defines (``None``: unknown)."""
    return handle.expected_engines or handle.profile_engines


def more_than_defined(handle: Any, profile: str | None, need: int, defined: int) -> str:
    return more_engines_than_defined(need, defined, profile, handle.profile_hosts)


def waiting_line(registered: int, defined: int | None, usable: int, need: int, left: float) -> str:
    of = f" of {defined}" if defined else ""
    return (
        f"gold: waiting for engines: {registered}{of} registered, {usable} "
        f"usable, {need} needed (--gold-min-engines); "
        f"{left:.0f} s left (--gold-wait)"
    )


def too_few_engines(
    handle: Any,
    settings: Any,
    usable: int,
    registered: int,
    failed: Mapping[int, FailedCheck],
) -> str:
    need = settings.min_engines
    text = (
        f"pytest-gold: waited {settings.wait_seconds:g} s (--gold-wait) for "
        f"{need} usable engine{'s' if need != 1 else ''} (--gold-min-engines) of the "
        f"cluster ({handle.description}); {registered} registered"
    )
    if failed:
        problems = [p for _, found in failed.values() for p in found]
        text += (
            f", {len(failed)} failed the engine check: "
            + " | ".join(describe(dict(failed)))
            + f". To fix: {advice(problems)}."
        )
    elif handle.slurm_jobs:  # more engines would wait in the same queue
        text += "."
    else:
        more = start_more_engines(settings.profile, handle.profile_hosts, need - registered)
        text += (
            f". Start more engines (e.g. {more}), check the cluster's logs for engines "
            "that fail to start, or lower --gold-min-engines / raise --gold-wait."
        )
    return text + queue_note(handle.slurm_jobs)


def announce_lines(handle: Any, engines: Mapping[int, EngineInfo]) -> list[str]:
    """What the run says once its engines are there, and the cluster's warnings
    (problems: shown with -q too)."""
    hosts: dict[str, int] = {}
    for info in engines.values():
        hosts[info.host] = hosts.get(info.host, 0) + 1
    on_hosts = ", ".join(f"{host}: {count}" for host, count in sorted(hosts.items()))
    started = f", started in {handle.started_seconds:.1f} s" if handle.owned else ""
    count = len(engines)
    described = f"{count} engine{'s' if count != 1 else ''}"
    expected = handle.expected_engines
    if expected and count < expected:
        described += f" of {expected} registered (the others join as they start)"
    return [
        f"gold: {handle.description}{started}: {described}"
        f" on {len(hosts)} host{'s' if len(hosts) != 1 else ''} ({on_hosts})"
        + fewer_than_defined(handle, hosts)
    ]


def fewer_than_defined(handle: Any, hosts: dict[str, int]) -> str:
    """For a cluster this run attached to: how far it is from what its profile defines
    (e.g. a host lost in an earlier run), by host where the profile names them."""
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
