"""Fault-detection latency of pytest-gold: how fast each fault is noticed and reported.

Every fault is provoked in its own generated suite, run as
``pytest --gold --gold-engines 2 -p no:cacheprovider`` (an embedded cluster) in a
subprocess with its own process group:

1. a case crashes its worker process (SIGSEGV);
2. a case hangs past ``--gold-timeout 2`` (the overshoot past the 2 s limit is measured);
3. a case SIGKILLs its engine (``--gold-retries 0``: reported as "engine lost");
4. a case SIGKILLs its engine and the engine's nanny (a lost host, ``--gold-retries 0``);
5. the controller's process group is SIGKILLed mid-run (``--gold-wait 5``);
6. pytest itself is SIGKILLed while a case runs (the watchdog must stop the cluster);
7. Ctrl-C (SIGINT to pytest's process group) while a case sleeps.

For 1-4 the latency runs from the moment the case (on the engine) wrote ``time.time()``
just before the fault, to the moment the controller's ``pytest_gold_case_finished`` hook
(a generated conftest.py) saw the case's report. For 5 and 7 it runs from the signal to
the exit of the pytest process, for 6 from the signal to the exit of the last process
the run started. After every run the script waits up to 30 s for every process carrying
the run's marker environment variable to go away and reports how long that took.

Usage::

    python benchmarks/bench_faults.py [--repeat K] [--timeout S] [--only 1,3,...]

Needs psutil. Exits non-zero if any run misbehaved (wrong exit code, expected message
missing, processes left behind, run timed out); the problems are listed after the table.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from harness import (
    RunMarker,
    Table,
    add_repeat_option,
    add_timeout_option,
    check_repeat_and_timeout,
    interrupted,
    kill_group,
    print_load_at_end,
    print_setup,
    repeated,
    start_pytest,
    tail,
    write_suite,
)

#: Environment variable marking every process a run starts, so leftovers (cluster
#: processes start their own sessions) can be found and stopped afterwards.
MARKER_VARIABLE = "BENCH_FAULTS_RUN_ID"
#: How long a finished run's processes get to go away before they count as left behind.
CLEANUP_LIMIT_SECONDS = 30.0
#: Arguments of every run: an embedded cluster of two engines.
GOLD_ARGS = ("--gold", "--gold-engines", "2", "-p", "no:cacheprovider")
#: The line pytest-gold prints once its embedded cluster is up.
CLUSTER_UP = "gold: embedded cluster on"
#: Files the generated suites write next to themselves.
STARTED_FILE = "started.txt"
FINISHED_FILE = "finished.txt"
SEEN_WIDTH = 100
TAIL_LINES = 25
POLL_SECONDS = 0.05

CONFTEST = """\
import time
from pathlib import Path

FINISHED = Path(__file__).with_name("finished.txt")


def pytest_gold_case_finished(config, nodeid, reports, engine):
    # Runs on the controller (the pytest process), as each case's report arrives.
    stamp = time.time()
    with FINISHED.open("a") as out:
        out.write(f"{nodeid} {stamp!r}\\n")
"""

#: Header of every generated test module: ``mark_start()`` records the case's fault time.
TEST_HEADER = """\
import ctypes
import os
import signal
import time
from pathlib import Path

import psutil
import pytest


def mark_start():
    Path(__file__).with_name("started.txt").write_text(repr(time.time()))

