"""Shared harness of the pytest-gold benchmarks (the ``bench_*.py`` scripts next to it).

Each benchmark runs ``python -m pytest`` on suites it generates, one subprocess at a time:

- :func:`write_suite` makes a suite directory with an empty ``pytest.ini`` (so no project
  config is picked up);
- :func:`run_pytest` runs pytest in its own process group with a time limit, its output
  going to a temp file, and :class:`PytestRun` checks the outcome (exit code, the expected
  ``N passed``, leftover processes);
- :class:`RunMarker` tags every process a run starts through a unique environment
  variable, so leftovers (cluster processes start sessions of their own, outside the
  run's process group) can be found in ``/proc`` and stopped by pid;
- :class:`Table`, :func:`print_setup`, :func:`print_load_at_end` and friends format the
  report.

The scripts import this module as a sibling (``from harness import ...``): running
``python benchmarks/bench_X.py`` puts the script's directory first on ``sys.path``, from
whatever directory it is started. Stdlib only; finding processes needs Linux's ``/proc``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

#: Lines of output shown when a run fails.
TAIL_LINES = 40
#: How long to wait for a finished run's descendants to exit before calling them leftovers.
LEFTOVER_GRACE_SECONDS = 10.0
#: One line per run that left processes behind; :func:`print_leftover_notes` repeats them.
LEFTOVER_NOTES: list[str] = []
#: Environment variables that would carry the user's pytest settings into a run.
PYTEST_SETTINGS = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")
#: Exit code of a script stopped by Ctrl-C.
INTERRUPTED_EXIT = 130


class BenchError(Exception):
    """A run failed; the message says which and shows its output tail."""


# -- processes -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunMarker:
    """``VARIABLE=<unique id>`` in the environment of every process one run starts."""

    #: Name of the variable, one per script (for example ``BENCH_CORE_RUN_ID``).
    variable: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def environment(self) -> dict[str, str]:
        """This process's environment without the user's pytest settings, plus the marker."""
        env = dict(os.environ)
        # Keep the user's pytest settings out of the measurement.
        for name in PYTEST_SETTINGS:
            env.pop(name, None)
        env[self.variable] = self.run_id
        return env

    def processes(self) -> list[int]:
        """Pids of live processes whose environment carries the marker (Linux only)."""
        needle = f"{self.variable}={self.run_id}".encode()
        pids: list[int] = []
        proc = Path("/proc")
        if not proc.is_dir():
            return pids
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z" and needle in environ.split(b"\0"):
                pids.append(int(entry.name))
        return pids

    def stop_leftovers(self, label: str) -> list[int]:
        """Wait for the run's descendants to exit; stop and return any that do not.

        Waits up to :data:`LEFTOVER_GRACE_SECONDS`, then sends SIGTERM and, to those still
        alive 3 s later, SIGKILL, by pid. A run that left processes is noted in
        :data:`LEFTOVER_NOTES` and warned about on stderr under ``label``.
        """
        deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
        pids = self.processes()
        while pids and time.monotonic() < deadline:
            time.sleep(0.25)
            pids = self.processes()
        if not pids:
            return []
        note = (
            f"{label}: {len(pids)} process(es) still running "
            f"{LEFTOVER_GRACE_SECONDS:.0f} s after the run ended: {pids}; stopped them."
        )
        LEFTOVER_NOTES.append(note)
        print(f"\nWARNING: {note}", file=sys.stderr)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + 3.0
            while pids and time.monotonic() < end:
                time.sleep(0.1)
                pids = [pid for pid in pids if pid in self.processes()]
            if not pids:
                break
        return pids

    def kill_all(self) -> None:
        """SIGKILL, by pid, every live process carrying the marker (up to three rounds)."""
        for _ in range(3):
            pids = self.processes()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)


def kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Send ``sig`` to a process group, if it still exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def start_pytest(
    args: Sequence[str], cwd: Path, env: Mapping[str, str], log: IO[Any]
) -> subprocess.Popen[bytes]:
    """Start ``python -m pytest ARGS`` in ``cwd`` in a new session (its own process group).

    Output goes to the file ``log``, not a pipe: nothing blocks on a full pipe, and a
    descendant that outlives the run (keeping the output open) cannot hold up its end.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so it can be stopped as a whole
    )


