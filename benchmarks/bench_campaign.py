"""Campaign-scale benchmark of pytest-gold: uneven sweeps, a running cluster, many cases.

Three parts, each a generated suite in its own directory (with an empty ``pytest.ini``)
under one temp dir, every run a ``python -m pytest`` subprocess in its own process group:

1. **Heterogeneous sweep**: cases of ``time.sleep(d)``, ``d`` drawn with a fixed seed from
   a lognormal distribution (median 0.15 s, clipped to 8x the median), plus 5 cases of 10x
   the median placed *last* in collection order. The ideal makespan is
   ``max(total / engines, longest case)``. Runs: (a) ``--gold`` with an empty cache (the
   ``.pytest_cache`` directory is deleted first), (b) ``--gold`` again (durations now known
   from the cache: longest first), (c) ``-n N --dist load`` and (d) ``-n N --dist worksteal``
   (``-p no:cacheprovider``). A ``conftest.py`` implements the pytest-gold hooks
   ``pytest_gold_case_scheduled`` / ``pytest_gold_case_finished`` (called on the
   controller) and stamps ``time.time()`` into a file, giving the gold runs'
   dispatch-to-last-result time (last result - first dispatch), which leaves out the
   cluster's start and stop.
2. **Running cluster**: trivial cases on 4 engines of a cluster the script starts once
   with ipyparallel; ``--gold --gold-connection-file`` attaches to it, twice: the first
   run on the fresh cluster, and the same run again 3 s later (as a campaign's repeated
   runs are: the engines started its workers ahead). Compared with the mean of two
   ``-n 4`` runs.
3. **Scale**: many trivial cases, ``--gold --gold-engines N -q``. Reports the peak RSS of
   the pytest process (the gold controller; psutil, polled every 0.1 s) and its own CPU
   time (user + system of that process only, not of the cluster: ``getrusage(RUSAGE_SELF)``
   written by an ``atexit`` handler of the suite's ``conftest.py``; the last psutil sample
   if that file is missing) per case. Start-up and collection are included.

Usage::

    python benchmarks/bench_campaign.py [--engines N] [--quick] [--timeout S]

Needs psutil, ipyparallel (part 2) and pytest-xdist. Exits non-zero if any run fails,
times out, does not report the expected number of passed cases or leaves processes
behind; the goals printed at the end do not affect the exit code. A full run takes
about 4 minutes on 2 cores (--quick: about 2.5).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from harness import (
    BenchError,
    PytestRun,
    RunMarker,
    Table,
    add_timeout_option,
    check_repeat_and_timeout,
    interrupted,
    print_leftover_notes,
    print_load_at_end,
    print_setup,
    ratio,
    run_pytest,
    trivial_tests,
    write_suite,
    yes_no,
)

#: Environment variable marking every process a run (or the part-2 cluster) starts, so
#: leftovers (cluster engines start their own sessions) can be found afterwards.
MARKER_VARIABLE = "BENCH_CAMPAIGN_RUN_ID"
#: Seconds between psutil samples of the pytest process.
POLL_SECONDS = 0.1

SEED = 20240611
MEDIAN_SECONDS = 0.15
SIGMA = 0.8
#: Regular draws are clipped to this multiple of the median ...
CLIP_FACTOR = 8.0
#: ... the tail cases are this multiple of it, placed last in collection order.
TAIL_FACTOR = 10.0
TAIL_CASES = 5
#: Part-2 cluster size (fixed).
CLUSTER_ENGINES = 4
#: Pause between the two gold runs of part 2: engines start the next run's worker 1 s
#: after a run ends (``pytest_gold.engine.standby.STANDBY_DELAY_SECONDS``).
STANDBY_WAIT_SECONDS = 3.0

STAMPS_FILE = "stamps.txt"
STAMP_CONFTEST = """\
import time
from pathlib import Path

STAMPS = Path(__file__).with_name("stamps.txt")


def _stamp(kind, nodeid):
    stamp = time.time()
    with STAMPS.open("a") as out:
        out.write(f"{kind} {stamp!r} {nodeid}\\n")


# Both run on the controller (the pytest process); xdist never calls them.
def pytest_gold_case_scheduled(config, nodeid, engine):
    _stamp("S", f"{engine.engine_id} {nodeid}")


def pytest_gold_case_finished(config, nodeid, reports, engine):
    _stamp("F", f"{engine.engine_id} {nodeid}")
