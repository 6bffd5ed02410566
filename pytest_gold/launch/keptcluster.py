"""The kept embedded cluster: ``--gold-keep-cluster`` without a profile.

A run with ``--gold-keep-cluster`` starts the embedded cluster in a private directory of
its project (:func:`kept_dir`) and leaves it running with an idle watch
(:mod:`pytest_gold.launch.idlewatch`). The next ``pytest --gold`` of the same project (rootdir)
attaches to it, when it fits (:func:`misfit`): the same engine count if
``--gold-engines`` is given, at least ``--gold-min-engines``, and the same Python,
libraries, pytest-gold code and environment as this run (the engines' environment is the
workers'). A kept cluster that does not answer is cleaned up and the run starts afresh.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import ipyparallel as ipp

import pytest_gold.launch.cluster as cluster_module
import pytest_gold.launch.clusterprocesses as clusterprocesses
from pytest_gold.launch.attaching import permission_warnings
from pytest_gold.launch.cluster import EMBEDDED_IP, ClusterError, ClusterHandle
from pytest_gold.launch.idlewatch import (
    KeptPaths,
    KeptState,
    LockTimeout,
    ProcessRef,
    locked,
    stop_kept,
)
from pytest_gold.settings import GoldSettings

#: How long a kept cluster gets to answer and show its engines before it counts as
#: stale: it is on loopback and idle, so it answers in well under a second.
KEPT_ANSWER_SECONDS = 2.0
#: How often the registered engines are looked at while waiting for them.
ENGINE_POLL_SECONDS = 0.05
#: Variables a shell changes between two commands: not a difference that matters.
VOLATILE_ENV = frozenset({"_", "OLDPWD", "PWD", "SHLVL", "PYTEST_CURRENT_TEST"})
#: Longest readable part of a kept directory's name (the project's directory name).
NAME_CHARS = 40
#: Hex digits of the rootdir's hash in a kept directory's name.
KEY_DIGITS = 16
STOP_HINT = "python -m pytest_gold cluster stop"


def base_dir(environ: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """Where kept clusters live: ``$XDG_RUNTIME_DIR/pytest-gold`` (per user, 0700 by
    definition, in memory, emptied at logout), else ``~/.cache/pytest-gold/kept``. Never
    in the project: not committed, copied or shared with the tree, nor removed by
    ``--cache-clear`` while its processes run."""
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "pytest-gold"
    cache = environ.get("XDG_CACHE_HOME", "") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "pytest-gold" / "kept"


def kept_dir(rootdir: Path, base: Path | None = None) -> Path:
    """The kept cluster's directory of the project at ``rootdir``."""
    real = os.path.realpath(rootdir)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(real))[:NAME_CHARS] or "root"
    key = hashlib.sha256(real.encode()).hexdigest()[:KEY_DIGITS]
    return (base or base_dir()) / f"{name}-{key}"


