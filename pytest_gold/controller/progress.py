"""How far a run is: counts, ETA, per-host tallies, and their text and JSON forms.

The run loop feeds a :class:`Progress`; everything here is pure except
:func:`write_status_file`, which replaces the status file atomically so a reader in
another terminal never sees half of it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pytest_gold.policy.eta import EngineTime, estimate_eta

#: Finished cases needed before an ETA is shown (fewer make a wild guess).
MIN_CASES_FOR_ETA = 5
#: Seconds between rewrites of --gold-status-file.
STATUS_FILE_SECONDS = 2.0
#: Outcomes counted as failures in the status and the per-host summary.
FAILED_OUTCOMES = frozenset({"failed", "error"})


@dataclass
class HostTally:
    engines: int = 0
    cases: int = 0
    failures: int = 0
    busy_seconds: float = 0.0
    #: Of ``engines``, how many were lost during the run.
    lost: int = 0


@dataclass
class Presence:
    """One engine in the run: its host, when it joined and left (lost), and the seconds
    it spent running the run's tasks (as ipyparallel timed them on the engine)."""

    host: str
    joined: float
    left: float | None = None
    occupied_seconds: float = 0.0


@dataclass
class Snapshot:
    total: int
    done: int
    passed: int
    failed: int
    running: int
    engines_busy: int
    engines_available: int
    elapsed_seconds: float
    eta_seconds: float | None
    hosts: dict[str, HostTally] = field(default_factory=dict)
    #: The run's Slurm jobs (``jobs: 1 running, 2 queued``), when it has any.
    jobs: str = ""


@dataclass
class Progress:
    total: int
    #: Injectable so that tests need no real time.
    clock: Callable[[], float] = time.monotonic
    #: When the run's cases started running (set again by :meth:`start`).
    started: float = field(init=False)
    #: When the run's cases stopped running (before the cluster is closed), once they did.
    ended: float | None = None
    done: int = 0
    passed: int = 0
    failed: int = 0
    hosts: dict[str, HostTally] = field(default_factory=dict)
    engine_time: EngineTime = field(default_factory=EngineTime)
    #: Each engine's time in the run, by engine id (for the ``occupied`` figure).
    presence: dict[int, Presence] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.engine_time.clock = self.clock
        self.started = self.clock()

    def start(self) -> None:
        """The first case is about to be sent: elapsed time and engine use count from here."""
        self.started = self.clock()
        self.ended = None

    def stop(self) -> None:
        """The cases stopped running: what follows (closing the cluster) is not the run's."""
        if self.ended is None:
            self.ended = self.clock()

    @property
    def wall_seconds(self) -> float:
        return (self.ended if self.ended is not None else self.clock()) - self.started

    def add_engine(self, host: str, engine_id: int | None = None) -> None:
        self.hosts.setdefault(host, HostTally()).engines += 1
        if engine_id is not None:
            self.presence[engine_id] = Presence(host, self.clock())

    def lose_engine(self, host: str, engine_id: int | None = None) -> None:
        self.hosts.setdefault(host, HostTally()).lost += 1
        if engine_id is not None:
            self.engine_left(engine_id)

    def engine_left(self, engine_id: int) -> None:
        """The engine is out of the run (lost, released, its job ended)."""
        presence = self.presence.get(engine_id)
        if presence is not None and presence.left is None:
            presence.left = self.clock()

    def task_ran(self, engine_id: int, seconds: float) -> None:
        """The engine spent ``seconds`` running one of the run's batches."""
        presence = self.presence.get(engine_id)
        if presence is not None:
            presence.occupied_seconds += max(seconds, 0.0)

    def occupied(self) -> dict[str, float]:
        """Per host: the share of its engines' time in the run (from when each joined, or
        the first case sent, to when it was lost or the cases stopped running) that they
        spent running batches; the rest they waited, for the controller or for work."""
        end = self.ended if self.ended is not None else self.clock()
        occupied: dict[str, float] = {}
        present: dict[str, float] = {}
        for presence in self.presence.values():
            left = min(presence.left if presence.left is not None else end, end)
            seconds = max(left - max(presence.joined, self.started), 0.0)
            present[presence.host] = present.get(presence.host, 0.0) + seconds
            occupied[presence.host] = occupied.get(presence.host, 0.0) + presence.occupied_seconds
        return {host: min(occupied[host] / present[host], 1.0) for host in present if present[host]}

    def finished(self, host: str, outcome: str, seconds: float) -> None:
        tally = self.hosts.setdefault(host, HostTally())
        tally.cases += 1
        tally.busy_seconds += seconds
        self.done += 1
        if outcome in FAILED_OUTCOMES:
            tally.failures += 1
            self.failed += 1
        else:
            self.passed += 1

    def snapshot(
        self,
        *,
        running: int,
        engines_busy: int,
        engines_available: int,
        queued_seconds: Sequence[float | None],
        running_left: Sequence[float | None] = (),
        queued_tasks: int | None = None,
    ) -> Snapshot:
        """The state of the run; the ETA from ``queued_seconds`` (the expected duration of
        each case not sent yet, going out in ``queued_tasks`` tasks) and ``running_left``
        (what each running batch still needs), with the overhead learned so far (see
        :func:`pytest_gold.policy.eta.estimate_eta`)."""
        eta = None
        if self.done >= MIN_CASES_FOR_ETA:
            eta = estimate_eta(
                queued_seconds,
                running_left,
                engines_available,
                self.engine_time.overhead,
                queued_tasks,
            )
        return Snapshot(
            total=self.total,
            done=self.done,
            passed=self.passed,
            failed=self.failed,
            running=running,
            engines_busy=engines_busy,
            engines_available=engines_available,
            elapsed_seconds=self.wall_seconds,
            eta_seconds=eta,
            hosts={host: HostTally(**asdict(t)) for host, t in self.hosts.items()},
        )


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def format_status(snapshot: Snapshot) -> str:
    eta = format_duration(snapshot.eta_seconds) if snapshot.eta_seconds is not None else "?"
    return (
        f"gold: {snapshot.done}/{snapshot.total} cases done ({snapshot.passed} passed, "
        f"{snapshot.failed} failed), {snapshot.running} running, engines "
        f"{snapshot.engines_busy}/{snapshot.engines_available} busy, elapsed "
        f"{format_duration(snapshot.elapsed_seconds)}, ETA {eta}"
        + (f", {snapshot.jobs}" if snapshot.jobs else "")
    )