"""


class RunFailed(Exception):
    """The run did not go as planned: pytest exited early or outlived its time limit."""


@dataclass
class Measurement:
    latency: float | None = None
    exit_code: int | None = None
    seen: str = ""
    #: Seconds until no marked process remained, None if some were left after the limit.
    cleanup: float | None = None
    #: When to start timing the clean-up (default: when pytest exited).
    clean_since: float | None = None
    #: The last processes of the run to go away (or the ones left behind).
    last_gone: list[str] = field(default_factory=list)
    #: Faults 1-4: seconds from the case's report to the exit of pytest.
    exit_after_report: float | None = None
    #: Length of the output when the fault was provoked from outside (fault 6).
    output_at_signal: int | None = None
    #: The run went wrong and the script stopped its processes itself.
    stopped_by_script: bool = False
    problems: list[str] = field(default_factory=list)


class Run:
    """One ``pytest --gold`` subprocess in its own process group, output in a file."""

    def __init__(self, directory: Path, args: Sequence[str], timeout: float) -> None:
        self.directory = directory
        self.marker = RunMarker(MARKER_VARIABLE)
        self.log_path = directory / "output.log"
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        # Its own process group (for Ctrl-C and kills), output in a file.
        with self.log_path.open("w") as log:
            self.process = start_pytest(
                [*GOLD_ARGS, *args], directory, self.marker.environment(), log
            )
        self.exited_at: float | None = None
        self.exited_wall: float | None = None
        #: Command lines of the run's processes, as first seen.
        self.names: dict[int, str] = {}

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def file(self, name: str) -> Path:
        return self.directory / name

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll until ``condition`` holds; fail if pytest exits or the time limit passes."""
        while not condition():
            if self.process.poll() is not None:
                raise RunFailed(f"pytest exited ({self.process.returncode}) before {what}")
            if time.monotonic() > self.deadline:
                raise RunFailed(f"no {what} within {self.timeout:.0f} s")
            time.sleep(POLL_SECONDS)

    def wait_for_line(self, prefix: str) -> None:
        self.wait_until(
            lambda: any(line.startswith(prefix) for line in self.output().splitlines()),
            f"line starting {prefix!r}",
        )

    def wait_for_file(self, name: str) -> None:
        self.wait_until(lambda: self.file(name).exists(), f"file {name}")

    def wait_exit(self) -> int:
        """Wait for pytest to exit (recording when); kill its group at the time limit."""
        try:
            code = self.process.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill_group(signal.SIGKILL)
            self.process.wait()
            self.exited_at, self.exited_wall = time.monotonic(), time.time()
            raise RunFailed(f"pytest did not exit within {self.timeout:.0f} s") from None
        self.exited_at, self.exited_wall = time.monotonic(), time.time()
        return code

    def kill_group(self, sig: signal.Signals) -> None:
        kill_group(self.process.pid, sig)

    def marked(self) -> list[int]:
        pids = self.marker.processes()
        for pid in pids:
            if pid not in self.names:
                self.names[pid] = short_name(process_cmdline(pid))
        return pids

    def wait_clean(self, since: float) -> tuple[float | None, list[str]]:
        """Seconds from ``since`` until no marked process is left (None if some outlive
        the limit; those are then stopped), and the last processes to go."""
        limit = time.monotonic() + CLEANUP_LIMIT_SECONDS
        last: list[int] = []
        while pids := self.marked():
            last = pids
            if time.monotonic() > limit:
                self.marker.kill_all()
                return None, self.describe(last)
            time.sleep(POLL_SECONDS)
        return time.monotonic() - since, self.describe(last)

    def describe(self, pids: list[int]) -> list[str]:
        return [f"{self.names.get(pid, '?')} (pid {pid})" for pid in pids]

    def abandon(self) -> None:
        """Stop everything this run started (after an error in the script itself)."""
        if self.process.poll() is None:
            self.kill_group(signal.SIGKILL)
            self.process.wait()
        self.marker.kill_all()


def prepare(directory: Path, tests: str) -> None:
    write_suite(
        directory, {"conftest.py": CONFTEST, "test_fault.py": TEST_HEADER + textwrap.dedent(tests)}
    )


def first_line(output: str, pattern: str) -> str:
    for line in output.splitlines():
        if re.search(pattern, line):
            text = line.strip()
            return text if len(text) <= SEEN_WIDTH else text[: SEEN_WIDTH - 3] + "..."
    return ""


def finished_time(run: Run, nodeid_part: str) -> float | None:
    """Controller-side time at which the hook saw the first case matching ``nodeid_part``."""
    path = run.file(FINISHED_FILE)
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        nodeid, _, stamp = line.rpartition(" ")
        if nodeid_part in nodeid:
            return float(stamp)
    return None


def started_time(run: Run) -> float | None:
    path = run.file(STARTED_FILE)
    return float(path.read_text()) if path.exists() else None