"""

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
            {"user": usage.ru_utime, "system": usage.ru_stime, "maxrss_kb": usage.ru_maxrss}
        )
    )
"""


@dataclass(frozen=True)
class Plan:
    sweep_cases: int
    sweep_engines: int
    trivial_cases: int
    scale_cases: int
    scale_engines: int
    timeout: float


@dataclass
class Usage:
    """psutil samples of a pytest process itself (not of the cluster it starts)."""

    #: Highest RSS seen by polling the pytest process, in bytes.
    peak_rss: int = 0
    #: Last psutil (user, system) sample of the pytest process itself.
    last_cpu: tuple[float, float] | None = None
    handle: psutil.Process | None = None

    def sample(self, pid: int) -> None:
        if self.handle is None:
            self.handle = psutil.Process(pid)
        try:
            with self.handle.oneshot():
                rss = self.handle.memory_info().rss
                times = self.handle.cpu_times()
        except psutil.Error:  # exited (or a zombie) between two polls
            return
        self.peak_rss = max(self.peak_rss, rss)
        self.last_cpu = (times.user, times.system)


@dataclass
class Row:
    part: str
    run: str
    workers: int
    cases: int
    wall: float
    metrics: list[str] = field(default_factory=list)
    #: Printed on lines of their own under the row's metrics.
    details: list[str] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engines",
        type=int,
        default=None,
        help="gold engines / xdist workers of the heterogeneous sweep (default 16, --quick 8).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: sweep of 60 cases on 8 engines, scale part 5,000 cases on 4.",
    )
    add_timeout_option(parser, 300.0)
    args = parser.parse_args(argv)
    if args.engines is not None and args.engines < 1:
        parser.error("--engines must be at least 1")
    check_repeat_and_timeout(parser, args)
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        sweep_cases, sweep_engines, scale_cases, scale_engines = 60, 8, 5_000, 4
    else:
        sweep_cases, sweep_engines, scale_cases, scale_engines = 200, 16, 20_000, 8
    return Plan(
        sweep_cases=sweep_cases,
        sweep_engines=args.engines or sweep_engines,
        trivial_cases=2000,
        scale_cases=scale_cases,
        scale_engines=scale_engines,
        timeout=args.timeout,
    )


# -- suites --------------------------------------------------------------------------


def sweep_durations(cases: int) -> list[float]:
    """Long-tailed sleep durations (fixed seed), the 10x-median tail cases last."""
    rng = random.Random(SEED)
    regular = max(cases - TAIL_CASES, 0)
    draws = [
        round(
            min(
                max(rng.lognormvariate(math.log(MEDIAN_SECONDS), SIGMA), 0.005),
                CLIP_FACTOR * MEDIAN_SECONDS,
            ),
            4,
        )
        for _ in range(regular)
    ]
    return draws + [TAIL_FACTOR * MEDIAN_SECONDS] * (cases - regular)


def ideal_makespan(durations: Sequence[float], workers: int) -> float:
    return max(sum(durations) / workers, max(durations))


def sweep_tests(durations: Sequence[float]) -> str:
    return f"""\
        import time

        import pytest

        DURATIONS = {list(durations)!r}


        @pytest.mark.parametrize("i", range(len(DURATIONS)))
        def test_sweep(i):
            time.sleep(DURATIONS[i])
        """


# -- running -------------------------------------------------------------------------


def run_once(
    args: list[str], cwd: Path, cases: int, timeout: float, label: str
) -> tuple[PytestRun, Usage]:
    """Run ``python -m pytest ARGS`` in ``cwd``; poll its RSS and CPU time meanwhile."""
    print(f"  {label} ...", end="", flush=True)
    usage = Usage()
    run = run_pytest(args, cwd, MARKER_VARIABLE, timeout, label, usage.sample, POLL_SECONDS)
    try:
        run.check_output(f"{cases} passed", f"pytest {' '.join(args)}")
    except BenchError:
        print(" TIMED OUT" if run.timed_out else " FAILED", flush=True)
        raise
    run.check_leftovers()
    print(f" {run.wall:.2f} s", flush=True)
    return run, usage


# -- part 1: heterogeneous sweep -----------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    time: float
    engine: str
    nodeid: str


