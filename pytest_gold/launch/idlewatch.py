"""The kept embedded cluster's files, its stop, and the idle watch that stops it.

``pytest --gold --gold-keep-cluster`` leaves an embedded cluster running in a private
directory of its project (:mod:`pytest_gold.launch.keptcluster` chooses it):

* ``kept.json``: what was started (pids with their start times, process groups, the
  connection file, the idle time); never a key, never the environment;
* ``profile/``: the cluster's ipyparallel profile (``security/`` holds the 0600
  connection files);
* ``last-used``: its modification time is when a run last used the cluster;
* ``runs/PID-START``: one file per run using it now, so a run longer than the idle time
  is never cut short (a file whose process is gone does not count);
* ``idlewatch.log``: what the idle watch had to say.

The idle watch (``python -m pytest_gold.launch.idlewatch DIR``, started with the cluster in a
session of its own) stops the cluster, and itself, once no run has used it for the idle
time, or as soon as its controller is gone. It needs the standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pytest_gold.launch.watchdog import kill_process_groups
from pytest_gold.protocol.identity import process_start

STATE_FILE = "kept.json"
LAST_USED_FILE = "last-used"
RUNS_DIR = "runs"
PROFILE_DIR = "profile"
WATCH_LOG = "idlewatch.log"
#: Longest and shortest pause between two looks of the idle watch: a 15-minute idle time
#: is checked every few seconds, a tiny one (tests) often enough to be met closely.
WATCH_MAX_INTERVAL_SECONDS = 5.0
WATCH_MIN_INTERVAL_SECONDS = 0.1
#: Checks per idle time (the stop comes at most idle/this late).
WATCH_CHECKS_PER_IDLE = 20
#: How often a process waiting for the lock looks again.
LOCK_POLL_SECONDS = 0.05
#: How long processes of a stopped cluster get to be gone after SIGKILL.
GONE_SECONDS = 5.0


class LockTimeout(Exception):
    """Another process held the kept cluster's lock for too long."""


@dataclass(frozen=True)
class ProcessRef:
    """A process as it can be checked later: its pid and start time (pids are reused)."""

    pid: int
    started: int | None

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        return cls(pid, process_start(pid))

    @property
    def alive(self) -> bool:
        if self.started is not None:
            return process_start(self.pid) == self.started and not _zombie(self.pid)
        try:  # no /proc (not Linux): whether some process has the pid
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _zombie(pid: int) -> bool:
    """Exited, only not collected yet by its parent (e.g. a run that started the cluster)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


@dataclass
class KeptState:
    rootdir: str
    engines: int
    controller: ProcessRef
    engine_processes: list[ProcessRef]
    process_groups: list[int]
    connection_file: str
    #: Python, library versions, pytest-gold's code and the environment, each hashed.
    fingerprint: dict[str, str]
    idle_seconds: float
    started: float
    watch: ProcessRef | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> KeptState:
        data = json.loads(text)
        data["controller"] = ProcessRef(**data["controller"])
        data["engine_processes"] = [ProcessRef(**ref) for ref in data["engine_processes"]]
        data["watch"] = ProcessRef(**data["watch"]) if data.get("watch") else None
        if not isinstance(data.get("fingerprint"), dict):  # written by another version
            data["fingerprint"] = {}
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


@dataclass(frozen=True)
class KeptPaths:
    """The files of one project's kept cluster; ``root`` is private to its user (0700)."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def last_used(self) -> Path:
        return self.root / LAST_USED_FILE

    @property
    def runs(self) -> Path:
        return self.root / RUNS_DIR

    @property
    def profile(self) -> Path:
        return self.root / PROFILE_DIR

    @property
    def log(self) -> Path:
        return self.root / WATCH_LOG

    @property
    def lock(self) -> Path:
        # Next to the directory, not in it: a stop removes the directory under the lock.
        return self.root.with_name(self.root.name + ".lock")

    def read_state(self) -> KeptState | None:
        """What was kept; None when nothing is (or the file is not one of ours)."""
        try:
            return KeptState.from_json(self.state.read_text())
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def write_state(self, state: KeptState) -> None:
        temporary = self.state.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(state.to_json())
        os.replace(temporary, self.state)

    def touch(self) -> None:
        """Mark the cluster used now (the idle time counts from here)."""
        self.last_used.touch(mode=0o600)
        os.utime(self.last_used)

    def idle_since(self) -> float:
        try:
            return self.last_used.stat().st_mtime
        except OSError:
            return 0.0

    def add_run(self, process: ProcessRef) -> Path:
        self.runs.mkdir(mode=0o700, exist_ok=True)
        lease = self.runs / f"{process.pid}-{process.started}"
        lease.touch(mode=0o600)
        return lease

    def live_runs(self) -> list[int]:
        """Pids of the runs using the cluster now (files of runs that are gone go)."""
        live = []
        try:
            leases = list(self.runs.iterdir())
        except OSError:
            return []
        for lease in leases:
            pid, _, started = lease.name.partition("-")
            try:
                ref = ProcessRef(int(pid), int(started) if started != "None" else None)
            except ValueError:
                continue
            if ref.alive:
                live.append(ref.pid)
            else:
                lease.unlink(missing_ok=True)
        return live


