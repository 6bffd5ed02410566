"""Cold start: a long-tailed sweep from a fresh embedded cluster, against xdist and the ideal.

Issue 12, goal 3 and the second half of goal 4. One generated suite of C cases of
``time.sleep(d)`` (default 120), ``d`` long-tailed (lognormal, fixed seed, a few long
cases), run as subprocesses on N workers (default 12):

- **xdist**: ``pytest -n N`` (``-p no:cacheprovider``);
- **cold**: ``pytest --gold --gold-engines N`` with ``.pytest_cache`` removed: a fresh
  embedded cluster and no known durations;
- **known**: the same again, a fresh cluster but the durations of the run before kept in
  ``.pytest_cache`` (longest first);
- **warm**: a run with ``--gold-keep-cluster`` (durations known) leaves the cluster
  running, then the measured run attaches to it.

The ideal makespan is the lower bound max(total / N, longest); the makespan of the LPT
(longest first) schedule is printed beside it. The script prints each wall, its ratio to
the ideal and to xdist's, each goal with "met" / "NOT MET", and the load average. The kept
cluster lives in a temporary ``XDG_RUNTIME_DIR`` of the script's own and is stopped at the
end with ``python -m pytest_gold cluster stop``; every process of the runs is tagged
(``BENCH_COLDSTART_RUN_ID``) and any left is reported, killed by pid, and fails the script.

Usage::

    python benchmarks/bench_coldstart.py [--workers N] [--cases C] [--repeat K] [--pause S]
                                         [--cpus LIST] [--gold-arg=ARG ...]
                                         [--pytest-arg=ARG ...] [--timeout S]

``--pytest-arg`` goes to every run, xdist's and gold's: ``--pytest-arg=-p
--pytest-arg=no:zarr`` measures the same suite without a plugin the environment installs
(zarr's ``pytest11`` entry point imports zarr and numpy in every pytest process).

``--pause S`` waits S seconds (untimed) before each timed run: what an engine does between
two runs (a kept cluster's workers prepare the next run's session once the last run's
``pytest`` exited) then happens while nobody waits, as between a user's runs.

``--cpus LIST`` (``0``, ``0,1``, ``0-3``) pins the script before it starts anything, so every
process of every run inherits the affinity, as under ``taskset -c LIST``.

Stdlib only (and pytest-gold and pytest-xdist in the same Python).
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from harness import (
    BenchError,
    RunMarker,
    Table,
    add_repeat_option,
    add_timeout_option,
    check_repeat_and_timeout,
    interrupted,
    kill_group,
    print_load_at_end,
    print_setup,
    ratio,
    reports,
    stop_kept,
    tail,
    write_suite,
    yes_no,
)

MARKER_VARIABLE = "BENCH_COLDSTART_RUN_ID"
#: Dropped from the runs' environment unless --keep-environment: with it, no pytest
#: process can cache its assertion-rewritten modules (every plugin's package, the
#: conftest), and each one, on the controller and every worker, rewrites them again
#: (seconds of CPU per process here): the measure would be of that, for every mode.
NO_BYTECODE = "PYTHONDONTWRITEBYTECODE"
#: The sweep's durations: lognormal around this median, fixed seed, clipped.
MEDIAN_SECONDS = 0.86
SIGMA = 1.1
LONGEST_SECONDS = 9.0
SEED = 12
#: Issue 12, goal 3: cold wall <= xdist's; durations known <= 1.3x ideal.
COLD_VS_XDIST_GOAL = 1.0
KNOWN_VS_IDEAL_GOAL = 1.3
#: Issue 12, goal 4: a repeated run on a kept embedded cluster <= 1.1x ideal.
WARM_VS_IDEAL_GOAL = 1.1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=12, help="engines / -n (default 12)")
    parser.add_argument("--cases", type=int, default=120, help="cases (default 120)")
    parser.add_argument(
        "--gold-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to every gold run (--gold-arg=--gold-batch-seconds=1)",
    )
    parser.add_argument(
        "--pytest-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to every run, xdist's and gold's (--pytest-arg=-p --pytest-arg=no:zarr)",
    )
    parser.add_argument(
        "--keep-environment",
        action="store_true",
        help=f"keep {NO_BYTECODE} in the runs' environment if it is set",
    )
    parser.add_argument(
        "--cpus",
        type=cpu_list,
        default=None,
        metavar="LIST",
        help="pin the script and every process it starts to these CPUs (0 or 0,1 or 0-3)",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        metavar="S",
        help="wait S seconds before each timed run, as between a user's runs (default 0)",
    )
    add_repeat_option(parser, "do each run")
    add_timeout_option(parser, 300.0)
    args = parser.parse_args(argv)
    check_repeat_and_timeout(parser, args)
    if args.workers < 1 or args.cases < 1:
        parser.error("--workers and --cases must be at least 1")
    return args


def cpu_list(text: str) -> set[int]:
    """The CPUs of a ``taskset -c`` list (``0,2-3``)."""
    try:
        bounds = [part.partition("-")[::2] for part in text.split(",")]
        cpus = {cpu for a, b in bounds for cpu in range(int(a), int(b or a) + 1)}
    except ValueError:
        cpus = set()
    if not cpus:
        raise argparse.ArgumentTypeError(f"not a CPU list: {text!r}")
    return cpus


def durations(cases: int) -> list[float]:
    """The sweep's case durations: long-tailed, the same for every run and every machine."""
    generator = random.Random(SEED)
    return [
        round(min(generator.lognormvariate(0.0, SIGMA) * MEDIAN_SECONDS, LONGEST_SECONDS), 3)
        for _ in range(cases)
    ]