@dataclass(frozen=True)
class Stamps:
    scheduled: list[Stamp]
    finished: list[Stamp]

    @property
    def first_dispatch(self) -> float:
        return min(s.time for s in self.scheduled)

    @property
    def last_result(self) -> float:
        return max(s.time for s in self.finished)

    @property
    def dispatch_to_last(self) -> float:
        return self.last_result - self.first_dispatch

    def dispatch_order(self) -> list[str]:
        order: dict[str, None] = {}
        for stamp in sorted(self.scheduled, key=lambda s: s.time):
            order.setdefault(stamp.nodeid, None)
        return list(order)

    def first_on_each_engine(self) -> dict[str, Stamp]:
        first: dict[str, Stamp] = {}
        for stamp in sorted(self.scheduled, key=lambda s: s.time):
            first.setdefault(stamp.engine, stamp)
        return first

    def engines_joined_within(self) -> float:
        """Seconds from the first dispatch to the first dispatch to the last engine."""
        return max(s.time for s in self.first_on_each_engine().values()) - self.first_dispatch

    def first_case_overhead(self, durations: dict[str, float]) -> float:
        """Median over engines of (result - dispatch - sleep) of each engine's first case:
        what an engine's first task costs beyond the case (the worker's start-up)."""
        finished = {s.nodeid: s.time for s in self.finished}
        extra = [
            finished[s.nodeid] - s.time - durations[s.nodeid]
            for s in self.first_on_each_engine().values()
            if s.nodeid in finished
        ]
        return statistics.median(extra) if extra else math.nan


def read_stamps(path: Path) -> Stamps | None:
    if not path.exists():
        return None
    scheduled: list[Stamp] = []
    finished: list[Stamp] = []
    for line in path.read_text().splitlines():
        kind, stamp, engine, nodeid = line.split(" ", 3)
        (scheduled if kind == "S" else finished).append(Stamp(float(stamp), engine, nodeid))
    if not scheduled or not finished:
        return None
    return Stamps(scheduled, finished)


@dataclass
class SweepOutcome:
    rows: list[Row]
    ideal: float
    gold_second_d2l: float | None
    walls: dict[str, float]
    long_first: bool | None


def part_sweep(root: Path, plan: Plan) -> SweepOutcome:
    durations = sweep_durations(plan.sweep_cases)
    n = plan.sweep_engines
    ideal = ideal_makespan(durations, n)
    print(
        f"part 1: sweep of {len(durations)} sleeps (total {sum(durations):.2f} s, median "
        f"{sorted(durations)[len(durations) // 2]:.3f} s, longest {max(durations):.2f} s, "
        f"{TAIL_CASES} x {TAIL_FACTOR * MEDIAN_SECONDS:.2f} s last) on N={n}: ideal "
        f"{ideal:.2f} s",
        flush=True,
    )
    directory = write_suite(
        root / "sweep", {"conftest.py": STAMP_CONFTEST, "test_sweep.py": sweep_tests(durations)}
    )
    shutil.rmtree(directory / ".pytest_cache", ignore_errors=True)  # (a) starts cold
    stamps_path = directory / STAMPS_FILE
    gold = ["test_sweep.py", "-q", "--gold", "--gold-engines", str(n)]
    xdist = ["test_sweep.py", "-q", "-p", "no:cacheprovider", "-n", str(n)]
    runs = [
        ("gold", "(a) gold, empty cache", gold),
        ("gold2", "(b) gold, durations cached", gold),
        ("load", "(c) xdist --dist load", [*xdist, "--dist", "load"]),
        ("worksteal", "(d) xdist --dist worksteal", [*xdist, "--dist", "worksteal"]),
    ]
    rows, walls = [], {}
    second_d2l: float | None = None
    long_first: bool | None = None
    by_nodeid = {f"test_sweep.py::test_sweep[{i}]": d for i, d in enumerate(durations)}
    tail_ids = set(list(by_nodeid)[-TAIL_CASES:])
    for key, name, args in runs:
        stamps_path.unlink(missing_ok=True)
        result, _ = run_once(args, directory, len(durations), plan.timeout, f"1 {name}")
        walls[key] = result.wall
        row = Row(
            "1 sweep",
            name,
            n,
            len(durations),
            result.wall,
            [f"wall/ideal {ratio(result.wall, ideal):5.2f}"],
        )
        if key.startswith("gold"):
            stamps = read_stamps(stamps_path)
            if stamps is None or len(stamps.finished) != len(durations):
                seen = 0 if stamps is None else len(stamps.finished)
                raise BenchError(
                    f"1 {name}: the pytest_gold_* hooks saw {seen} of {len(durations)} "
                    f"results (is the conftest.py picked up?)"
                )
            d2l = stamps.dispatch_to_last
            sent_first = set(stamps.dispatch_order()[:TAIL_CASES]) == tail_ids
            row.metrics.append(
                f"dispatch->last result {d2l:5.2f} s = {ratio(d2l, ideal):4.2f} x ideal"
            )
            row.details += [
                f"start->first dispatch {stamps.first_dispatch - result.started_epoch:.2f} s, "
                f"last result->exit {result.ended_epoch - stamps.last_result:.2f} s",
                f"engines got their first case within {stamps.engines_joined_within():.2f} s "
                f"of the first dispatch; first case per engine took "
                f"{stamps.first_case_overhead(by_nodeid):.2f} s more than its sleep (median)",
                f"the {TAIL_CASES} long cases were dispatched first: {yes_no(sent_first)}",
            ]
            if key == "gold2":
                second_d2l, long_first = d2l, sent_first
        rows.append(row)
    return SweepOutcome(rows, ideal, second_d2l, walls, long_first)


