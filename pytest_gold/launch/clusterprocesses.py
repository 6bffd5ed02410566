"""The local processes of a cluster this run started: its launchers' pids and process
groups, its engines' pids and their children (nannies), found through ipyparallel's
launchers and Linux ``/proc``. Closing a cluster kills with them what ipyparallel's stop
left behind; a kept cluster records its engines' pids.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from pytest_gold.launch.enginefork import ForkingEngineSetLauncher

#: How long nannies get to follow their stopped engines before they are killed.
NANNY_EXIT_SECONDS = 2.0


def local_pid(launcher: Any) -> int | None:
    """The pid of a launcher's process on this machine; None for remote ones (an SSH
    launcher's pid is on another host, a batch launcher's is a job)."""
    from ipyparallel.cluster.launcher import LocalProcessLauncher, SSHLauncher

    if isinstance(launcher, LocalProcessLauncher) and not isinstance(launcher, SSHLauncher):
        pid = getattr(launcher, "pid", None)
        return pid if isinstance(pid, int) and pid > 0 else None
    return None


def engine_launchers(engine_set: Any) -> list[Any]:
    """The launchers of an engine set's processes: one per engine, or the set itself when
    one process starts them all (the forking launcher, an MPI one)."""
    launchers = getattr(engine_set, "launchers", None)
    return list(launchers.values()) if launchers is not None else [engine_set]


def engine_pids(cluster: Any) -> list[int]:
    """The pids of the engine processes of a cluster this run started (local launchers):
    a forking launcher's engines are its zygote's children (Linux /proc)."""
    pids: list[int] = []
    for engine_set in cluster.engines.values():
        if isinstance(engine_set, ForkingEngineSetLauncher):
            zygote = local_pid(engine_set)
            pids.extend(child_pids(zygote) if zygote is not None else [])
            continue
        pids.extend(pid for pid in map(local_pid, engine_launchers(engine_set)) if pid)
    return pids


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except (OSError, ValueError):
        return []


def nanny_pids(cluster: Any) -> list[int]:
    """The engines' child processes (nannies, workers): in sessions of their own, nannies
    do not always follow their engine out (Linux /proc; none found elsewhere)."""
    nannies: list[int] = []
    for engine_set in cluster.engines.values():
        for launcher in engine_launchers(engine_set):
            pid = local_pid(launcher)
            if pid is not None:
                nannies.extend(child_pids(pid))
    return nannies


def kill_lingering(pids: list[int], grace_seconds: float = NANNY_EXIT_SECONDS) -> None:
    deadline = time.monotonic() + grace_seconds
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if exists(pid)]
        if alive:
            time.sleep(0.1)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def exists(pid: int) -> bool:
    """Running (an exited process that nobody collected yet, a zombie, does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def launcher_process_groups(cluster: Any) -> list[int]:
    """The process groups of the controller and engine launchers of a cluster."""
    launchers = [cluster.controller]
    for engine_set in cluster.engines.values():
        launchers.extend(engine_launchers(engine_set))
    groups = []
    for launcher in launchers:
        pid = local_pid(launcher)
        if pid is None:
            continue
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            continue
        if group == pid:  # its own group (start_new_session), never ours
            groups.append(group)
    return groups
