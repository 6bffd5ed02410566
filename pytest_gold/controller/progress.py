"""How far a run is: counts, ETA, per-host tallies, and their text and JSON forms.

The run loop feeds a :class:`Progress`; everything here is pure except
:func:`write_status_file`, which replaces the status file atomically so a reader in
another terminal never sees half of it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
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

    def add_engine(self, host: str) -> None:
        self.hosts.setdefault(host, HostTally()).engines += 1

    def lose_engine(self, host: str) -> None:
        self.hosts.setdefault(host, HostTally()).lost += 1

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


def format_host_table(hosts: dict[str, HostTally], wall_seconds: float) -> list[str]:
    """Lines of the end-of-run per-host summary (a ``lost`` column when engines were)."""
    any_lost = any(tally.lost for tally in hosts.values())
    header = f"{'host':<16} {'engines':>7} {'cases':>7} {'failed':>6} {'busy':>10} {'use':>5}"
    lines = [header + (f" {'lost':>6}" if any_lost else "")]
    for host in sorted(hosts):
        tally = hosts[host]
        capacity = tally.engines * wall_seconds
        use = f"{100 * tally.busy_seconds / capacity:.0f}%" if capacity > 0 else "-"
        line = (
            f"{host:<16} {tally.engines:>7} {tally.cases:>7} {tally.failures:>6} "
            f"{format_duration(tally.busy_seconds):>10} {use:>5}"
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