def lpt_makespan(times: Sequence[float], workers: int) -> float:
    """The makespan of longest-processing-time-first list scheduling on ``workers``."""
    loads = [0.0] * workers
    for duration in sorted(times, reverse=True):
        heapq.heapreplace(loads, loads[0] + duration)
    return max(loads)


def sweep_tests(times: Sequence[float]) -> str:
    return f"""\
import time

import pytest

DURATIONS = {list(times)!r}


@pytest.mark.parametrize("seconds", DURATIONS, ids=[f"c{{i:03d}}" for i in range(len(DURATIONS))])
def test_sweep(seconds):
    time.sleep(seconds)
"""


#: Stamps ``time.time()`` of the run's phases into STAMPS_FILE (on the controller): pytest
#: loaded the conftest, collection finished, each case dispatched (gold) and each case's
#: report arrived (every mode), pytest unconfigured.
STAMP_CONFTEST = """\
import time

STAMPS = open("stamps.txt", "a")


def _stamp(kind, what=""):
    STAMPS.write(f"{kind} {time.time():.6f} {what}\\n")
    STAMPS.flush()


_stamp("start")


def pytest_collection_finish(session):
    _stamp("collected")


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        _stamp("result")


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        _stamp("end")


try:
    import pytest_gold  # noqa: F401

    def pytest_gold_case_scheduled(config, nodeid, engine):
        _stamp("dispatch", f"{nodeid.rsplit('[', 1)[-1].rstrip(']')}@{engine.engine_id}")

    def pytest_gold_cluster_ready(config, client, engines):
        for engine in engines:
            _stamp("joined", engine.engine_id)
except ImportError:
    pass
"""
STAMPS_FILE = "stamps.txt"
#: The phases printed per mode: (label, first stamp, second stamp).
PHASES = (
    ("start->collected", "start", "collected"),
    ("collected->1st dispatch", "collected", "dispatch"),
    ("1st dispatch->1st result", "dispatch", "result"),
    ("1st result->last result", "result", "last result"),
    ("last result->exit", "last result", "exit"),
)


#: The case ids (c000, ...) of the last run, in the order they were dispatched (gold).
ORDER: list[str] = []


#: Per engine (id) of the last run: when it joined the run, when its first batch went.
JOINED: dict[str, float] = {}
FIRST_BATCH: dict[str, float] = {}