@contextlib.contextmanager
def locked(paths: KeptPaths, timeout: float) -> Iterator[None]:
    """Hold the project's kept-cluster lock (one start, stop or attach at a time);
    raise :class:`LockTimeout` rather than wait longer than ``timeout``."""
    descriptor = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(str(paths.lock)) from None
                time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def stop_kept(paths: KeptPaths, state: KeptState | None) -> list[str]:
    """Stop everything of the kept cluster (call with the lock held) and remove its
    directory; returns what was running, one description each. Its processes are killed:
    between runs nothing in them needs a graceful end (the workers die with their
    engine)."""
    stopped: list[str] = []
    if state is not None:
        if state.controller.alive:
            stopped.append(f"controller (pid {state.controller.pid})")
        engines = [ref.pid for ref in state.engine_processes if ref.alive]
        if engines:
            stopped.append(
                f"{len(engines)} engine{'s' if len(engines) != 1 else ''} (pids "
                f"{', '.join(map(str, engines))})"
            )
        kill_process_groups(state.process_groups)
        refs = [state.controller, *state.engine_processes]
        for ref in refs:
            if ref.alive:  # outside its recorded group (should not happen): by pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(ref.pid, signal.SIGKILL)
        deadline = time.monotonic() + GONE_SECONDS
        while any(ref.alive for ref in refs) and time.monotonic() < deadline:
            time.sleep(LOCK_POLL_SECONDS)
        watch = state.watch
        if watch is not None and watch.pid != os.getpid() and watch.alive:
            stopped.append(f"idle watch (pid {watch.pid})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(watch.pid, signal.SIGTERM)
    shutil.rmtree(paths.root, ignore_errors=True)
    return stopped


def watch_interval(idle_seconds: float) -> float:
    return min(
        WATCH_MAX_INTERVAL_SECONDS,
        max(WATCH_MIN_INTERVAL_SECONDS, idle_seconds / WATCH_CHECKS_PER_IDLE),
    )


def stop_reason(paths: KeptPaths, state: KeptState, now: float) -> str | None:
    """Why the watch should stop the cluster now, if it should (call with the lock)."""
    if not state.controller.alive:
        return f"its controller (pid {state.controller.pid}) is gone"
    if paths.live_runs():
        return None
    idle = now - paths.idle_since()
    if idle >= state.idle_seconds:
        return f"no run used it for {idle / 60:.1f} min (idle stop {state.idle_seconds / 60:g} min)"
    return None


def watch(paths: KeptPaths) -> int:
    me = ProcessRef.of(os.getpid())
    while True:
        state = paths.read_state()
        if state is None or (state.watch is not None and state.watch != me):
            return 0  # stopped meanwhile (cluster stop), or replaced by a new cluster
        time.sleep(watch_interval(state.idle_seconds))
        try:
            with locked(paths, timeout=watch_interval(state.idle_seconds)):
                state = paths.read_state()
                if state is None or (state.watch is not None and state.watch != me):
                    return 0
                reason = stop_reason(paths, state, time.time())
                if reason is not None:
                    stopped = stop_kept(paths, state)
                    print(
                        f"pytest-gold idle watch: stopped {', '.join(stopped) or 'nothing'}: "
                        f"{reason}",
                        file=sys.stderr,
                    )
                    return 0
        except LockTimeout:  # a run is starting or attaching: look again later
            continue
        except FileNotFoundError:  # the directory went (stopped by hand)
            return 0


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return watch(KeptPaths(Path(sys.argv[1])))


if __name__ == "__main__":
    sys.exit(main())
