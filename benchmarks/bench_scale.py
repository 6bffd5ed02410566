"""Scale benchmark of pytest-gold: issue 12's throughput, memory and latency figures.

Every figure is measured side by side in one invocation and printed with its goal and
"met" / "not met":

1. **Throughput**: N trivial cases that record one value with ``gold_record`` (default
   100,000), run as plain ``pytest``, ``pytest -n E`` (xdist) and ``pytest --gold
   --gold-engines E`` (E = ``--engines``, default 2). Wall time, gold/xdist, the engines'
   use and occupancy from the run's per-host summary (goal: occupied >= 80%, the
   engines never wait for the controller), and the controller's own CPU time per case.
2. **Memory**: the same runs, all with ``--junitxml`` (gold with ``--gold-results`` jsonl
   too): the peak RSS of the pytest process itself, gold against plain. It is the
   process's own ``ru_maxrss`` (``getrusage(RUSAGE_SELF)`` written at exit by the suite's
   ``conftest.py``: neither engines nor workers count), and the psutil-polled peak of that
   pid as a check.
``--million``: goal 1's second figure alone, 10^6 cases of ``pass`` (``--cases`` to
   change it) on ``--million-engines`` engines (default 8): wall, the controller's CPU
   per case (getrusage at exit, start-up and collection included) against 0.3 ms, and
   the peak RSS of the controller, of one worker (each collects the whole suite) and of
   one engine process, with the total they would take at 10^6 cases on 8 engines
   (scaled in proportion to the cases: an upper bound; run it with ``--cases 100000``
   first to see whether 10^6 fits in memory). A run is stopped when the machine has
   less than 1 GiB of memory left.
   ``--memory``: goal 2 as issue 12 states it, on its own: N cases (default 200,000) as
   plain ``pytest --junitxml`` and as gold on 2 and on 8 engines (``--junitxml`` and
   ``--gold-results``): peak RSS gold/plain (goal <= 1.1) and gold E=8 / gold E=2 (the
   controller's memory does not grow with the engines: goal <= 1.05).
5. **Latency floor**: 2,000 cases of ``pass`` on a 4-engine cluster already running
   (``ipcluster start --daemonize`` in a temp profile dir, attached with
   ``--gold-connection-file``), the first run on it and a second one, against xdist
   ``-n 4``.

Usage::

    python benchmarks/bench_scale.py [--cases N] [--quick] [--engines E] [--only 1,5]
                                     [--memory] [--gold-arg=ARG ...] [--timeout S]
    python benchmarks/bench_scale.py --million [--million-engines E] [--cases N]

``--quick``: 5,000 cases. ``--gold-arg`` adds an argument to the gold runs (to try a
setting, e.g. ``--gold-arg=--gold-batch-seconds=2``). Needs psutil, ipyparallel and
pytest-xdist. Exits non-zero if a run fails, times out, does not report the expected
``N passed`` or leaves processes behind; the goals do not affect the exit code.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from harness import (
    BenchError,
    RunMarker,
    add_timeout_option,
    check_repeat_and_timeout,
    interrupted,
    print_leftover_notes,
    print_load_at_end,
    print_setup,
    ratio,
    write_suite,
)
from scalemeasure import MARKER_VARIABLE, RUSAGE_CONFTEST, measure

DEFAULT_CASES = 100_000
QUICK_CASES = 5_000
MILLION_CASES = 1_000_000
MILLION_ENGINES = 8
LATENCY_CASES = 2_000
LATENCY_ENGINES = 4
#: How long the daemonized cluster of part 5 may take to register its engines.
CLUSTER_START_SECONDS = 120.0
#: Pause between the two gold runs of part 5: the engines start the next run's worker
#: ahead (``pytest_gold.engine.standby``) once the last run's pytest has exited.
STANDBY_WAIT_SECONDS = 3.0

# Goals of issue 12.
GOAL_BUSY_PERCENT = 80.0
GOAL_CPU_MS_PER_CASE = 0.3
GOAL_RSS_RATIO = 1.1
GOAL_LATENCY_RATIO = 0.8
#: Goal 2's own figure: gold's peak RSS on the most engines over that on the fewest.
GOAL_ENGINES_RSS_RATIO = 1.05
MEMORY_CASES = 200_000
MEMORY_ENGINES = (2, 8)


def recording_tests(cases: int) -> str:
    return f"""\
