"""The engines of an embedded cluster, forked from one process that imported ipyparallel.

``python -m pytest_gold.launch.enginezygote -n N PYTHON -m ipyparallel.engine ARGS...``
(the command line :class:`pytest_gold.launch.enginefork.ForkingEngineSetLauncher` builds).

Each engine process used to import ipyparallel, ipykernel, IPython and zmq itself: about
0.3 s of CPU time per engine, 3.5 s for 12 engines, which on a 2-core machine is most of
what an embedded cluster's start waits for. This process imports them once, with no thread
started yet (a fork copies only the thread that forks), then forks the N engines, each of
which starts its engine as ``python -m ipyparallel.engine ARGS`` would. It then waits for
them: SIGTERM, SIGINT and SIGHUP are passed on to every engine still running, it exits
when the last one did, and an engine whose zygote dies gets SIGTERM (Linux), so that the
engines live exactly as long as this process, which is what ipyparallel's launcher and
pytest-gold's stop (the launcher's process group) watch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Sequence

#: The command an engine is started with, after the Python executable.
ENGINE_MODULE = ["-m", "ipyparallel.engine"]
#: The signals passed on to the engines.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: prctl option number, from <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


class UsageError(Exception):
    pass


def parse(argv: Sequence[str]) -> tuple[int, list[str]]:
    """``-n N PYTHON -m ipyparallel.engine ARGS...`` -> (N, ARGS)."""
    if len(argv) < 4 or argv[0] != "-n" or list(argv[3:5]) != ENGINE_MODULE:
        raise UsageError(
            "usage: python -m pytest_gold.launch.enginezygote -n N PYTHON -m "
            f"ipyparallel.engine [ARGS...], not {' '.join(argv)}"
        )
    try:
        count = int(argv[1])
    except ValueError:
        raise UsageError(f"-n takes a number of engines, not {argv[1]!r}") from None
    if count < 1:
        raise UsageError(f"-n takes at least 1 engine, not {count}")
    return count, list(argv[5:])


def _die_with_zygote() -> None:
    """Linux: the kernel sends SIGTERM to this engine when the zygote dies."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def fork_engines(count: int) -> list[int] | None:
    """Fork ``count`` engine processes: their pids in the zygote, ``None`` in an engine."""
    zygote = os.getpid()
    engines = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            for number in FORWARDED:
                signal.signal(number, signal.default_int_handler if number == signal.SIGINT
                              else signal.SIG_DFL)  # fmt: skip
            _die_with_zygote()
            if os.getppid() != zygote:  # it died before the line above: so do we
                os._exit(0)
            return None
        engines.append(pid)
    return engines


def wait_for(engines: list[int]) -> int:
    """Pass the stop signals on to the engines; wait until all exited. The exit code: 0,
    or that of the first engine that failed."""
    running = set(engines)

    def forward(number: int, frame: object) -> None:
        for pid in running:
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                pass

    for number in FORWARDED:
        signal.signal(number, forward)
    status = 0
    while running:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover (PEP 475 retries)
            continue
        running.discard(pid)
        exit_code = os.waitstatus_to_exitcode(code)
        if exit_code and not status and exit_code > 0:
            status = exit_code
    return status


def main(argv: Sequence[str]) -> int | None:
    """Fork the engines and wait for them (returns the zygote's exit code), or, in an
    engine, set up ``sys.argv`` for it and return ``None``."""
    try:
        count, engine_args = parse(argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    # What every engine imports, once, before the fork (no thread is started by it).
    import ipyparallel.engine.app  # noqa: F401

    engines = fork_engines(count)
    if engines is None:
        sys.argv = ["ipengine", *engine_args]
        return None
    return wait_for(engines)


if __name__ == "__main__":
    exit_code = main(sys.argv[1:])
    if exit_code is not None:
        sys.exit(exit_code)
    # An engine: as `python -m ipyparallel.engine`, at the top level, so that its exit
    # (SystemExit, atexit handlers such as the supervisor's) is an ordinary one.
    from ipyparallel.engine.app import main as engine_main

    engine_main()
