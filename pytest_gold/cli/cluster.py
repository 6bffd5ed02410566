"""``python -m pytest_gold cluster status|stop``: the kept embedded cluster of a project.

The project is the one the current directory is in: the kept cluster whose rootdir is
this directory or its nearest parent (``--rootdir`` names it instead).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any

from pytest_gold.launch.idlewatch import KeptPaths, KeptState, LockTimeout, locked, stop_kept
from pytest_gold.launch.keptcluster import KEPT_ANSWER_SECONDS, base_dir, dead_reason, kept_dir

#: How long ``cluster stop`` waits for a run that is starting or attaching to the cluster.
STOP_LOCK_SECONDS = 120.0


def add_parser(commands: Any) -> None:
    cluster = commands.add_parser(
        "cluster", help="the embedded cluster kept by 'pytest --gold --gold-keep-cluster'"
    )
    actions = cluster.add_subparsers(dest="action", required=True)
    for name, text in (
        ("status", "say whether this project's kept cluster runs, its engines, when it stops"),
        ("stop", "stop this project's kept cluster (controller, engines, idle watch)"),
    ):
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:])
        action.add_argument(
            "--rootdir",
            help="the project's pytest rootdir (default: the kept cluster of the current "
            "directory's project, i.e. of it or its nearest parent)",
        )


def find(rootdir: str | None, cwd: Path) -> tuple[KeptPaths, KeptState | None] | None:
    """The kept cluster of the project at ``rootdir``, or of the one ``cwd`` is in."""
    if rootdir:
        paths = KeptPaths(kept_dir(Path(rootdir)))
        return paths, paths.read_state()
    here = Path(os.path.realpath(cwd))
    best: tuple[int, KeptPaths, KeptState] | None = None
    try:
        candidates = [entry for entry in base_dir().iterdir() if entry.is_dir()]
    except OSError:
        return None
    for directory in candidates:
        paths = KeptPaths(directory)
        state = paths.read_state()
        if state is None:
            continue
        root = Path(state.rootdir)
        if (root == here or root in here.parents) and (best is None or len(root.parts) > best[0]):
            best = (len(root.parts), paths, state)
    return (best[1], best[2]) if best else None


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def status_lines(paths: KeptPaths, state: KeptState, now: float) -> list[str]:
    dead = dead_reason(state)
    lines = [
        f"kept cluster of {state.rootdir}: " + (f"not working, it {dead}" if dead else "running")
    ]
    lines.append(f"  directory: {paths.root}")
    if dead:
        lines.append(
            "  the next 'pytest --gold' of this project cleans it up, or: "
            "python -m pytest_gold cluster stop"
        )
        return lines
    lines.append(f"  controller: pid {state.controller.pid} on 127.0.0.1")
    pids = ", ".join(str(ref.pid) for ref in state.engine_processes)
    lines.append(f"  engines: {state.engines}{registered(state)} (pids {pids})")
    lines.append(f"  up {_minutes(now - state.started)}")
    runs = paths.live_runs()
    if runs:
        lines.append(f"  in use by {len(runs)} run(s) now (pids {', '.join(map(str, runs))})")
        lines.append(
            f"  stops {_minutes(state.idle_seconds)} after the last run ends (--gold-idle-stop)"
        )
    else:
        stop_at = paths.idle_since() + state.idle_seconds
        clock = datetime.datetime.fromtimestamp(stop_at).strftime("%H:%M:%S")
        lines.append(
            f"  last used {_minutes(now - paths.idle_since())} ago; stops at {clock} (in "
            f"{_minutes(max(0.0, stop_at - now))}) without a run (idle stop "
            f"{_minutes(state.idle_seconds)})"
        )
    watch = state.watch
    lines.append(
        f"  idle watch: pid {watch.pid}" if watch and watch.alive else "  idle watch: not running"
    )
    return lines


def registered(state: KeptState) -> str:
    """How many engines the controller has registered, as it says."""
    import ipyparallel as ipp

    try:
        client = ipp.Client(state.connection_file, timeout=KEPT_ANSWER_SECONDS)
    except Exception as error:
        return f" (the controller did not answer: {type(error).__name__})"
    try:
        return f", {len(client.ids)} registered"
    finally:
        client.close(linger=0)


def run(args: argparse.Namespace) -> int:
    found = find(args.rootdir, Path.cwd())
    where = args.rootdir or os.getcwd()
    if found is None or (found[1] is None and not found[0].root.exists()):
        print(f"no kept cluster is running for {where}")
        return 0
    paths, state = found
    if args.action == "status":
        if state is None:
            print(f"no kept cluster is running for {where} (an unfinished one is in {paths.root})")
            return 0
        for line in status_lines(paths, state, time.time()):
            print(line)
        return 0
    try:
        with locked(paths, timeout=STOP_LOCK_SECONDS):
            state = paths.read_state()
            in_use = paths.live_runs()
            stopped = stop_kept(paths, state)
    except LockTimeout:
        print(
            f"python -m pytest_gold cluster stop: a run kept the lock {paths.lock} for over "
            f"{STOP_LOCK_SECONDS:g} s; try again when it has started.",
            file=sys.stderr,
        )
        return 1
    rootdir = state.rootdir if state else where
    if stopped:
        print(f"stopped the kept cluster of {rootdir}: {', '.join(stopped)}")
        if in_use:
            print(f"  runs were using it (pids {', '.join(map(str, in_use))}): they lose it")
    else:
        print(f"the kept cluster of {rootdir} was not running; removed {paths.root}")
    return 0