import pytest


@pytest.mark.parametrize("i", range({cases}))
def test_case(i, gold_record):
    gold_record["value"] = i
"""


def pass_tests(cases: int) -> str:
    return f"""\
import pytest


@pytest.mark.parametrize("i", range({cases}))
def test_pass(i):
    pass
"""


def share_text(share: float | None) -> str:
    return "?" if share is None else f"{share:.0f}%"


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


# -- parts 1 and 2 -------------------------------------------------------------------


def part_throughput(root: Path, cases: int, engines: int, gold_args: list[str], timeout: float):
    print(f"parts 1+2: {cases} cases recording one value, E={engines}", flush=True)
    directory = write_suite(
        root / "throughput",
        {"conftest.py": RUSAGE_CONFTEST, "test_scale.py": recording_tests(cases)},
    )
    base = ["test_scale.py", "-q", "-p", "no:cacheprovider"]
    runs = {
        "plain": [*base, "--junitxml=plain.xml"],
        "xdist": [*base, "-n", str(engines), "--junitxml=xdist.xml"],
        "gold": [
            *base,
            "--gold",
            "--gold-engines",
            str(engines),
            "--junitxml=gold.xml",
            "--gold-results=gold.jsonl",
            *gold_args,
        ],
    }
    measured = {
        mode: measure(args, directory, cases, timeout, f"{mode}: pytest {' '.join(args[1:])}")
        for mode, args in runs.items()
    }
    plain, xdist, gold = measured["plain"], measured["xdist"], measured["gold"]
    workers = {"plain": 1, "xdist": engines, "gold": engines}
    rows = [
        f"{mode:<6} wall {m.wall:8.1f} s  controller CPU "
        f"{1000 * m.cpu / cases:6.3f} ms/case  peak RSS {m.maxrss_mib:6.0f} MiB "
        f"(polled {m.polled_rss_mib:.0f})  case time / (workers x wall) "
        f"{share_text(m.case_share(workers[mode]))}"
        for mode, m in measured.items()
    ]
    busy = gold.busy_percent
    occupied = gold.occupied_percent
    cpu_ms = 1000 * gold.cpu / cases
    wall_ratio = ratio(gold.wall, xdist.wall)
    rss_ratio = ratio(gold.maxrss_mib, plain.maxrss_mib)
    goals = [
        f"1 throughput: gold/xdist wall {wall_ratio:.2f} (goal <= 1.00): "
        f"{verdict(wall_ratio <= 1.0)}; gold/plain {ratio(gold.wall, plain.wall):.2f}",
        f"1 throughput: engines occupied {share_text(occupied)} (their time running "
        f"batches over their time in the run; goal >= {GOAL_BUSY_PERCENT:.0f}%: they never "
        f"wait for the controller): "
        f"{verdict(occupied is not None and occupied >= GOAL_BUSY_PERCENT)}",
        f"1 throughput: engines busy {share_text(busy)} (the cases' own durations over "
        f"engines x wall; pytest's per-case overhead counts as idle); the same measure for "
        f"plain pytest {share_text(plain.case_share(1))}, xdist "
        f"{share_text(xdist.case_share(engines))}",
        f"1 throughput: controller CPU {cpu_ms:.3f} ms/case (goal <= {GOAL_CPU_MS_PER_CASE} "
        f"at 10^6 x pass on 8 engines; here {cases} on {engines}): "
        f"{verdict(cpu_ms <= GOAL_CPU_MS_PER_CASE)}",
        f"2 memory: gold/plain controller peak RSS {rss_ratio:.2f} "
        f"({gold.maxrss_mib:.0f} / {plain.maxrss_mib:.0f} MiB; goal <= {GOAL_RSS_RATIO} at "
        f"200,000 cases): {verdict(rss_ratio <= GOAL_RSS_RATIO)}",
    ]
    return rows, goals


# -- --million ----------------------------------------------------------------------


def part_million(root: Path, cases: int, engines: int, gold_args: list[str], timeout: float):
    print(f"--million: {cases} x pass on {engines} engines", flush=True)
    directory = write_suite(
        root / "million", {"conftest.py": RUSAGE_CONFTEST, "test_pass.py": pass_tests(cases)}
    )
    args = ["test_pass.py", "-q", "-p", "no:cacheprovider", "--gold"]
    args += ["--gold-engines", str(engines), *gold_args]
    gold = measure(args, directory, cases, timeout, f"gold: pytest {' '.join(args)}")
    cpu_ms = 1000 * gold.cpu / cases
    worker = gold.workers_maxrss_mib or gold.children_peak_mib.get("workers", 0.0)
    engine = gold.children_peak_mib.get("engines", 0.0)
    scale = MILLION_CASES / cases
    # An engine process does not collect: its size does not grow with the cases.
    total_gib = scale * (gold.maxrss_mib + MILLION_ENGINES * worker) + MILLION_ENGINES * engine
    total_gib /= 1024
    rows = [
        f"{cases} x pass on {engines} engines: wall {gold.wall:.1f} s, controller CPU "
        f"{gold.cpu:.1f} s (getrusage at exit, collection included; system "
        f"{gold.system_cpu:.1f} s, {gold.major_faults} major page faults)",
        f"peak RSS: controller {gold.maxrss_mib:.0f} MiB (polled {gold.polled_rss_mib:.0f}), "
        f"one worker {worker:.0f} MiB (ru_maxrss at its exit "
        f"{'?' if gold.workers_maxrss_mib is None else f'{gold.workers_maxrss_mib:.0f}'}, "
        f"polled {gold.children_peak_mib.get('workers', 0.0):.0f}), one engine {engine:.0f} MiB",
        f"at {MILLION_CASES} cases, controller + {MILLION_ENGINES} x (worker + engine): "
        f"{total_gib:.1f} GiB (controller and workers scaled in proportion to the cases, "
        "an upper bound)",
    ]
    goals = [
        f"1 throughput: controller CPU {cpu_ms:.3f} ms/case (goal <= {GOAL_CPU_MS_PER_CASE} "
        f"at 10^6 x pass on 8 engines; here {cases} on {engines}): "
        f"{verdict(cpu_ms <= GOAL_CPU_MS_PER_CASE)}",
    ]
    return rows, goals


def part_memory(root: Path, cases: int, gold_args: list[str], timeout: float):
    """Goal 2 as issue 12 states it: plain against gold on 2 and on 8 engines."""
    print(f"part 2 (--memory): {cases} cases recording one value", flush=True)
    directory = write_suite(
        root / "memory",
        {"conftest.py": RUSAGE_CONFTEST, "test_scale.py": recording_tests(cases)},
    )
    base = ["test_scale.py", "-q", "-p", "no:cacheprovider"]
    plain = measure([*base, "--junitxml=plain.xml"], directory, cases, timeout, "plain")
    golds = {}
    for engines in MEMORY_ENGINES:
        results = directory / f"gold-{engines}.jsonl"
        args = [*base, "--gold", "--gold-engines", str(engines), "--junitxml=gold.xml"]
        args += [f"--gold-results={results.name}", *gold_args]
        golds[engines] = measure(args, directory, cases, timeout, f"gold E={engines}")
        results.unlink(missing_ok=True)
    rows = [
        f"{m.label:<8} peak RSS {m.maxrss_mib:6.0f} MiB (polled {m.polled_rss_mib:.0f}), "
        f"wall {m.wall:.1f} s, controller CPU {m.cpu:.1f} s"
        for m in (plain, *golds.values())
    ]
    fewest, most = golds[min(golds)], golds[max(golds)]
    goals = [
        f"2 memory: gold E={engines}/plain controller peak RSS "
        f"{ratio(m.maxrss_mib, plain.maxrss_mib):.2f} ({m.maxrss_mib:.0f} / "
        f"{plain.maxrss_mib:.0f} MiB; goal <= {GOAL_RSS_RATIO}): "
        f"{verdict(m.maxrss_mib <= GOAL_RSS_RATIO * plain.maxrss_mib)}"
        for engines, m in golds.items()
    ]
    engines_ratio = ratio(most.maxrss_mib, fewest.maxrss_mib)
    goals.append(
        f"2 memory: gold E={max(golds)} / gold E={min(golds)} peak RSS {engines_ratio:.2f} "
        f"(flat per engine count, goal <= {GOAL_ENGINES_RSS_RATIO}): "
        f"{verdict(engines_ratio <= GOAL_ENGINES_RSS_RATIO)}"
    )
    return rows, goals


# -- part 5 --------------------------------------------------------------------------


@contextmanager
def daemon_cluster(profile_dir: Path, engines: int) -> Iterator[Path]:
    """``ipcluster start --daemonize`` in ``profile_dir``; yields the connection file."""
    marker = RunMarker(MARKER_VARIABLE)
    env = marker.environment()
    ipcluster = [sys.executable, "-m", "ipyparallel.cluster", "--profile-dir", str(profile_dir)]
    profile_dir.mkdir(parents=True)
    started = time.perf_counter()
    try:
        subprocess.run(
            [*ipcluster[:3], "start", *ipcluster[3:], "-n", str(engines), "--daemonize"],
            env=env,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=CLUSTER_START_SECONDS,
        )
        connection_file = profile_dir / "security" / "ipcontroller-client.json"
        deadline = time.monotonic() + CLUSTER_START_SECONDS
        while not connection_file.exists():
            if time.monotonic() > deadline:
                raise BenchError(f"5: no {connection_file} after {CLUSTER_START_SECONDS} s")
            time.sleep(0.2)
        import ipyparallel as ipp

        client = ipp.Client(str(connection_file))
        try:
            client.wait_for_engines(engines, timeout=CLUSTER_START_SECONDS)
        finally:
            client.close()
        print(
            f"  ipcluster of {engines} engines up in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        yield connection_file
    finally:
        subprocess.run(
            [*ipcluster[:3], "stop", *ipcluster[3:]],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=CLUSTER_START_SECONDS,
            check=False,
        )
        if marker.stop_leftovers("5 cluster"):
            raise BenchError("5: processes of the cluster could not be stopped")


def part_latency(root: Path, cases: int, gold_args: list[str], timeout: float):
    print(f"part 5: {cases} x pass on a running {LATENCY_ENGINES}-engine cluster", flush=True)
    directory = write_suite(
        root / "latency", {"conftest.py": RUSAGE_CONFTEST, "test_pass.py": pass_tests(cases)}
    )
    base = ["test_pass.py", "-q", "-p", "no:cacheprovider"]
    with daemon_cluster(root / "profile", LATENCY_ENGINES) as connection_file:
        gold = [*base, "--gold", "--gold-connection-file", str(connection_file), *gold_args]
        first = measure(gold, directory, cases, timeout, "gold, first run on the cluster")
        time.sleep(STANDBY_WAIT_SECONDS)
        again = measure(gold, directory, cases, timeout, "gold, run again")
    xdist_args = [*base, "-n", str(LATENCY_ENGINES)]
    xdist = measure(xdist_args, directory, cases, timeout, f"xdist -n {LATENCY_ENGINES}")
    rows = [
        f"{m.label:<32} wall {m.wall:6.2f} s  gold/xdist {ratio(m.wall, xdist.wall):.2f}"
        for m in (first, again)
    ] + [f"{xdist.label:<32} wall {xdist.wall:6.2f} s"]
    goals = [
        f"5 latency: gold ({label})/xdist {ratio(m.wall, xdist.wall):.2f} "
        f"(goal <= {GOAL_LATENCY_RATIO}): {verdict(m.wall <= GOAL_LATENCY_RATIO * xdist.wall)}"
        for label, m in (("first run", first), ("run again", again))
    ]
    return rows, goals


# -- main ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=None, help="part 1+2 cases (100,000)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CASES} cases")
    parser.add_argument("--engines", type=int, default=2, help="E of parts 1+2 (default 2)")
    parser.add_argument("--latency-cases", type=int, default=LATENCY_CASES)
    parser.add_argument("--only", default="1,5", help="parts to run: 1 (with 2), 5")
    parser.add_argument(
        "--million",
        action="store_true",
        help=f"only goal 1's {MILLION_CASES} x pass (--cases to change it) on "
        "--million-engines engines, with the peak RSS of the controller and of a worker",
    )
    parser.add_argument(
        "--million-engines", type=int, default=MILLION_ENGINES, help="default %(default)s"
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help=f"goal 2 alone: plain and gold on {MEMORY_ENGINES} engines, "
        f"{MEMORY_CASES} cases unless --cases",
    )
    parser.add_argument(
        "--gold-arg", action="append", default=[], help="an extra argument of the gold runs"
    )
    add_timeout_option(parser, 3600.0)
    args = parser.parse_args(argv)
    check_repeat_and_timeout(parser, args)
    if args.million and args.memory:
        parser.error("--million and --memory are separate runs: give one of them")
    default_cases = MEMORY_CASES if args.memory else DEFAULT_CASES
    args.cases = args.cases or (
        MILLION_CASES if args.million else QUICK_CASES if args.quick else default_cases
    )
    args.parts = {"million"} if args.million else {part.strip() for part in args.only.split(",")}
    if args.million and args.million_engines < 1:
        parser.error("--million-engines must be positive")
    if not args.million and not args.parts <= {"1", "2", "5"}:
        parser.error("--only takes 1 and/or 5")
    if args.cases < 1 or args.engines < 1:
        parser.error("--cases and --engines must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    parts = f"parts {','.join(sorted(args.parts))}: {args.cases} cases on E={args.engines}, "
    parts += f"{args.latency_cases} x pass on {LATENCY_ENGINES}"
    if args.memory:
        parts = f"part 2 (--memory): {args.cases} cases, plain and gold E={MEMORY_ENGINES}"
    print_setup(f"{parts}; gold extra args {args.gold_arg}")
    rows: list[str] = []
    goals: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root = Path(tmp)
        try:
            if args.million:
                rows, goals = part_million(
                    root, args.cases, args.million_engines, args.gold_arg, args.timeout
                )
            elif args.memory:
                new_rows, new_goals = part_memory(root, args.cases, args.gold_arg, args.timeout)
                rows += new_rows
                goals += new_goals
            elif args.parts & {"1", "2"}:
                new_rows, new_goals = part_throughput(
                    root, args.cases, args.engines, args.gold_arg, args.timeout
                )
                rows += new_rows
                goals += new_goals
            if "5" in args.parts and not args.memory:
                new_rows, new_goals = part_latency(
                    root, args.latency_cases, args.gold_arg, args.timeout
                )
                rows += new_rows
                goals += new_goals
        except BenchError as error:
            print(f"\nERROR: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return interrupted()
    print()
    for line in [*rows, "", *goals]:
        print(line)
    print_leftover_notes()
    print_load_at_end(f"{time.perf_counter() - started:.0f} s in all; {os.cpu_count()} CPUs; ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