# -- the faults ----------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    number: int
    name: str
    #: What the latency column means for this fault.
    measures: str
    tests: str
    args: tuple[str, ...]
    #: Regex of the output line that shows the user what happened; None: the first line
    #: printed after the fault was provoked.
    pattern: str | None
    expected_exit: int | None
    #: Drives one run and fills in the latency (and any problems).
    drive: Callable[[Run, Measurement], None]
    #: pytest is SIGKILLed: no exit code or output to check; latency = clean-up time.
    pytest_killed: bool = False


def report_latency(offset: float, nodeid_part: str) -> Callable[[Run, Measurement], None]:
    """Faults 1-4: hook time of the case minus its fault time, minus ``offset``."""

    def drive(run: Run, measurement: Measurement) -> None:
        measurement.exit_code = run.wait_exit()
        start, end = started_time(run), finished_time(run, nodeid_part)
        if start is None:
            measurement.problems.append("the case never recorded its start")
        elif end is None:
            measurement.problems.append("pytest_gold_case_finished never saw the case")
        else:
            measurement.latency = end - start - offset
            if run.exited_wall is not None:
                measurement.exit_after_report = run.exited_wall - end

    return drive


def drive_lost_host(run: Run, measurement: Measurement) -> None:
    report_latency(0.0, "test_host_down")(run, measurement)
    nannies = run.file("nannies.txt")
    if not nannies.exists() or int(nannies.read_text()) < 1:
        measurement.problems.append("the case found no nanny to kill (not a lost host)")


def drive_controller_death(run: Run, measurement: Measurement) -> None:
    run.wait_for_line(CLUSTER_UP)
    time.sleep(3.0)
    controllers = []
    for pid in run.marked():
        try:
            if "ipyparallel.controller" in " ".join(psutil.Process(pid).cmdline()):
                controllers.append(pid)
        except psutil.Error:
            continue
    if not controllers:
        measurement.problems.append("found no controller process to kill")
        run.kill_group(signal.SIGKILL)
        measurement.exit_code = run.wait_exit()
        return
    os.killpg(os.getpgid(controllers[0]), signal.SIGKILL)
    killed_at = time.monotonic()
    measurement.exit_code = run.wait_exit()
    assert run.exited_at is not None
    measurement.latency = run.exited_at - killed_at
    if "the ipyparallel controller stopped answering" not in run.output():
        measurement.problems.append("'the ipyparallel controller stopped answering' not shown")


def drive_pytest_killed(run: Run, measurement: Measurement) -> None:
    run.wait_for_file(STARTED_FILE)
    time.sleep(1.0)
    if not any("ipyparallel" in " ".join(process_cmdline(pid)) for pid in run.marked()):
        measurement.problems.append("no ipyparallel process found before the kill")
    measurement.output_at_signal = len(run.output())
    run.process.kill()  # SIGKILL to pytest alone: no finally, no atexit
    measurement.clean_since = time.monotonic()
    measurement.exit_code = run.wait_exit()


def drive_ctrl_c(run: Run, measurement: Measurement) -> None:
    run.wait_for_file(STARTED_FILE)
    time.sleep(1.0)
    run.kill_group(signal.SIGINT)  # what Ctrl-C in a terminal does
    interrupted_at = time.monotonic()
    measurement.exit_code = run.wait_exit()
    assert run.exited_at is not None
    measurement.latency = run.exited_at - interrupted_at


def process_cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def short_name(cmdline: list[str]) -> str:
    """``python -m X ...`` -> ``X``; otherwise the program's file name."""
    if "-m" in cmdline[:-1]:
        module = cmdline[cmdline.index("-m") + 1]
        return "pytest" if module == "pytest" else module
    return Path(cmdline[0]).name if cmdline else "?"


