"""One engine of a Slurm job, and nothing left behind: what each ``srun`` task runs.

The batch script of a Slurm profile (:mod:`pytest_gold.launch.slurmprofile`) starts every engine
as ``python -m pytest_gold.launch.slurmengine ENGINE_COMMAND...``. This wrapper

- names the node the engine runs on in reports (``PYTEST_GOLD_HOST``, Slurm's node name),
  as SSH profiles name their hosts;
- runs the engine, passing on the signals Slurm sends the task (``scancel``, the time
  limit);
- ends what the engine leaves behind once it exited. ipyparallel's engine starts a nanny
  in a session of its own, and the nanny does not always exit after its engine (it can
  hang on a controller that is gone). On a site whose process tracking is by process
  group (``proctrack/pgid``) such a nanny escapes the job: Slurm cannot kill it, and the
  job stays ``COMPLETING``. As a child subreaper (Linux), this wrapper inherits the
  orphaned nanny and ends it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

from pytest_gold.protocol.messages import HOST_ENV

#: Linux prctl(2): orphaned descendants are reparented to this process, not to init.
PR_SET_CHILD_SUBREAPER = 36
#: How long what the engine left behind gets to exit by itself before it is killed.
ORPHAN_GRACE_SECONDS = 2.0
ORPHAN_POLL_SECONDS = 0.1
#: The signals Slurm sends a task (scancel, the time limit, --signal) and Ctrl-C of srun.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux: nothing is inherited
        return False


def node_name() -> str:
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


def run_engine(command: list[str]) -> int:
    engine = subprocess.Popen(command)

    def forward(signum: int, _frame: object) -> None:
        if engine.poll() is None:
            engine.send_signal(signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    return engine.wait()


def end_orphans(grace_seconds: float = ORPHAN_GRACE_SECONDS) -> list[int]:
    """Wait for the processes reparented here to exit; kill those that do not in time.
    Returns the pids that had to be killed."""
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not _reap_exited():
            return []
        time.sleep(ORPHAN_POLL_SECONDS)
    killed = _children()
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while _reap_exited(block=True):
        pass
    return killed


def _reap_exited(block: bool = False) -> bool:
    """Collect children that exited; whether any child is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        if block:
            return True


def _children() -> list[int]:
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as children:
            return [int(pid) for pid in children.read().split()]
    except (OSError, ValueError):
        return []


def main(argv: list[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if not command:
        print("usage: python -m pytest_gold.launch.slurmengine ENGINE_COMMAND...", file=sys.stderr)
        return 2
    os.environ[HOST_ENV] = node_name()  # not the submitting machine's (--export=ALL)
    become_subreaper()
    code = run_engine(command)
    killed = end_orphans()
    if killed:
        print(f"pytest-gold: ended {len(killed)} process(es) the engine left behind", flush=True)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
