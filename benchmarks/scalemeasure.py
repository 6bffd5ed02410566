"""How ``bench_scale.py`` measures one pytest run: the pytest process's own CPU time and
peak RSS, the CPU time of the processes below it by kind, the engines' use from the
per-host summary and the cases' time from the JUnit XML. A sibling module of the script
(``from scalemeasure import ...``), as ``harness.py`` is; needs psutil.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import psutil
from harness import BenchError, run_pytest

MARKER_VARIABLE = "BENCH_SCALE_RUN_ID"
POLL_SECONDS = 0.1
#: Seconds between samples of the CPU time of the run's other processes.
TREE_POLL_SECONDS = 0.5
#: A run is stopped (the script fails) when the machine has less memory available
#: (RAM available plus free swap: a run may use a swap file set up for it).
MIN_AVAILABLE_BYTES = 2**30
#: (text in its command line, kind) of the processes a run starts, first match wins.
PROCESS_KINDS = (
    ("pytest_gold.worker", "workers"),
    ("ipyparallel.engine", "engines"),
    ("ipengine", "engines"),
    ("ipyparallel.controller", "ipcontroller"),
    ("ipcontroller", "ipcontroller"),
    ("xdist", "workers"),
    ("execnet", "workers"),
    ("exec(eval(sys.stdin.readline()))", "workers"),  # execnet's popen gateway (xdist)
)

RUSAGE_CONFTEST = """\
import atexit
import json
import os
import resource
from pathlib import Path

# Imported by the controller and by every worker: each writes its own file, the script
# reads the one of the pytest process it started.
_OUT = Path(__file__).with_name(f"rusage-{os.getpid()}.json")


@atexit.register  # runs late: after pytest's own clean-up, just before the exit
def _write_rusage():
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this process only, all threads
    _OUT.write_text(
        json.dumps(
            {
                "cpu": usage.ru_utime + usage.ru_stime,
                "system": usage.ru_stime,
                "major_faults": usage.ru_majflt,
                "maxrss_kb": usage.ru_maxrss,
            }
        )
    )