# -- part 2: running cluster ---------------------------------------------------------


@contextmanager
def running_cluster(profile_dir: Path, engines: int) -> Iterator[Path]:
    """An ipyparallel cluster on loopback for the block; yields its client connection file."""
    import ipyparallel as ipp

    marker = RunMarker(MARKER_VARIABLE)
    saved = dict(os.environ)
    # The cluster's processes inherit the environment at start: tag them, and keep the
    # user's pytest settings away from the engines' workers too.
    os.environ.clear()
    os.environ.update(marker.environment())
    cluster = ipp.Cluster(
        n=engines,
        profile_dir=str(profile_dir),
        load_profile=False,
        controller_ip="127.0.0.1",
        log_level=40,
    )
    client = None
    try:
        started = time.perf_counter()
        cluster.start_cluster_sync()
        client = cluster.connect_client_sync()
        client.wait_for_engines(engines, timeout=120)
        connection_file = (
            profile_dir / "security" / f"ipcontroller-{cluster.cluster_id}-client.json"
        )
        if not connection_file.exists():
            raise BenchError(f"2: no connection file at {connection_file}")
        print(
            f"  cluster of {engines} engines up in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        os.environ.clear()
        os.environ.update(saved)
        yield connection_file
    finally:
        os.environ.clear()
        os.environ.update(saved)
        try:
            if client is not None:
                client.close()
        finally:
            cluster.stop_cluster_sync()
            if marker.stop_leftovers("2 cluster"):
                raise BenchError("2: processes of the cluster could not be stopped")


def part_running_cluster(root: Path, plan: Plan) -> list[Row]:
    """The first gold run on a just-started cluster, and a second one as in a campaign's
    daily use (the engines' workers for it were started ahead); xdist twice as well."""
    cases = plan.trivial_cases
    print(
        f"part 2: {cases} trivial cases on {CLUSTER_ENGINES} engines of a running cluster",
        flush=True,
    )
    directory = write_suite(root / "trivial", {"test_trivial.py": trivial_tests(cases)})
    gold_args = ["test_trivial.py", "-q", "--gold"]
    with running_cluster(root / "profile", CLUSTER_ENGINES) as connection_file:
        gold_args += ["--gold-connection-file", str(connection_file)]
        first, _ = run_once(
            gold_args, directory, cases, plan.timeout, "2 gold, first run on the cluster"
        )
        time.sleep(STANDBY_WAIT_SECONDS)
        again, _ = run_once(gold_args, directory, cases, plan.timeout, "2 gold, run again")
    xdist_args = ["test_trivial.py", "-q", "-p", "no:cacheprovider", "-n", str(CLUSTER_ENGINES)]
    xdist = [
        run_once(xdist_args, directory, cases, plan.timeout, f"2 xdist -n {CLUSTER_ENGINES}")[0]
        for _ in range(2)
    ]
    xdist_wall = statistics.mean(run.wall for run in xdist)
    return [
        Row(
            "2 running cluster",
            "gold, first run",
            CLUSTER_ENGINES,
            cases,
            first.wall,
            [f"gold/xdist {ratio(first.wall, xdist_wall):.2f}"],
        ),
        Row(
            "2 running cluster",
            "gold, run again",
            CLUSTER_ENGINES,
            cases,
            again.wall,
            [f"gold/xdist {ratio(again.wall, xdist_wall):.2f}"],
        ),
        Row(
            "2 running cluster",
            f"xdist -n {CLUSTER_ENGINES} (mean of 2)",
            CLUSTER_ENGINES,
            cases,
            xdist_wall,
        ),
    ]


# -- part 3: scale -------------------------------------------------------------------


def part_scale(root: Path, plan: Plan) -> Row:
    cases, n = plan.scale_cases, plan.scale_engines
    print(f"part 3: {cases} trivial cases on {n} engines", flush=True)
    directory = write_suite(
        root / "scale", {"conftest.py": RUSAGE_CONFTEST, "test_scale.py": trivial_tests(cases)}
    )
    result, usage = run_once(
        ["test_scale.py", "-q", "--gold", "--gold-engines", str(n)],
        directory,
        cases,
        plan.timeout,
        f"3 gold, {cases} cases",
    )
    rusage_path = directory / f"rusage-{result.pid}.json"
    metrics = [f"peak RSS {usage.peak_rss / 2**20:.0f} MiB (polled)"]
    if rusage_path.exists():
        usage = json.loads(rusage_path.read_text())
        cpu, source = usage["user"] + usage["system"], "getrusage at exit"
        metrics[0] += f", {usage['maxrss_kb'] / 1024:.0f} MiB (ru_maxrss)"
    elif usage.last_cpu is not None:
        cpu, source = sum(usage.last_cpu), "last psutil sample"
    else:
        raise BenchError("3: no CPU time of the pytest process was measured")
    metrics.append(f"controller CPU {cpu:.1f} s = {1000 * cpu / cases:.2f} ms/case ({source})")
    return Row("3 scale", "gold -q", n, cases, result.wall, metrics)


# -- report --------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    header = ("part", "run", "N", "cases", "wall [s]", "")
    cells = [
        (r.part, r.run, str(r.workers), str(r.cases), f"{r.wall:.2f}", "  ".join(r.metrics))
        for r in rows
    ]
    table = Table(header, cells, "<<>>>")
    indent = " " * (sum(table.widths) + 2 * len(table.widths) + 2)
    print()
    print(table.line(header))
    print("-" * max(len(table.line(header)), max(len(table.line(c)) for c in cells)))
    for row, cell in zip(rows, cells, strict=True):
        print(table.line(cell))
        for detail in row.details:
            print(f"{indent}{detail}")


def print_goals(sweep: SweepOutcome, trivial: list[Row]) -> None:
    print()
    ideal = sweep.ideal
    if sweep.gold_second_d2l is not None:
        within = sweep.gold_second_d2l <= 1.10 * ideal
        print(
            f"goal 1: second gold run dispatch->last result within 1.10x ideal: "
            f"{yes_no(within)} ({ratio(sweep.gold_second_d2l, ideal):.2f}x)"
        )
    walls = sweep.walls
    better = walls["gold2"] < min(walls["load"], walls["worksteal"])
    print(
        f"goal 1: second gold run wall better than both xdist modes: {yes_no(better)} "
        f"({walls['gold2']:.2f} s vs load {walls['load']:.2f} s, "
        f"worksteal {walls['worksteal']:.2f} s)"
    )
    first, again, xdist = (row.wall for row in trivial)
    for label, gold in (("first run", first), ("run again", again)):
        print(
            f"goal 2: gold ({label}) on a running cluster no worse than xdist -n "
            f"{CLUSTER_ENGINES}: {yes_no(gold <= xdist)} ({gold:.2f} s vs {xdist:.2f} s)"
        )
    print_leftover_notes()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    print_setup(
        f"sweep {plan.sweep_cases} cases on N={plan.sweep_engines}; "
        f"{plan.trivial_cases} trivial cases on a running cluster of {CLUSTER_ENGINES}; "
        f"{plan.scale_cases} trivial cases on N={plan.scale_engines}"
    )
    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
        root = Path(tmp)
        try:
            sweep = part_sweep(root, plan)
            rows += sweep.rows
            trivial = part_running_cluster(root, plan)
            rows += trivial
            rows.append(part_scale(root, plan))
        except BenchError as error:
            if rows:
                print_table(rows)
            print(f"\nERROR: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return interrupted()
    print_table(rows)
    print(f"(part 1 ideal makespan {sweep.ideal:.2f} s on N={plan.sweep_engines})")
    print_goals(sweep, trivial)
    print_load_at_end(f"{time.perf_counter() - started:.0f} s in all; ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
