"""A worker process as the engine's supervisor sees it: start, talk, diagnose, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

from .messages import EngineInfo, RunSpec, to_wire
from .worker import EXITED, FINISH, READY, STALE, Channel

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
        if self.channel.connection.poll(timeout):
            return self.channel.recv()
        if self.process.poll() is not None and not self.channel.connection.poll(0):
            raise EOFError
        return None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WORKER_FINISH_SECONDS
        while time.monotonic() < deadline:
            try:
                message = self.receive(POLL_SECONDS)
            except EOFError:
                raise WorkerStartFailed(self.death_cause()) from None
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
        return tail_of(self.log.name, 0, STDERR_TAIL_LINES) or "(nothing)"

    def new_output(self) -> str:
        """Complete lines the worker wrote since the last call."""
        self.log.flush()
        try:
            with open(self.log.name, "rb") as log:
                log.seek(self.stream_offset)
                data = log.read()
        except OSError:
            return ""
        end = data.rfind(b"\n") + 1
        self.stream_offset += end
        return data[:end].decode("utf-8", errors="replace")

    def death_cause(self, tail_lines: int = STDERR_TAIL_LINES) -> str:
        code = self.process.wait()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            what = f"the worker process was killed by {name}"
        else:
            what = f"the worker process exited with code {code}"
        parts = [what]
        for stream, file in (self.capture or {}).items():
            captured = tail_of(file, 0, tail_lines)
            if captured:
                parts.append(f"what the case wrote to {stream} (captured):\n{captured}")
        logged = tail_of(self.log.name, self.case_log_offset, tail_lines)
        parts.append(f"the worker's own output (fatal errors land here):\n{logged or '(nothing)'}")
        return "; ".join(parts[:1]) + "\n" + "\n".join(parts[1:])

    def interrupt(self) -> None:
        """SIGINT to the worker's process group, as Ctrl-C would (programs a case
        started get it too)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()

    def close(self) -> None:
        self.kill()
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


def tail_of(source: Any, offset: int, tail_lines: int) -> str:
    """The last lines of a file (path or open binary file) from ``offset`` on."""
    if source is None:
        return ""
    try:
        if isinstance(source, str):
            with open(source, "rb") as file:
                file.seek(offset)
                data = file.read()
        else:
            source.seek(offset)
            data = source.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-tail_lines:]).strip()