"""


@dataclass
class Measured:
    label: str
    cases: int
    wall: float
    #: Controller (the pytest process itself) CPU seconds, user + system.
    cpu: float
    maxrss_mib: float
    polled_rss_mib: float
    #: Engines' use from the per-host summary (gold runs), in percent.
    busy_percent: float | None = None
    #: The engines' time running batches over their time in the run, from the same
    #: summary (its ``occupied`` column; ``None`` before it had one), in percent.
    occupied_percent: float | None = None
    #: Sum of the cases' durations (setup + call + teardown, the JUnit XML's ``time``).
    case_seconds: float | None = None
    #: CPU seconds of the processes below the pytest process, by kind.
    children_cpu: dict[str, float] = field(default_factory=dict)
    #: The largest polled RSS of one process below the pytest process, by kind, in MiB.
    children_peak_mib: dict[str, float] = field(default_factory=dict)
    #: The largest ``ru_maxrss`` the other processes that import the suite's conftest.py
    #: (the workers) wrote at their exit, in MiB; None if none wrote one.
    workers_maxrss_mib: float | None = None
    #: Of ``cpu``, the system's part, and the controller's major page faults (pages read
    #: back from swap: a run that does not fit in memory pays for them in system time).
    system_cpu: float = 0.0
    major_faults: int = 0

    def case_share(self, workers: int) -> float | None:
        """The summary's "use" computed alike for every mode: case time over workers x
        the whole wall time (start-up included, so a little below the summary's)."""
        if self.case_seconds is None:
            return None
        return 100 * self.case_seconds / (workers * self.wall)


class Sampler:
    """psutil samples of a run: the peak RSS of the pytest process itself (every poll),
    and the CPU time of every process below it, by kind (every
    :data:`TREE_POLL_SECONDS`; a process's last sample counts, so up to that much of a
    short-lived process's CPU time is missed)."""

    def __init__(self) -> None:
        self.peak = 0
        self.handle: psutil.Process | None = None
        self.cpu_by_pid: dict[int, tuple[str, float]] = {}
        self.rss_by_kind: dict[str, int] = {}
        self.next_tree_poll = 0.0

    def sample(self, pid: int) -> None:
        try:
            if self.handle is None:
                self.handle = psutil.Process(pid)
            self.peak = max(self.peak, self.handle.memory_info().rss)
            if time.monotonic() >= self.next_tree_poll:
                self.next_tree_poll = time.monotonic() + TREE_POLL_SECONDS
                available = psutil.virtual_memory().available + psutil.swap_memory().free
                if available < MIN_AVAILABLE_BYTES:  # stopped before the OOM killer picks
                    raise BenchError(
                        f"stopped: {available / 2**20:.0f} MiB of memory left on the machine"
                    )
                for child in self.handle.children(recursive=True):
                    self.sample_child(child)
        except psutil.Error:  # exited between two polls
            pass

    def sample_child(self, child: psutil.Process) -> None:
        try:
            with child.oneshot():
                times = child.cpu_times()
                rss = child.memory_info().rss
                kind = process_kind(" ".join(child.cmdline()))
        except psutil.Error:
            return
        self.cpu_by_pid[child.pid] = (kind, times.user + times.system)
        self.rss_by_kind[kind] = max(self.rss_by_kind.get(kind, 0), rss)

    def cpu_by_kind(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for kind, seconds in self.cpu_by_pid.values():
            totals[kind] = totals.get(kind, 0.0) + seconds
        return totals


def process_kind(command: str) -> str:
    for needle, kind in PROCESS_KINDS:
        if needle in command:
            return kind
    return "other"


def engines_busy(output: str, column: int = 0) -> float | None:
    """The engines' use over all hosts, from the ``gold: per-host summary`` table
    (``column`` 1: its ``occupied`` figure, ``None`` where it has none)."""
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if "gold: per-host summary" in line)
    except StopIteration:
        return None
    engines = weighted = 0.0
    for line in lines[start + 2 :]:  # after the title and the header
        match = re.match(r"\S+\s+(\d+)\s+\d+\s+\d+\s+\S+\s+(\d+)%(?:\s+(\d+)%)?", line)
        if match is None:
            break
        share = match.group(2 + column)
        if share is None:
            return None
        count = int(match.group(1))
        engines += count
        weighted += count * float(share)
    return weighted / engines if engines else None


def junit_case_seconds(path: Path) -> float | None:
    """The sum of the ``time`` of every ``testcase`` of a JUnit XML file."""
    if not path.exists():
        return None
    total = 0.0
    for _, element in ElementTree.iterparse(path):
        if element.tag == "testcase":
            total += float(element.get("time", 0.0))
            element.clear()
    return total


def measure(args: list[str], cwd: Path, cases: int, timeout: float, label: str) -> Measured:
    print(f"  {label} ...", end="", flush=True)
    peak = Sampler()
    run = run_pytest(args, cwd, MARKER_VARIABLE, timeout, label, peak.sample, POLL_SECONDS)
    try:
        run.check_output(f"{cases} passed", f"pytest {' '.join(args)}")
        run.check_leftovers()
    except BenchError:
        print(" FAILED", flush=True)
        raise
    rusage = cwd / f"rusage-{run.pid}.json"
    if not rusage.exists():
        raise BenchError(f"{label}: the suite's conftest.py wrote no {rusage.name}")
    usage = json.loads(rusage.read_text())
    rusage.unlink()
    workers_kb = []
    for other in cwd.glob("rusage-*.json"):  # the workers' own
        workers_kb.append(json.loads(other.read_text())["maxrss_kb"])
        other.unlink()
    measured = Measured(
        label,
        cases,
        run.wall,
        usage["cpu"],
        usage["maxrss_kb"] / 1024,
        peak.peak / 2**20,
        engines_busy(run.output),
        engines_busy(run.output, column=1),
        children_cpu=peak.cpu_by_kind(),
        children_peak_mib={kind: rss / 2**20 for kind, rss in peak.rss_by_kind.items()},
        workers_maxrss_mib=max(workers_kb) / 1024 if workers_kb else None,
        system_cpu=usage.get("system", 0.0),
        major_faults=usage.get("major_faults", 0),
    )
    for arg in args:
        if arg.startswith("--junitxml="):
            junit = cwd / arg.split("=", 1)[1]
            measured.case_seconds = junit_case_seconds(junit)
            junit.unlink(missing_ok=True)
    busy = "" if measured.busy_percent is None else f", engines {measured.busy_percent:.0f}% busy"
    if measured.occupied_percent is not None:
        busy += f", {measured.occupied_percent:.0f}% occupied"
    children = ", ".join(f"{kind} {sec:.1f}" for kind, sec in sorted(measured.children_cpu.items()))
    print(
        f" {run.wall:.1f} s, controller CPU {measured.cpu:.1f} s, peak RSS "
        f"{measured.maxrss_mib:.0f} MiB{busy}; CPU s of the other processes: {children}",
        flush=True,
    )
    return measured