def joined_to_first_batch() -> str:
    """How long engines waited between joining the run and their first batch: the time a
    worker started as the engine joins (a prestart) could have gained."""
    waits = [FIRST_BATCH[e] - JOINED[e] for e in JOINED if e in FIRST_BATCH]
    if not waits:
        return "?"
    return f"median {statistics.median(waits):.2f} s, max {max(waits):.2f} s"


def longest_first(times: Sequence[float], workers: int) -> str:
    """Whether the last gold run dispatched the ``workers`` longest cases first."""
    if len(ORDER) < workers:
        return "?"
    ranked = sorted(range(len(times)), key=lambda i: -times[i])[:workers]
    first = {int(case[1:]) for case in ORDER[:workers]}
    return "yes" if first == set(ranked) else f"no ({len(first & set(ranked))}/{workers})"


def phases(suite: Path, started: float, ended: float) -> dict[str, float]:
    """Seconds per phase of the run whose stamps are in ``suite`` (then removed)."""
    path = suite / STAMPS_FILE
    ORDER.clear()
    JOINED.clear()
    FIRST_BATCH.clear()
    first: dict[str, float] = {"exit": ended}
    last_result = 0.0
    for line in path.read_text().splitlines():
        kind, value, *what = line.split()
        first.setdefault(kind, float(value))
        if kind == "dispatch":
            case, engine = what[0].split("@")
            ORDER.append(case)
            FIRST_BATCH.setdefault(engine, float(value))
        if kind == "joined":
            JOINED.setdefault(what[0], float(value))
        if kind == "result":
            last_result = max(last_result, float(value))
    path.unlink()
    first["last result"] = last_result
    first.setdefault("dispatch", first.get("collected", started))
    first["start"] = started  # from the command's start: interpreter start-up included
    return {label: first[b] - first[a] for label, a, b in PHASES if a in first and b in first}


def run(
    args: Sequence[str], suite: Path, env: dict[str, str], timeout: float, expected: str
) -> float:
    """``python -m pytest ARGS`` in ``suite`` (its own session): its wall time (checked)."""
    started = time.perf_counter()
    started_epoch = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=suite,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except BaseException:
        kill_group(process.pid)
        process.wait()
        raise
    wall = time.perf_counter() - started
    if process.returncode != 0 or not reports(output, expected):
        raise BenchError(
            f"`pytest {' '.join(args)}` exited with {process.returncode}:\n{tail(output)}"
        )
    PHASE_LOG.append(phases(suite, started_epoch, started_epoch + wall))
    return wall


#: The phases of each run, in order (see :func:`phases`).
PHASE_LOG: list[dict[str, float]] = []


def measure(args: argparse.Namespace, suite: Path, env: dict[str, str]) -> dict[str, list[float]]:
    expected = f"{args.cases} passed"
    gold = ["--gold", f"--gold-engines={args.workers}", *args.gold_arg, *args.pytest_arg]
    xdist = ["-n", str(args.workers), "-p", "no:cacheprovider", *args.pytest_arg]
    cache = suite / ".pytest_cache"
    times = durations(args.cases)
    walls: dict[str, list[float]] = {"xdist": [], "cold": [], "known": [], "warm": []}

    def timed(what: str, pytest_args: list[str], attempt: int) -> None:
        print(f"  {what} run {attempt + 1}/{args.repeat} ...", end="", flush=True)
        time.sleep(args.pause)  # not timed: the machine between two of a user's runs
        wall = run(pytest_args, suite, env, args.timeout, expected)
        walls[what].append(wall)
        shown = ", ".join(f"{label} {value:.2f}" for label, value in PHASE_LOG[-1].items())
        if what != "xdist":
            shown += f"; {args.workers} longest first: {longest_first(times, args.workers)}"
            shown += f"; engine joined->its 1st batch: {joined_to_first_batch()}"
        print(f" {wall:.2f} s ({shown})")

    # Untimed: the bytecode caches of pytest's plugins and the suite are written, once.
    warm_up = ["-n", "2", "-p", "no:cacheprovider", "-k", "c000", *args.pytest_arg]
    run(warm_up, suite, env, args.timeout, "1 passed")
    PHASE_LOG.pop()
    for attempt in range(args.repeat):
        timed("xdist", xdist, attempt)
        shutil.rmtree(cache, ignore_errors=True)
        timed("cold", gold, attempt)
        timed("known", gold, attempt)  # the cold run's durations are in the cache
    print("  keep run (starts the kept cluster) ...", end="", flush=True)
    print(f" {run([*gold, '--gold-keep-cluster'], suite, env, args.timeout, expected):.2f} s")
    for attempt in range(args.repeat):
        timed("warm", gold, attempt)
    return walls