FAULTS = (
    Fault(
        1,
        "case crashes its worker (SIGSEGV)",
        "case's crash -> report on the controller",
        """\
        def test_crash():
            mark_start()
            ctypes.string_at(0)  # reads address 0: SIGSEGV
        """,
        (),
        r"crashed its worker",
        1,
        report_latency(0.0, "test_crash"),
    ),
    Fault(
        2,
        "case hangs, --gold-timeout 2",
        "overshoot: report - case start - 2 s",
        """\
        def test_hang():
            mark_start()
            time.sleep(600)
        """,
        ("--gold-timeout", "2"),
        r"exceeded its time limit",
        1,
        report_latency(2.0, "test_hang"),
    ),
    Fault(
        3,
        "case kills its engine",
        "engine SIGKILL -> report (retries 0)",
        """\
        def test_kill_engine():
            mark_start()
            os.kill(os.getppid(), signal.SIGKILL)  # the worker's parent is the engine
            time.sleep(600)
        """,
        ("--gold-retries", "0"),
        r"engine lost|lost engine",
        1,
        report_latency(0.0, "test_kill_engine"),
    ),
    Fault(
        4,
        "lost host (engine + nanny killed)",
        "engine+nanny SIGKILL -> report (retries 0)",
        """\
        def test_host_down():
            engine = psutil.Process(os.getppid())
            nannies = [
                child.pid
                for child in engine.children()
                if "nanny" in " ".join(child.cmdline())
            ]
            Path(__file__).with_name("nannies.txt").write_text(str(len(nannies)))
            mark_start()
            for pid in nannies:
                os.kill(pid, signal.SIGKILL)
            os.kill(engine.pid, signal.SIGKILL)
            time.sleep(600)
        """,
        ("--gold-retries", "0"),
        r"engine lost|lost engine",
        1,
        drive_lost_host,
    ),
    Fault(
        5,
        "controller killed (--gold-wait 5)",
        "controller SIGKILL -> pytest exits",
        """\
        @pytest.mark.parametrize("i", range(30))
        def test_slow(i):
            time.sleep(1)
        """,
        ("--gold-wait", "5"),
        r"controller stopped answering",
        1,
        drive_controller_death,
    ),
    Fault(
        6,
        "pytest SIGKILLed mid-case",
        "pytest SIGKILL -> no process left",
        """\
        def test_sleeps():
            mark_start()
            time.sleep(600)
        """,
        (),
        None,
        None,
        drive_pytest_killed,
        pytest_killed=True,
    ),
    Fault(
        7,
        "Ctrl-C (SIGINT) mid-case",
        "SIGINT -> pytest exits",
        """\
        def test_sleeps():
            mark_start()
            time.sleep(600)
        """,
        (),
        r"KeyboardInterrupt|[Ii]nterrupted",
        2,
        drive_ctrl_c,
    ),
)


def measure(fault: Fault, directory: Path, timeout: float) -> Measurement:
    prepare(directory, fault.tests)
    measurement = Measurement()
    run = Run(directory, fault.args, timeout)
    try:
        fault.drive(run, measurement)
    except RunFailed as error:
        measurement.problems.append(str(error))
        measurement.stopped_by_script = True
        run.abandon()
    except BaseException:
        run.abandon()
        raise
    if run.process.poll() is None:  # a driver that gave up early
        run.kill_group(signal.SIGKILL)
        run.process.wait()
    measurement.cleanup, measurement.last_gone = run.wait_clean(
        measurement.clean_since or run.exited_at or time.monotonic()
    )
    output = run.output()  # after the clean-up: a watchdog may have printed something
    if fault.pytest_killed:
        measurement.latency = measurement.cleanup
    if measurement.cleanup is None:
        measurement.problems.append(
            f"processes still running {CLEANUP_LIMIT_SECONDS:.0f} s after the run (stopped): "
            + ", ".join(measurement.last_gone)
        )
    measurement.exit_code = run.process.returncode
    if fault.expected_exit is not None and measurement.exit_code != fault.expected_exit:
        measurement.problems.append(
            f"exit code {measurement.exit_code}, expected {fault.expected_exit}"
        )
    if fault.pattern is None:
        measurement.seen = first_line(output[measurement.output_at_signal or 0 :], r"\S")
    else:
        measurement.seen = first_line(output, fault.pattern)
    if not measurement.seen and fault.pattern is not None:
        measurement.problems.append(f"no output line matches {fault.pattern!r}")
    if measurement.problems:
        print(
            f"\n--- output tail of fault {fault.number} ---\n{tail(output, TAIL_LINES)}\n",
            file=sys.stderr,
        )
    return measurement