# -- runs ----------------------------------------------------------------------------


@dataclass
class PytestRun:
    """The outcome of one :func:`run_pytest`."""

    label: str
    timeout: float
    pid: int
    returncode: int
    output: str
    #: Seconds from just before the start to the exit of the pytest process.
    wall: float
    #: time.time() just before the start and just after the exit of the pytest process.
    started_epoch: float
    ended_epoch: float
    timed_out: bool
    #: Marked processes that outlived the run and could not be stopped.
    leftovers: list[int]

    def check_output(self, expected: str, shown: str) -> None:
        """Raise :class:`BenchError` if the run timed out, exited non-zero or does not
        report ``expected`` (such as ``"200 passed"``); ``shown`` names the command."""
        if self.timed_out:
            raise BenchError(
                f"{self.label}: `{shown}` timed out after {self.timeout:.0f} s:\n"
                f"{tail(self.output)}"
            )
        if self.returncode != 0:
            raise BenchError(
                f"{self.label}: `{shown}` exited with {self.returncode}:\n{tail(self.output)}"
            )
        if not reports(self.output, expected):
            raise BenchError(
                f"{self.label}: `{shown}` did not report {expected!r}:\n{tail(self.output)}"
            )

    def check_leftovers(self) -> None:
        """Raise :class:`BenchError` if processes of the run could not be stopped."""
        if self.leftovers:
            raise BenchError(
                f"{self.label}: processes {self.leftovers} outlived the run and could not be "
                "stopped"
            )


def run_pytest(
    args: Sequence[str],
    cwd: Path,
    marker_variable: str,
    timeout: float,
    label: str,
    poll: Callable[[int], None] | None = None,
    poll_seconds: float = 0.1,
) -> PytestRun:
    """Run ``python -m pytest ARGS`` in ``cwd`` and wait for it, at most ``timeout`` s.

    Every process of the run is tagged with a :class:`RunMarker` on ``marker_variable``.
    At the time limit (or if the script itself is interrupted) the run's process group is
    SIGKILLed. After pytest's exit its leftovers are waited for and stopped
    (:meth:`RunMarker.stop_leftovers`). With ``poll``, ``poll(pid)`` is called every
    ``poll_seconds`` while pytest runs (to sample it, for example). The outcome is returned
    unchecked: see :meth:`PytestRun.check_output` and :meth:`PytestRun.check_leftovers`.
    """
    marker = RunMarker(marker_variable)
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log:
        started_epoch = time.time()
        started = time.perf_counter()
        process = start_pytest(args, cwd, marker.environment(), log)
        timed_out = False
        try:
            deadline = time.monotonic() + timeout
            while process.poll() is None:
                if poll is not None:
                    poll(process.pid)
                remaining = deadline - time.monotonic()
                if remaining < 0:
                    timed_out = True
                    kill_group(process.pid)
                    process.wait()
                    break
                try:
                    process.wait(timeout=remaining if poll is None else poll_seconds)
                except subprocess.TimeoutExpired:
                    pass
        except BaseException:
            kill_group(process.pid)
            process.wait()
            marker.stop_leftovers(label)
            raise
        wall = time.perf_counter() - started
        ended_epoch = time.time()
        leftovers = marker.stop_leftovers(label)
        log.seek(0)
        output = log.read()
    return PytestRun(
        label=label,
        timeout=timeout,
        pid=process.pid,
        returncode=process.returncode,
        output=output,
        wall=wall,
        started_epoch=started_epoch,
        ended_epoch=ended_epoch,
        timed_out=timed_out,
        leftovers=leftovers,
    )


def reports(output: str, expected: str) -> bool:
    """Whether ``output`` contains ``expected`` (``"200 passed"``) not preceded by a digit."""
    return re.search(rf"(?<!\d){re.escape(expected)}\b", output) is not None