def format_status_short(snapshot: Snapshot, width: int) -> str:
    """The status in at most ``width`` characters (a terminal's status line): the full
    form if it fits, else shorter ones that keep the counts, failures and the ETA (and the
    run's Slurm jobs while they fit)."""
    eta = format_duration(snapshot.eta_seconds) if snapshot.eta_seconds is not None else "?"
    done = f"{snapshot.done}/{snapshot.total}"
    jobs = f", {snapshot.jobs}" if snapshot.jobs else ""
    forms = [
        format_status(snapshot),
        f"gold: {done} done, {snapshot.passed} passed, {snapshot.failed} failed, "
        f"{snapshot.running} running, engines {snapshot.engines_busy}/"
        f"{snapshot.engines_available}, ETA {eta}{jobs}",
        f"gold: {done} done, {snapshot.failed} failed, ETA {eta}{jobs}",
        f"gold: {done} done, {snapshot.failed} failed, ETA {eta}",
    ]
    for form in forms:
        if len(form) <= width:
            return form
    return forms[-1][:width]


def format_host_table(
    hosts: dict[str, HostTally], wall_seconds: float, occupied: Mapping[str, float] | None = None
) -> list[str]:
    """Lines of the end-of-run per-host summary (a ``lost`` column when engines were).
    ``occupied``: per host, the share of its engines' time they spent running batches
    (see :meth:`Progress.occupied`; ``-`` for hosts it does not name)."""
    any_lost = any(tally.lost for tally in hosts.values())
    header = (
        f"{'host':<16} {'engines':>7} {'cases':>7} {'failed':>6} {'busy':>10} {'use':>5} "
        f"{'occupied':>8}"
    )
    lines = [header + (f" {'lost':>6}" if any_lost else "")]
    for host in sorted(hosts):
        tally = hosts[host]
        capacity = tally.engines * wall_seconds
        use = f"{100 * tally.busy_seconds / capacity:.0f}%" if capacity > 0 else "-"
        share = (occupied or {}).get(host)
        held = f"{100 * share:.0f}%" if share is not None else "-"
        line = (
            f"{host:<16} {tally.engines:>7} {tally.cases:>7} {tally.failures:>6} "
            f"{format_duration(tally.busy_seconds):>10} {use:>5} {held:>8}"
        )
        if any_lost:
            line += f" {tally.lost or '':>6}"
        lines.append(line.rstrip())
    return lines


def write_status_file(path: Path, snapshot: Snapshot, state: str) -> None:
    data = asdict(snapshot)
    if not data["jobs"]:  # only a run on Slurm jobs it started has them
        del data["jobs"]
    data["state"] = state
    data["updated"] = time.time()
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)
