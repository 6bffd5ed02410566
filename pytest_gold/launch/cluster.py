"""Getting a cluster: start a private embedded one, or attach to a running one.

Either way the caller gets a :class:`ClusterHandle` with a connected ipyparallel client;
``close()`` stops the cluster only when this run started it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import ipyparallel as ipp

import pytest_gold.launch.clusterprocesses as clusterprocesses
from pytest_gold.launch.clusterlog import ClusterLog
from pytest_gold.launch.enginefork import ForkingEngineSetLauncher
from pytest_gold.launch.watchdog import DONE, kill_process_groups

#: Heartbeat period of an embedded controller, in ms: short, so engines register fast.
EMBEDDED_HEARTBEAT_MS = 300
#: How long the watchdog of a normally stopped cluster gets to exit.
WATCHDOG_EXIT_SECONDS = 10.0
#: Loopback only: an embedded cluster is never reachable from another machine.
EMBEDDED_IP = "127.0.0.1"


class ClusterError(Exception):
    """The cluster could not be started or reached; the message says what to do."""


@dataclass
class ClusterHandle:
    client: ipp.Client
    description: str
    cluster: Any = None  # the ipp.Cluster this run started, if any
    owned: bool = False
    profile_dir: str | None = None
    started_seconds: float = 0.0
    watchdog: Watchdog | None = None
    process_groups: list[int] = field(default_factory=list)
    #: Engines this run asked for (embedded cluster); more may register after the start.
    expected_engines: int | None = None
    #: A temporary profile dir of this run's own, removed when the cluster stops.
    private_dir: str | None = None
    #: Leave a cluster this run started running at the end (--gold-keep-cluster).
    keep: bool = False
    #: The embedded cluster: once the run's teardowns are done, nothing in it needs a
    #: graceful stop, so its processes are killed at close rather than waited for
    #: (a graceful stop of 16 engines took over 5 s on 2 cores).
    disposable: bool = False
    #: Things the user should know about the cluster (e.g. a readable connection file).
    warnings: list[str] = field(default_factory=list)
    #: The engines the cluster's profile defines (started or attached to), and how many
    #: of them each host runs, by the names runs show.
    profile_engines: int | None = None
    profile_hosts: dict[str, int] = field(default_factory=dict)
    #: Where ipyparallel's messages about a cluster this run started go (not the terminal).
    log: ClusterLog | None = None
    #: The Slurm jobs this run submitted for the cluster's engines (their ids).
    slurm_jobs: list[str] = field(default_factory=list)
    #: What went wrong while stopping the cluster, for the user (one line each).
    stop_notes: list[str] = field(default_factory=list)
    #: Called once the cluster is closed (or left running), e.g. to mark a kept cluster
    #: no longer in use by this run.
    on_close: list[Callable[[], None]] = field(default_factory=list)
    #: The kept embedded cluster this run started or attached to (keptcluster.KeptInfo).
    kept: Any = None
    _closed: bool = field(default=False, repr=False)

    @property
    def connection_file(self) -> Path | None:
        """The client connection file of a cluster this run started."""
        if self.cluster is None or self.profile_dir is None:
            return None
        suffix = f"-{self.cluster.cluster_id}" if self.cluster.cluster_id else ""
        return Path(self.profile_dir, "security", f"ipcontroller{suffix}-client.json")

    def close(self, *, at_once: bool = False) -> None:
        """Disconnect; stop the cluster if this run started it. ``at_once`` (after an
        interruption): kill its processes first rather than wait for busy engines."""
        if self._closed:
            return
        self._closed = True
        try:
            self._close(at_once)
        finally:
            for callback in self.on_close:
                callback()

    def _close(self, at_once: bool) -> None:
        if self.keep:
            self.client.close()
            if self.watchdog is not None:
                self.watchdog.disarm()
            return
        nannies = clusterprocesses.nanny_pids(self.cluster) if self.owned else []
        at_once = at_once or self.disposable
        if at_once and self.owned:
            kill_process_groups(self.process_groups)
        try:
            if self.owned and not at_once and not _stops_engines_at_once(self.cluster):
                # Engines asked over their control channel exit within a second;
                # ipyparallel's own stop signals them one by one and waits up to 5 s each.
                self.client.shutdown(targets="all", block=False)
            # linger=0 after a fault: a dead controller must not make closing hang; else
            # the default, so the shutdown requests above are sent before the sockets go.
            self.client.close(linger=0 if at_once else None)
        finally:
            if self.owned and self.cluster is not None:
                try:
                    self._stop_cluster()
                finally:
                    # What ipyparallel's stop missed, e.g. the schedulers of a controller
                    # that was killed: each launcher started its own process group. Nannies
                    # run in sessions of their own and usually follow their engine out.
                    kill_process_groups(self.process_groups)
                    clusterprocesses.kill_lingering(nannies)
                    if self.private_dir:
                        shutil.rmtree(self.private_dir, ignore_errors=True)
                    if self.watchdog is not None:
                        self.watchdog.disarm()

    def _stop_cluster(self) -> None:
        if self.log is None:
            self.cluster.stop_cluster_sync()
            return
        try:
            with self.log.capturing_stderr():
                self.cluster.stop_cluster_sync()
        finally:
            note = self.log.take_problems("stopping")
            if note:
                self.stop_notes.append(note)
            self.log.close()


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C or SIGTERM inside ipyparallel's synchronous calls takes effect once they
    return. Raised in the middle, the interrupt lands inside an asyncio task that nobody
    awaits any more, and asyncio prints 'Task exception was never retrieved' with a
    traceback at exit; the calls wrapped here take a second or two."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def note(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for pending in dict.fromkeys(received):
        signal.raise_signal(pending)  # now, to the handler it was meant for


def start_embedded(
    engines: int,
    wait_seconds: float,
    *,
    profile_dir: str | None = None,
    keep: bool = False,
    fork: bool = False,
) -> ClusterHandle:
    """Start a private cluster on loopback, ignoring the user's ipython profiles; in a
    temporary profile directory, or (``keep``, see keptcluster.py) in ``profile_dir``,
    left running at the end. ``fork`` (--gold-fork-engines): the engines are forked from
    one zygote (see enginefork.py)."""
    started = time.monotonic()
    profile_dir = profile_dir or tempfile.mkdtemp(prefix="pytest-gold-cluster-")
    cluster = ipp.Cluster(
        n=engines,
        profile_dir=profile_dir,
        load_profile=False,
        controller_ip=EMBEDDED_IP,
        delay=0,
        log_level=logging.WARNING,
        engine_timeout=int(wait_seconds),
        controller_args=[f"--HeartMonitor.period={EMBEDDED_HEARTBEAT_MS}"],
        shutdown_atexit=not keep,
        **({"engine_launcher_class": ForkingEngineSetLauncher} if fork else {}),
    )
    # Engines start together rather than 0.1 s apart.
    cluster.config.LocalEngineSetLauncher.delay = 0
    # No nanny per engine: half the processes to start on a laptop. The engines are
    # local, so the run signals them by pid (see faults.signal_engines).
    engine_args = ["--IPEngine.enable_nanny=False"]
    cluster.config.LocalEngineSetLauncher.engine_args = engine_args
    cluster.config.ForkingEngineSetLauncher.engine_args = engine_args
    handle = ClusterHandle(
        client=None,  # type: ignore[arg-type]  # set below, once connected
        description="",
        cluster=cluster,
        owned=True,
        profile_dir=profile_dir,
        private_dir=profile_dir,
        expected_engines=engines,
        disposable=True,
        keep=keep,
    )
    try:
        with interrupts_deferred():
            cluster.start_cluster_sync()
        handle.process_groups = clusterprocesses.launcher_process_groups(cluster)
        if not keep:  # a kept cluster has its idle watch instead
            handle.watchdog = Watchdog(cluster.cluster_file, profile_dir, handle.process_groups)
        with interrupts_deferred():
            client = cluster.connect_client_sync()
        handle.client = client
        # Dispatch starts with the first engine; the others join as they register.
        client.wait_for_engines(1, timeout=wait_seconds)
    except BaseException as error:
        abort_start(
            handle,
            error,
            f"pytest-gold could not start an embedded cluster of {engines} engines within "
            f"{wait_seconds:.0f} s ({type(error).__name__}: {error}). The cluster's logs were "
            f"in {profile_dir}/log. Try fewer engines with --gold-engines, a longer wait "
            "with --gold-wait, or check that 'python -m ipyparallel.engine' works here.",
        )
    handle.started_seconds = time.monotonic() - started
    handle.description = f"embedded cluster on {EMBEDDED_IP}"
    return handle


class Watchdog:
    """A process that stops the embedded cluster if this pytest process is killed."""

    def __init__(self, cluster_file: str, profile_dir: str, process_groups: list[int]) -> None:
        read_fd, self._write_fd = os.pipe()
        groups = [str(group) for group in process_groups]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_gold.launch.watchdog",
                str(read_fd),
                cluster_file,
                profile_dir,
                *groups,
            ],
            pass_fds=(read_fd,),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the signals that end this process group
        )
        os.close(read_fd)

    def disarm(self) -> None:
        """The cluster was stopped normally: the watchdog exits without doing anything."""
        if self._write_fd < 0:
            return
        try:
            os.write(self._write_fd, DONE)
        finally:
            os.close(self._write_fd)
            self._write_fd = -1
        try:
            self.process.wait(timeout=WATCHDOG_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _stops_engines_at_once(cluster: Any) -> bool:
    """Whether the cluster's engine launchers stop every engine at once themselves (the
    SSH launcher of generated profiles: one command per host). Those must find the
    engines running: they end the nannies with them, which an engine that exited on a
    shutdown request leaves behind on its host."""
    from pytest_gold.launch.sshlauncher import GoldSSHEngineSetLauncher

    engine_sets = getattr(cluster, "engines", {}) or {}
    return any(isinstance(s, GoldSSHEngineSetLauncher) for s in engine_sets.values())


def abort_start(handle: ClusterHandle | None, error: BaseException, message: str) -> NoReturn:
    """A start failed: stop what it started, then raise ``message`` as a ClusterError (an
    interruption is raised as it is)."""
    if handle is not None:
        handle.keep = False
        _stop_quietly(handle)
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        raise error
    raise ClusterError(message) from None


def _stop_quietly(handle: ClusterHandle) -> None:
    try:
        if handle.client is not None:
            handle.close()
        else:
            # The groups before the stop: it forgets the controller, whose schedulers can
            # outlive it (e.g. when the engines' start failed while it was starting).
            groups = clusterprocesses.launcher_process_groups(handle.cluster)
            handle.cluster.stop_cluster_sync()
            kill_process_groups(groups)
            if handle.private_dir:
                shutil.rmtree(handle.private_dir, ignore_errors=True)
            if handle.watchdog is not None:
                handle.watchdog.disarm()
    except Exception:
        logging.getLogger(__name__).debug("stopping a half-started cluster failed", exc_info=True)