# -- report --------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    fault: Fault
    measurements: tuple[Measurement, ...]

    def latency(self) -> str:
        values = [m.latency for m in self.measurements if m.latency is not None]
        return f"{statistics.median(values):.2f}" if values else "-"

    def exit_codes(self) -> str:
        return "/".join(sorted({str(m.exit_code) for m in self.measurements}))

    def clean(self) -> str:
        if any(m.stopped_by_script for m in self.measurements):
            return "n/a (run stopped)"
        times = [m.cleanup for m in self.measurements]
        if any(t is None for t in times):
            left = sum(1 for t in times if t is None)
            return f"NO ({left}/{len(times)} runs left processes)"
        return f"yes, {max(t for t in times if t is not None):.1f} s"

    def seen(self) -> str:
        for measurement in self.measurements:
            if measurement.seen:
                return measurement.seen
        return "(nothing)" if self.fault.pytest_killed else "(no matching line)"


def print_table(rows: list[Row], repeat: int) -> None:
    latency_header = "median [s]" if repeat > 1 else "latency [s]"
    header = ("fault", latency_header, "exit", "clean (worst)", "what the user sees")
    cells = [
        (f"{r.fault.number} {r.fault.name}", r.latency(), r.exit_codes(), r.clean(), r.seen())
        for r in rows
    ]
    table = Table(header, cells, "<>><")
    print()
    print(table.line(header))
    print("-" * (sum(table.widths) + 8 + len(header[4])))
    for row in cells:
        print(table.line(row))
    print()
    print("latency is:")
    for r in rows:
        print(f"  {r.fault.number}: {r.fault.measures}")
    medians = f"; latencies are medians of {repeat} runs" if repeat > 1 else ""
    print(
        "clean: every process of the run gone (seconds after pytest exited, for 6 after the "
        f"kill; waited up to {CLEANUP_LIMIT_SECONDS:.0f} s){medians}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_repeat_option(parser, "measure every fault")
    add_timeout_option(parser, 180.0)
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the generated suites and their output.log files in a new directory under "
        "DIR instead of a temporary one.",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated fault numbers to measure (default: all, 1-7).",
    )
    args = parser.parse_args(argv)
    check_repeat_and_timeout(parser, args)
    numbers = {f.number for f in FAULTS}
    try:
        args.only = {int(x) for x in args.only.split(",") if x.strip()} or numbers
    except ValueError:
        parser.error("--only takes fault numbers such as 1,3,5")
    if not args.only <= numbers:
        parser.error(f"--only: unknown fault(s) {sorted(args.only - numbers)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path("/proc").is_dir():
        print("bench_faults needs /proc (Linux) to find the processes of a run", file=sys.stderr)
        return 1
    print_setup(f"pytest {' '.join(GOLD_ARGS)}; repeat {args.repeat}")
    rows: list[Row] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        base = Path(tmp)
        if args.keep is not None:
            base = args.keep.resolve() / time.strftime("bench-faults-%Y%m%d-%H%M%S")
            print(f"suites and outputs kept in {base}", flush=True)
        try:
            for fault in FAULTS:
                if fault.number not in args.only:
                    continue
                measurements = []
                for attempt, _ in repeated(args.repeat, f"fault {fault.number} ({fault.name})"):
                    directory = base / f"fault{fault.number}-run{attempt}"
                    measurement = measure(fault, directory, args.timeout)
                    latency = "-" if measurement.latency is None else f"{measurement.latency:.2f} s"
                    print(f" {latency}, exit {measurement.exit_code}", flush=True)
                    if measurement.exit_after_report is not None:
                        print(
                            f"    pytest exited {measurement.exit_after_report:.2f} s after "
                            "the case's report",
                            flush=True,
                        )
                    if measurement.last_gone:
                        cleanup = measurement.cleanup
                        when = "left behind" if cleanup is None else f"gone at {cleanup:.2f} s"
                        print(
                            f"    last process(es) {when}: {', '.join(measurement.last_gone)}",
                            flush=True,
                        )
                    problems.extend(
                        f"fault {fault.number} run {attempt}: {p}" for p in measurement.problems
                    )
                    measurements.append(measurement)
                rows.append(Row(fault, tuple(measurements)))
        except KeyboardInterrupt:
            return interrupted()
    print_table(rows, args.repeat)
    print_load_at_end()
    if problems:
        print("\nPROBLEMS:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
