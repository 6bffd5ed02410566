"""A worker process as the engine's supervisor sees it: start, talk, diagnose, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

from pytest_gold.engine import leftovers
from pytest_gold.engine.workerdeath import DeathCause, describe_death, excerpt
from pytest_gold.protocol.messages import EngineInfo, RunSpec, to_wire
from pytest_gold.worker.runner import EXITED, FINISH, READY, STALE, Channel

#: Lines of a dead worker's stderr quoted in the failure report.
STDERR_TAIL_LINES = 40
#: How long a worker gets to finish its teardown when a run ends, or to start up.
WORKER_FINISH_SECONDS = 300.0
#: How often the supervisor looks at its worker while waiting for events.
POLL_SECONDS = 0.5

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
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_gold.worker",
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
        _live_pids.add(self.process.pid)
        #: "PID COMMAND" of each process left behind by its cases that was ended.
        self.ended_leftovers: list[str] = []
        #: Its process group was killed (SIGKILL, on its way to every member).
        self.group_killed = False
        #: pytest's capture files of the worker, by stream, once the first case started.
        self.capture: dict[str, Any] = {}
        self.case_log_offset = 0
        self.exit_deadline = 0.0
        self.stream_offset = 0
        self.channel = Channel(Connection(ours.detach()))
        if not standby:
            self.activate(spec)

    def activate(self, spec: RunSpec) -> None:
        """Give the worker its run (it starts its pytest session)."""
        self.spec = spec
        self.channel.send(to_wire(spec))

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def finish(self) -> None:
        """Ask for the end-of-run teardown, without waiting for it."""
        try:
            self.channel.send({"kind": FINISH})
        except OSError:  # it died meanwhile: nothing to tear down
            pass

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message, ``None`` if none came in time; raises EOFError when it died."""
        try:
            if self.channel.connection.poll(timeout):
                return self.channel.recv()
        except ConnectionError:  # it died with something of ours unread
            raise EOFError from None
        if self.process.poll() is not None and not self.channel.connection.poll(0):
            raise EOFError
        return None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WORKER_FINISH_SECONDS
        while time.monotonic() < deadline:
            try:
                message = self.receive(POLL_SECONDS)
            except EOFError:
                raise WorkerStartFailed(str(self.death_cause())) from None
            if message is not None and message["kind"] == READY:
                return
            if message is not None and message["kind"] == STALE:
                self.process.wait()
                raise WorkerStale("code imported by the worker changed before its run began")
            if message is not None and message["kind"] == EXITED:
                self.process.wait()
                raise WorkerStartFailed(
                    f"the worker's pytest session ended before it was ready (exit status "
                    f"{message.get('status')}); what it wrote:\n{self.output_tail()}"
                )
        self.kill()
        raise WorkerStartFailed(f"the worker did not start within {WORKER_FINISH_SECONDS:.0f} s")

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
            self.process.wait(),
            self.capture or {},
            self.log.name,
            self.case_log_offset,
            max_lines,
            streamed_as=self.engine.tag if streamed else None,
        )

    def interrupt(self) -> None:
        """SIGINT to the worker's process group, as Ctrl-C would (programs a case
        started get it too)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def end_leftovers(self, *, outside_group: bool = False) -> list[str]:
        """End the processes its cases left running (unless the run keeps them); returns
        those ended now (they are also added to :attr:`ended_leftovers`). ``outside_group``:
        only those that left its process group (which is about to be killed)."""
        if not self.spec.end_leftovers:
            return []
        found = leftovers.find_leftovers(
            self.process.pid, self.token, _live_pids, outside_group=outside_group
        )
        ended = leftovers.end_processes(found)
        self.ended_leftovers.extend(ended)
        return ended

    def kill(self) -> None:
        """SIGKILL to the worker's process group (and what its cases left running)."""
        if self.process.poll() is None:
            # What is in its process group (a program the running case waits for) goes
            # with it, as a stopped case's work; what left the group was left behind.
            self.end_leftovers(outside_group=True)
            self.group_killed = True
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()

    def close(self) -> None:
        if self.process.pid in _live_pids:
            self.kill()
            # What a worker that died on its own left (its process group lives on too).
            self.end_leftovers(outside_group=self.group_killed)
            _live_pids.discard(self.process.pid)
            leftovers.reap_adopted(_live_pids)
        self.channel.connection.close()
        self.log.close()
        for file in self.capture.values():
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
