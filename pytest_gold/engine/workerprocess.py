"""A worker process as the engine's supervisor sees it: start, talk, diagnose, stop.

:meth:`WorkerProcess.messages` is the one place the supervisor listens to a worker; it
answers the worker's requests that need no decision (the capture-file handshake) itself.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest_gold.engine.leftovers as leftovers
from pytest_gold.engine.workerdeath import DeathCause, describe_death, excerpt
from pytest_gold.protocol.control import (
    PROTOCOL_VERSION,
    STACK_DUMP_SIGNAL,
    CaptureFd,
    CaptureFdTaken,
    Channel,
    Exited,
    Finish,
    Message,
    Ready,
    RunBatch,
    Stale,
    StartRun,
    WrongProtocol,
)
from pytest_gold.protocol.messages import Batch, EngineInfo, RunSpec
from pytest_gold.protocol.timing import SUPERVISOR_POLL_SECONDS, WORKER_FINISH_SECONDS

#: The module a worker is started as (``python -m``): the engine never imports it.
WORKER_MODULE = "pytest_gold.worker"
#: Lines of a dead worker's stderr quoted in the failure report.
STDERR_TAIL_LINES = 40

#: What ipykernel puts in every engine's environment for notebook display (colour
#: forced on, no pager). A worker writes to files, not a notebook: colour codes would end up
#: in tracebacks and JUnit XML, so these are taken out again.
KERNEL_DISPLAY_ENV = {
    "TERM": "xterm-color",
    "CLICOLOR": "1",
    "FORCE_COLOR": "1",
    "CLICOLOR_FORCE": "1",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
}


#: Pids of the worker processes of this engine that are not closed yet: never taken for
#: processes left behind by cases (see :mod:`pytest_gold.engine.leftovers`).
_live_pids: set[int] = set()


def live_pids() -> set[int]:
    return set(_live_pids)


class WorkerStartFailed(RuntimeError):
    pass


class WorkerStale(WorkerStartFailed):
    """A worker started ahead of its run found code it had imported changed since."""


def launch_settings(spec: RunSpec) -> tuple[str, dict[str, str]]:
    """The working directory and environment of a worker of this run."""
    env = {key: value for key, value in os.environ.items() if KERNEL_DISPLAY_ENV.get(key) != value}
    for key, value in spec.default_env.items():
        env.setdefault(key, value)
    env.update(spec.env)
    # The rootdir importable whatever the engine's own cwd, as the controller sees it.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (spec.rootdir, env.get("PYTHONPATH", "")) if p)
    env["PYTHONFAULTHANDLER"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return spec.invocation_dir, env


def launch_key(cwd: str, env: dict[str, str], engine: EngineInfo) -> tuple[Any, ...]:
    """What a worker started for one run must share with another run to serve it: the
    same directory (the same one, not one made again under the same name), environment
    (both from :func:`launch_settings`) and engine."""
    try:
        where = os.stat(cwd)
        directory = (cwd, where.st_dev, where.st_ino)
    except OSError:
        directory = (cwd, None, None)
    return (directory, tuple(sorted(env.items())), engine.tag)


class WorkerProcess:
    """One worker process and the socket to it."""

    def __init__(self, spec: RunSpec, engine: EngineInfo, *, standby: bool = False) -> None:
        """Start a worker for ``spec``'s run; a ``standby`` waits for :meth:`activate` (it
        imports pytest meanwhile) and may serve any run with the same :func:`launch_key`."""
        self.spec = spec
        self.engine = engine
        cwd, env = launch_settings(spec)
        self.launch_key = launch_key(cwd, env, engine)
        #: In the environment of the worker and of everything its cases start.
        self.token = uuid.uuid4().hex
        env = {**env, leftovers.WORKER_TOKEN_ENV: self.token}
        ours, theirs = socket.socketpair()
        self.log = tempfile.NamedTemporaryFile(
            prefix=f"pytest-gold-worker-e{engine.engine_id}-", suffix=".log", delete=False
        )
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                WORKER_MODULE,
                str(theirs.fileno()),
                engine.tag,
                str(time.time_ns()),
                str(os.getpid()),
            ],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            pass_fds=(theirs.fileno(),),
            # Its own process group: signals from the engine's terminal do not reach it and
            # killing the group also ends whatever a case started.
            start_new_session=True,
        )
        theirs.close()
        _live_pids.add(self._process.pid)
        #: "PID COMMAND" of each process left behind by its cases that was ended.
        self.ended_leftovers: list[str] = []
        #: Its process group was killed (SIGKILL, on its way to every member).
        self.group_killed = False
        #: pytest's capture files of the worker, by stream, once the first case started.
        self._capture: dict[str, Any] = {}
        #: Where the worker's own output stood when its current case started.
        self.case_log_offset = 0
        self.exit_deadline = 0.0
        self.stream_offset = 0
        self._channel = Channel(Connection(ours.detach()))
        if not standby:
            self.activate(spec)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    # -- talking to it -------------------------------------------------------------------

    def activate(self, spec: RunSpec) -> None:
        """Give the worker its run (it starts its pytest session); OSError if it died."""
        self.spec = spec
        self._channel.send(StartRun(spec=spec, protocol=PROTOCOL_VERSION))

    def send_batch(self, batch: Batch) -> None:
        """Have it run ``batch``; OSError if it died since its last batch."""
        self._channel.send(RunBatch(batch=batch))

    def finish(self) -> None:
        """Ask for the end-of-run teardown, without waiting for it (:meth:`messages`
        then says so if it died meanwhile)."""
        try:
            self._channel.send(Finish())
        except OSError:  # it died meanwhile: nothing to tear down
            pass

    def receive(self, timeout: float) -> Message | None:
        """The next message, ``None`` if none came in time (or it was the capture-file
        handshake, answered here); raises EOFError when the worker died."""
        try:
            if not self._channel.poll(timeout):
                if not self.alive and not self._channel.poll(0):
                    raise EOFError
                return None
            message = self._channel.recv()
            if isinstance(message, CaptureFd):
                self._take_capture_files(message)
                return None
        except (ConnectionError, BrokenPipeError):  # it died with something of ours unread
            raise EOFError from None
        return message

    def messages(
        self, *, deadline: float = math.inf, pump: Callable[[], bool] | None = None
    ) -> Iterator[Message | None]:
        """Every message of the worker until ``deadline`` (``time.monotonic()``), and
        ``None`` each time :data:`SUPERVISOR_POLL_SECONDS` passed without one, so that the
        caller can look at its clocks. ``pump``, called before each wait, says whether it
        has more to do at once (then the wait is skipped). Raises EOFError when the worker
        died."""
        while time.monotonic() < deadline:
            more = pump is not None and pump()
            yield self.receive(0 if more else SUPERVISOR_POLL_SECONDS)

    def _take_capture_files(self, message: CaptureFd) -> None:
        """Open pytest's capture files of the worker (once), then let it go on: it waits,
        so that a case that crashes at once cannot take the files along unopened."""
        if not self._capture:
            self._capture = {
                "stdout": open_worker_fd(self.pid, message.stdout),
                "stderr": open_worker_fd(self.pid, message.stderr),
            }
        self._channel.send(CaptureFdTaken())

    def wait_ready(self) -> None:
        """Until its session is collected; WorkerStartFailed if it cannot serve the run."""
        try:
            for message in self.messages(deadline=time.monotonic() + WORKER_FINISH_SECONDS):
                if isinstance(message, Ready):
                    return
                if isinstance(message, Stale):
                    self._process.wait()
                    raise WorkerStale("code imported by the worker changed before its run began")
                if isinstance(message, WrongProtocol):
                    self._process.wait()
                    raise WorkerStartFailed(
                        f"its worker speaks pytest-gold protocol version {message.protocol} "
                        f"where the engine speaks version {PROTOCOL_VERSION}: pytest-gold "
                        "changed on this host since the engine started; restart its engines"
                    )
                if isinstance(message, Exited):
                    self._process.wait()
                    raise WorkerStartFailed(
                        f"the worker's pytest session ended before it was ready (exit status "
                        f"{message.status}); what it wrote:\n{self.output_tail()}"
                    )
        except EOFError:
            raise WorkerStartFailed(str(self.death_cause())) from None
        self.kill()
        raise WorkerStartFailed(f"the worker did not start within {WORKER_FINISH_SECONDS:.0f} s")

    # -- what it wrote, and how it ended ---------------------------------------------------

    def output_tail(self) -> str:
        return excerpt(self.log.name, 0, STDERR_TAIL_LINES) or "(nothing)"

    def read_output(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` the worker wrote since the last call (lines or not: the
        controller puts lines together)."""
        self.log.flush()
        try:
            with open(self.log.name, "rb") as log:
                log.seek(self.stream_offset)
                data = log.read(max_bytes)
        except OSError:
            return b""
        self.stream_offset += len(data)
        return data

    def death_cause(
        self, max_lines: int = STDERR_TAIL_LINES, *, streamed: bool = False
    ) -> DeathCause:
        """What ended the worker and what it wrote; ``streamed``: its output went to the
        controller's terminal as live output (``-s``), so it is pointed to, not quoted."""
        return describe_death(
            self._process.wait(),
            self._capture,
            self.log.name,
            self.case_log_offset,
            max_lines,
            streamed_as=self.engine.tag if streamed else None,
        )

    # -- stopping it -----------------------------------------------------------------------

    def interrupt(self) -> None:
        """SIGINT to the worker's process group, as Ctrl-C would (programs a case
        started get it too)."""
        if self.alive:
            try:
                os.killpg(self.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def dump_stacks(self) -> None:
        """Have the worker print the stack of every thread to its own output."""
        try:
            os.kill(self.pid, STACK_DUMP_SIGNAL)
        except ProcessLookupError:
            pass

    def end_leftovers(self, *, outside_group: bool = False) -> list[str]:
        """End the processes its cases left running (unless the run keeps them); returns
        those ended now (they are also added to :attr:`ended_leftovers`). ``outside_group``:
        only those that left its process group (which is about to be killed)."""
        if not self.spec.end_leftovers:
            return []
        found = leftovers.find_leftovers(
            self.pid, self.token, _live_pids, outside_group=outside_group
        )
        ended = leftovers.end_processes(found)
        self.ended_leftovers.extend(ended)
        return ended

    def kill(self) -> None:
        """SIGKILL to the worker's process group (and what its cases left running)."""
        if self.alive:
            # What is in its process group (a program the running case waits for) goes
            # with it, as a stopped case's work; what left the group was left behind.
            self.end_leftovers(outside_group=True)
            self.group_killed = True
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._process.wait()

    def close(self) -> None:
        if self.pid in _live_pids:
            self.kill()
            # What a worker that died on its own left (its process group lives on too).
            self.end_leftovers(outside_group=self.group_killed)
            _live_pids.discard(self.pid)
            leftovers.reap_adopted(_live_pids)
        self._channel.close()
        self.log.close()
        for file in self._capture.values():
            if file is not None:
                file.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def open_worker_fd(pid: int, fd: int) -> Any:
    """Open what descriptor ``fd`` of the worker refers to (pytest's capture file).

    pytest captures into an unlinked temporary file; after a crash it is the only place
    holding what the case wrote. Linux's /proc lets us reopen it while the worker lives.
    """
    try:
        return open(f"/proc/{pid}/fd/{fd}", "rb")
    except OSError:
        return None