def verdict(value: float, goal: float) -> str:
    return f"{'met' if value <= goal else 'NOT MET'} ({value:.2f}, goal <= {goal:g})"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpus is not None:
        os.sched_setaffinity(0, args.cpus)  # inherited by every process started from here
    cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    times = durations(args.cases)
    total, longest = sum(times), max(times)
    ideal = max(total / args.workers, longest)
    lpt = lpt_makespan(times, args.workers)
    bound = "total / N" if total / args.workers >= longest else "the longest case"
    print_setup(f"{args.cases} long-tailed sleep cases on {args.workers} workers, {args.repeat} "
                f"runs each, gold args {args.gold_arg or 'none'}, args of every run "
                f"{args.pytest_arg or 'none'}; runs on CPUs {cpus}")  # fmt: skip
    print(f"cases: total {total:.2f} s, median {statistics.median(times):.2f} s, longest "
          f"{longest:.2f} s; ideal makespan {ideal:.2f} s (lower bound, {bound}); "
          f"LPT schedule {lpt:.2f} s")  # fmt: skip
    marker = RunMarker(MARKER_VARIABLE)
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as temp:
        runtime = Path(temp, "runtime")
        runtime.mkdir(mode=0o700)
        suite = write_suite(
            Path(temp, "suite"),
            {"conftest.py": STAMP_CONFTEST, "test_sweep.py": sweep_tests(times)},
        )
        env = {**marker.environment(), "XDG_RUNTIME_DIR": str(runtime)}
        if not args.keep_environment and env.pop(NO_BYTECODE, None) is not None:
            print(f"({NO_BYTECODE} dropped from the runs' environment)")
        try:
            walls = measure(args, suite, env)
        except KeyboardInterrupt:
            stop_kept(suite, env, marker)
            return interrupted()
        except (BenchError, subprocess.TimeoutExpired) as error:
            stop_kept(suite, env, marker)
            print(f"\nERROR: {error}", file=sys.stderr)
            return 1
        left = stop_kept(suite, env, marker)
    median = {what: statistics.median(values) for what, values in walls.items()}
    labels = {
        "xdist": f"pytest -n {args.workers}",
        "cold": "gold, fresh cluster, no durations",
        "known": "gold, fresh cluster, durations known",
        "warm": "gold, kept cluster, durations known",
    }
    rows = [
        (labels[what], f"{median[what]:.2f} s", f"{ratio(median[what], ideal):.2f}",
         f"{ratio(median[what], median['xdist']):.2f}")
        for what in labels
    ]  # fmt: skip
    table = Table(("median wall", "s", "/ideal", "/xdist"), rows, "<>>>")
    print()
    for row in [table.header, *rows]:
        print(table.line(row))
    print(
        f"goal 3, cold wall / xdist wall: "
        f"{verdict(ratio(median['cold'], median['xdist']), COLD_VS_XDIST_GOAL)}"
    )
    print(
        f"goal 3, durations known, wall / ideal: "
        f"{verdict(ratio(median['known'], ideal), KNOWN_VS_IDEAL_GOAL)}"
    )
    print(f"goal 4, kept cluster, wall / ideal: "
          f"{verdict(ratio(median['warm'], ideal), WARM_VS_IDEAL_GOAL)}")  # fmt: skip
    print(f"nothing left running after 'cluster stop': {yes_no(not left)}")
    print_load_at_end()
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
