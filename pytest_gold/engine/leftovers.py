"""Processes that cases leave running, found and ended on the engine (Linux).

A case that starts ``sleep 1000`` (or a server, with or without
``start_new_session=True``) and returns leaves it running. A worker knows its own:

* **descendants**: processes below the worker in the process tree;
* **orphans**: a process whose parent exits is handed to the nearest *child subreaper*
  among its ancestors. The engine makes itself one (``PR_SET_CHILD_SUBREAPER``), so a
  worker's orphans stay below the engine (instead of going to init) and the engine reaps
  them when they exit. An orphan belongs to the worker whose token is in its environment
  (:data:`WORKER_TOKEN_ENV`, inherited by everything a case starts), or whose session it
  is in (workers lead a session of their own).

An orphan that both cleared its environment and started a session of its own cannot be
told apart from a process the engine started itself, and is left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import time
from dataclasses import dataclass

#: In every worker's environment, inherited by what its cases start: whose they are.
WORKER_TOKEN_ENV = "PYTEST_GOLD_WORKER"
#: How long leftovers get to exit after SIGTERM before they are killed.
TERM_GRACE_SECONDS = 1.0
#: How often the grace period looks whether they are gone.
TERM_POLL_SECONDS = 0.02
#: prctl option number, from <linux/prctl.h>.
PR_SET_CHILD_SUBREAPER = 36
#: Longest command line quoted when saying which processes were ended.
COMMAND_CHARS = 60

_subreaper = False


@dataclass(frozen=True)
class ProcessEntry:
    pid: int
    ppid: int
    group: int
    session: int
    state: str


def become_subreaper() -> bool:
    """Make this process (the engine) the child subreaper of everything it starts."""
    global _subreaper
    if not _subreaper:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):  # not Linux
            _subreaper = False
    return _subreaper


def read_stat(pid: int) -> ProcessEntry | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read().decode(errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces and parentheses.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return ProcessEntry(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0])
    except (IndexError, ValueError):
        return None


def process_table() -> dict[int, ProcessEntry]:
    """Every process this one can see (empty where there is no /proc)."""
    table = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    for name in names:
        if name.isdigit():
            entry = read_stat(int(name))
            if entry is not None:
                table[entry.pid] = entry
    return table


def token_of(pid: int) -> str | None:
    """The worker token in a process's environment (None: none, or not readable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            environ = file.read()
    except OSError:
        return None
    prefix = WORKER_TOKEN_ENV.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            command = file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    if len(command) > COMMAND_CHARS:
        command = command[: COMMAND_CHARS - 3] + "..."
    return command or "?"


def find_leftovers(
    worker_pid: int, token: str, known: set[int], *, outside_group: bool = False
) -> list[int]:
    """Running processes that the worker (pid, token) started, directly or not; never
    the worker itself, this process, or a known worker (``known``). ``outside_group``:
    only those that left the worker's process group (the group is about to be killed)."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for entry in table.values():
        children.setdefault(entry.ppid, []).append(entry.pid)

    def subtree(root: int) -> set[int]:
        found: set[int] = set()
        stack = list(children.get(root, []))
        while stack:
            pid = stack.pop()
            if pid not in found:
                found.add(pid)
                stack.extend(children.get(pid, []))
        return found

    this = os.getpid()
    skip = {this, worker_pid, *known}
    mine = subtree(worker_pid)  # still below the worker
    # Orphans: below this process when it is a subreaper, else anywhere.
    candidates = subtree(this) if _subreaper else set(table)
    for pid in sorted(candidates - mine - skip):
        entry = table[pid]
        if entry.state != "Z" and (entry.session == worker_pid or token_of(pid) == token):
            mine |= {pid} | subtree(pid)
    return sorted(
        pid
        for pid in mine - skip
        if table[pid].state != "Z" and not (outside_group and table[pid].group == worker_pid)
    )


def end_processes(pids: list[int]) -> list[str]:
    """SIGTERM, then SIGKILL after :data:`TERM_GRACE_SECONDS`; returns ``"PID COMMAND"``
    of each process that was running."""
    ended = []
    for pid in pids:
        command = command_of(pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            continue
        ended.append((pid, command))
    deadline = time.monotonic() + TERM_GRACE_SECONDS
    alive = [pid for pid, _ in ended]
    while alive and time.monotonic() < deadline:
        _reap(alive)
        alive = [pid for pid in alive if _running(pid)]
        if alive:
            time.sleep(TERM_POLL_SECONDS)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _reap([pid for pid, _ in ended])
    return [f"{pid} {command}" for pid, command in ended]


def reap_adopted(known: set[int]) -> None:
    """Collect the exit status of orphans that ended below this process (the engine, a
    subreaper). Never a process this one started itself (same session), nor ``known``
    ones (workers, whose status their ``Popen`` collects)."""
    if not _subreaper:
        return
    this = os.getpid()
    session = os.getsid(0)
    for pid in _children_of(this):
        if pid in known:
            continue
        entry = read_stat(pid)
        if entry is not None and entry.state == "Z" and entry.session != session:
            _reap([pid])


def _children_of(pid: int) -> list[int]:
    """Children of a process: from /proc's per-thread children lists where the kernel
    has them, else from the whole process table."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        for task in tasks:
            with open(f"/proc/{pid}/task/{task}/children") as file:
                found.extend(int(child) for child in file.read().split())
        return found
    except OSError:
        return [entry.pid for entry in process_table().values() if entry.ppid == pid]


def _running(pid: int) -> bool:
    entry = read_stat(pid)
    return entry is not None and entry.state != "Z"


def _reap(pids: list[int]) -> None:
    """Collect the exit status of those that are this process's children."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