def ensure_private(directory: Path) -> None:
    """Make ``directory`` (and missing parents) 0700 and check that only this user can
    use it: it holds the connection files, which let whoever reads them run code."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise ClusterError(
            f"--gold-keep-cluster: {directory} belongs to another user (uid {info.st_uid}); "
            "the kept cluster's connection files must be private. Set XDG_RUNTIME_DIR or "
            "XDG_CACHE_HOME to a directory of your own."
        )
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        directory.chmod(0o700)


def _digest(parts: list[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode(errors="surrogateescape") + b"\0")
    return digest.hexdigest()[:KEY_DIGITS]


def fingerprint(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str]:
    """What the kept engines must share with this run for its workers to behave as in a
    fresh cluster, by what a difference is called: Python and the libraries, pytest-gold's
    code, the environment. Hashed: the state file never holds the environment (it may
    hold secrets)."""
    libraries = [sys.executable, sys.version]
    for package in ("pytest", "ipyparallel", "pyzmq", "pytest-gold"):
        try:
            libraries.append(f"{package}={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            libraries.append(f"{package}=none")
    code = []
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        try:
            code.append(f"{path}:{path.stat().st_mtime_ns}")
        except OSError:
            continue
    environment = sorted(f"{k}={v}" for k, v in environ.items() if k not in VOLATILE_ENV)
    return {
        "Python or its libraries": _digest(libraries),
        "pytest-gold's code": _digest(code),
        "environment variables": _digest(environment),
    }


def misfit(
    state: KeptState, settings: GoldSettings, this_fingerprint: dict[str, str]
) -> str | None:
    """Why this run cannot use the kept cluster (None: it can)."""
    plural = "s" if state.engines != 1 else ""
    if settings.engines_given and state.engines != settings.engines:
        return f"has {state.engines} engine{plural}, --gold-engines asks for {settings.engines}"
    if state.engines < settings.min_engines:
        return (
            f"has {state.engines} engine{plural}, --gold-min-engines asks for "
            f"{settings.min_engines}"
        )
    differ = [
        what for what, digest in this_fingerprint.items() if state.fingerprint.get(what) != digest
    ]
    if differ:
        return f"was started with other {' and '.join(differ)} than this run's"
    return None


def dead_reason(state: KeptState) -> str | None:
    """Why the kept cluster cannot be working (None: it may be)."""
    if not state.controller.alive:
        return f"lost its controller (pid {state.controller.pid})"
    gone = [ref.pid for ref in state.engine_processes if not ref.alive]
    if gone:
        return f"lost engine processes (pids {', '.join(map(str, gone))})"
    if not Path(state.connection_file).is_file():
        return f"has no connection file ({state.connection_file})"
    return None


@dataclass
class KeptInfo:
    """What a run says at its end about the kept cluster it used."""

    paths: KeptPaths
    idle_seconds: float

    def closing_line(self) -> str:
        return (
            f"the embedded cluster stays running (kept in {self.paths.root}); the next "
            f"'pytest --gold' of this project attaches to it. It stops after "
            f"{self.idle_seconds / 60:g} min without a run (--gold-idle-stop), or with: "
            f"{STOP_HINT}"
        )


def open_kept(
    settings: GoldSettings, rootdir: Path, note: Callable[[str], None]
) -> ClusterHandle | None:
    """The project's kept cluster: attached to, or started (``--gold-keep-cluster``);
    None when this run starts an embedded cluster of its own, as without one."""
    paths = KeptPaths(kept_dir(rootdir))
    if not settings.keep_cluster and not paths.state.is_file():
        return None
    ensure_private(paths.root.parent)
    try:
        with locked(paths, timeout=settings.wait_seconds):
            return _open_locked(paths, settings, rootdir, note)
    except LockTimeout:
        raise ClusterError(
            f"pytest-gold: another run kept the lock of this project's kept cluster "
            f"({paths.lock}) for over {settings.wait_seconds:g} s (--gold-wait). If no other "
            f"run is starting it, stop it with '{STOP_HINT}'."
        ) from None


def _open_locked(
    paths: KeptPaths, settings: GoldSettings, rootdir: Path, note: Callable[[str], None]
) -> ClusterHandle | None:
    state = paths.read_state()
    mine = fingerprint()
    if state is not None:
        reason = dead_reason(state)
        unfit = None if reason else misfit(state, settings, mine)
        if reason is None and unfit is None:
            try:
                return _attach(paths, state, settings)
            except KeptStale as stale:
                reason = str(stale)
        if reason is not None:
            stopped = stop_kept(paths, state)
            what = f" (stopped what was left: {', '.join(stopped)})" if stopped else ""
            then = "starting a new one" if settings.keep_cluster else "starting one for this run"
            note(f"the kept cluster of this project {reason}{what}; {then}.")
        elif settings.keep_cluster and not paths.live_runs():
            stop_kept(paths, state)
            note(f"the kept cluster of this project {unfit}: stopped it; starting a new one.")
        else:
            # Never stopped under a run that uses it; nor replaced by a run without the flag.
            why_not = (
                f"other runs use it (pids {', '.join(map(str, paths.live_runs()))}), so "
                if settings.keep_cluster
                else ""
            )
            hint = "" if settings.keep_cluster else " (--gold-keep-cluster would replace it)"
            note(
                f"the kept cluster of this project {unfit}: {why_not}this run starts an "
                f"embedded cluster of its own{hint}."
            )
            return None
    elif paths.root.exists():  # a half-written or foreign leftover: nothing runs from it
        shutil.rmtree(paths.root, ignore_errors=True)
    if not settings.keep_cluster:
        return None
    return _start(paths, settings, rootdir, mine)


class KeptStale(Exception):
    """The kept cluster does not answer as it should; the message says how."""


def _attach(paths: KeptPaths, state: KeptState, settings: GoldSettings) -> ClusterHandle:
    started = time.monotonic()
    try:
        client = ipp.Client(state.connection_file, timeout=KEPT_ANSWER_SECONDS)
    except Exception as error:  # whatever ipyparallel raises: the cluster is not usable
        raise KeptStale(
            f"did not answer within {KEPT_ANSWER_SECONDS:g} s ({type(error).__name__})"
        ) from None
    deadline = time.monotonic() + KEPT_ANSWER_SECONDS
    while len(client.ids) < state.engines:
        if time.monotonic() > deadline:
            count = len(client.ids)
            client.close(linger=0)
            raise KeptStale(f"has only {count} of its {state.engines} engines registered")
        time.sleep(ENGINE_POLL_SECONDS)
    if settings.keep_cluster and state.idle_seconds != settings.idle_stop_seconds:
        state.idle_seconds = settings.idle_stop_seconds
        paths.write_state(state)
    lease = paths.add_run(ProcessRef.of(os.getpid()))
    paths.touch()
    up = (time.time() - state.started) / 60
    took = time.monotonic() - started
    handle = ClusterHandle(
        client=client,
        description=f"attached to the kept embedded cluster on {EMBEDDED_IP} in {took:.2f} s "
        f"(up {up:.0f} min)",
        expected_engines=state.engines,
        warnings=permission_warnings(Path(state.connection_file)),
    )
    handle.started_seconds = took
    handle.kept = KeptInfo(paths, state.idle_seconds)
    handle.on_close.append(lambda: _release(paths, lease))
    return handle


def _start(
    paths: KeptPaths, settings: GoldSettings, rootdir: Path, this_fingerprint: dict[str, str]
) -> ClusterHandle:
    paths.root.mkdir(mode=0o700)
    try:
        handle = cluster_module.start_embedded(
            settings.engines,
            settings.wait_seconds,
            profile_dir=str(paths.profile),
            keep=True,
            fork=settings.fork_engines,
        )
    except BaseException:
        shutil.rmtree(paths.root, ignore_errors=True)
        raise
    try:
        cluster = handle.cluster
        engines = clusterprocesses.engine_pids(cluster)
        connection_file = str(handle.connection_file)
        state = KeptState(
            rootdir=os.path.realpath(rootdir),
            engines=settings.engines,
            controller=ProcessRef.of(cluster.controller.pid),
            engine_processes=[ProcessRef.of(pid) for pid in engines],
            process_groups=list(handle.process_groups),
            connection_file=connection_file,
            fingerprint=this_fingerprint,
            idle_seconds=settings.idle_stop_seconds,
            started=time.time(),
        )
        # Written before the watch starts: a watch that finds no state exits at once.
        paths.write_state(state)
        paths.touch()
        lease = paths.add_run(ProcessRef.of(os.getpid()))
        state.watch = ProcessRef.of(_start_watch(paths))
        paths.write_state(state)
    except BaseException:
        handle.keep = False
        handle.close(at_once=True)
        stop_kept(paths, paths.read_state())
        raise
    handle.warnings.extend(permission_warnings(Path(connection_file)))
    handle.description = f"embedded cluster on {EMBEDDED_IP}, kept for the next runs"
    handle.kept = KeptInfo(paths, state.idle_seconds)
    handle.on_close.append(lambda: _release(paths, lease))
    return handle


def _start_watch(paths: KeptPaths) -> int:
    """The idle watch, in a session of its own (it outlives this run and its Ctrl-C);
    spawned without a Popen object, which would warn at exit that it still runs."""
    log = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return os.posix_spawn(
            sys.executable,
            [sys.executable, "-m", "pytest_gold.launch.idlewatch", str(paths.root)],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log)


def _release(paths: KeptPaths, lease: Path) -> None:
    """This run no longer uses the kept cluster: its idle time counts from now."""
    try:
        lease.unlink(missing_ok=True)
        if paths.state.is_file():
            paths.touch()
    except OSError:  # stopped meanwhile ('cluster stop'): nothing to mark
        pass