def tail(output: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of ``output``."""
    return "\n".join(output.rstrip().splitlines()[-lines:])


def repeated(repeat: int, what: str) -> Iterator[tuple[int, str]]:
    """Yield ``(attempt, label)`` for attempts 1 to ``repeat``.

    The label is ``"WHAT run ATTEMPT/REPEAT"``; it is printed as ``"  LABEL ..."`` without
    a newline before each attempt, for the caller to finish the line with the result.
    """
    for attempt in range(1, repeat + 1):
        label = f"{what} run {attempt}/{repeat}"
        print(f"  {label} ...", end="", flush=True)
        yield attempt, label


# -- suites --------------------------------------------------------------------------


def write_suite(directory: Path, files: Mapping[str, str]) -> Path:
    """Create ``directory`` (it must not exist) with an empty ``pytest.ini`` and ``files``.

    ``files`` maps file names to their text, which is dedented. The empty ini makes the
    directory the rootdir, so no project config is picked up. Returns ``directory``.
    """
    directory.mkdir(parents=True)
    (directory / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text))
    return directory


def trivial_tests(cases: int) -> str:
    """A test module of ``cases`` parametrized ``assert i >= 0`` cases."""
    return f"""\
import pytest


@pytest.mark.parametrize("i", range({cases}))
def test_trivial(i):
    assert i >= 0
"""


# -- options -------------------------------------------------------------------------


def add_timeout_option(parser: argparse.ArgumentParser, default: float) -> None:
    """``--timeout S``: the time limit of one run."""
    parser.add_argument(
        "--timeout",
        type=float,
        default=default,
        help="seconds after which one run is killed and counted as failed "
        f"(default {default:.0f}).",
    )


def add_repeat_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--repeat K``; ``what`` starts the help text (``"run every command"``)."""
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help=f"{what} K times and report the median (default 1).",
    )


def check_repeat_and_timeout(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit through ``parser.error`` if ``--repeat`` (where given) or ``--timeout`` is out
    of range."""
    if getattr(args, "repeat", 1) < 1:
        parser.error("--repeat must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")


# -- report --------------------------------------------------------------------------


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, infinite for a denominator of 0 or less."""
    return numerator / denominator if denominator > 0 else float("inf")


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


class Table:
    """Columns two spaces apart; all but the last padded to their widest cell."""

    def __init__(
        self, header: tuple[str, ...], rows: Sequence[tuple[str, ...]], align: str
    ) -> None:
        """``align`` holds ``"<"`` (left) or ``">"`` (right) for each padded column."""
        self.header = header
        self.rows = rows
        self.align = align
        #: Widths of the padded columns.
        self.widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(align))]

    def line(self, row: tuple[str, ...]) -> str:
        """``row`` formatted, trailing blanks removed."""
        padded = [
            f"{cell:{align}{width}}"
            for cell, align, width in zip(row, self.align, self.widths, strict=False)
        ]
        return "  ".join([*padded, *row[len(padded) :]]).rstrip()


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def print_setup(description: str) -> None:
    """The first line of a report: the interpreter, what is run, and the machine's load."""
    print(
        f"python {sys.executable}; {description}; {os.cpu_count()} CPUs, {load_average()}",
        flush=True,
    )


def print_load_at_end(prefix: str = "") -> None:
    """The last line of a report: the load average again (``prefix`` goes before it)."""
    print(f"({prefix}{load_average()} at the end; other load on the machine skews the times)")


def print_leftover_notes() -> None:
    """Repeat the :data:`LEFTOVER_NOTES` warnings (after the table)."""
    for note in LEFTOVER_NOTES:
        print(f"WARNING: {note}")


def interrupted() -> int:
    """Say that Ctrl-C stopped the script; the exit code to return."""
    print("\ninterrupted", file=sys.stderr)
    return INTERRUPTED_EXIT


#: How long `python -m pytest_gold cluster stop` may take.
KEPT_STOP_SECONDS = 120
#: How long the runs' processes get to end after the kept cluster was stopped.
KEPT_EXIT_SECONDS = 10


def stop_kept(suite: Path, env: dict[str, str], marker: RunMarker) -> list[int]:
    """Stop the kept cluster; kill (and return) whatever of the runs is still alive."""
    subprocess.run(
        [sys.executable, "-m", "pytest_gold", "cluster", "stop", "--rootdir", str(suite)],
        env=env,
        stdout=subprocess.DEVNULL,
        timeout=KEPT_STOP_SECONDS,
        check=False,
    )
    deadline = time.monotonic() + KEPT_EXIT_SECONDS
    left = marker.processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = marker.processes()
    for pid in left:
        kill_group(pid)
    marker.kill_all()
    return left
