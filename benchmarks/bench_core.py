"""Wall-time benchmark of pytest-gold against plain pytest and pytest-xdist.

Two generated suites, each run three ways (plain ``pytest``, ``pytest -n N``,
``pytest --gold --gold-engines N``) as subprocesses, timing the whole command (interpreter
and cluster start-up included):

(a) ``test_trivial.py``: many trivial parametrized cases -- measures per-case overhead.
(b) ``test_sleep.py``: cases of ``time.sleep(0.5)`` -- measures how well the work spreads
    over N engines; the ideal makespan is ``cases * 0.5 / N``.

Usage::

    python benchmarks/bench_core.py [--engines N] [--quick] [--repeat K]

Stdlib only. Exits non-zero if any run fails, times out, or does not report the expected
number of passed cases; the goals printed at the end do not affect the exit code.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import (
    BenchError,
    add_repeat_option,
    add_timeout_option,
    check_repeat_and_timeout,
    interrupted,
    print_leftover_notes,
    print_load_at_end,
    print_setup,
    ratio,
    repeated,
    run_pytest,
    trivial_tests,
    write_suite,
    yes_no,
)

SLEEP_SECONDS = 0.5
#: Environment variable marking every process a benchmark run starts, so leftovers (for
#: example cluster engines that started their own session) can be found afterwards.
MARKER_VARIABLE = "BENCH_CORE_RUN_ID"


@dataclass(frozen=True)
class Plan:
    trivial_cases: int
    trivial_workers: int
    sleep_cases: int
    sleep_workers: int
    repeat: int
    timeout: float

    @property
    def sleep_ideal(self) -> float:
        return self.sleep_cases * SLEEP_SECONDS / self.sleep_workers


@dataclass(frozen=True)
class Result:
    suite: str
    mode: str
    workers: int | None
    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engines",
        type=int,
        default=2,
        help="xdist workers / gold engines for the trivial suite (default 2, the core count "
        "of the reference machine).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 200 trivial cases, 16 sleep cases on 4 workers/engines.",
    )
    add_repeat_option(parser, "run every command")
    add_timeout_option(parser, 600.0)
    args = parser.parse_args(argv)
    if args.engines < 1:
        parser.error("--engines must be at least 1")
    check_repeat_and_timeout(parser, args)
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        trivial_cases, sleep_cases, sleep_workers = 200, 16, 4
    else:
        trivial_cases, sleep_cases, sleep_workers = 2000, 48, 8
    return Plan(
        trivial_cases=trivial_cases,
        trivial_workers=args.engines,
        sleep_cases=sleep_cases,
        sleep_workers=sleep_workers,
        repeat=args.repeat,
        timeout=args.timeout,
    )


def write_suites(directory: Path, plan: Plan) -> Path:
    return write_suite(
        directory,
        {
            "test_trivial.py": trivial_tests(plan.trivial_cases),
            "test_sleep.py": f"""\
                import time

                import pytest


                @pytest.mark.parametrize("i", range({plan.sleep_cases}))
                def test_sleep(i):
                    time.sleep({SLEEP_SECONDS})
                """,
        },
    )


def command(test_file: str, mode: str, workers: int) -> list[str]:
    """The arguments of ``python -m pytest``."""
    base = [test_file, "-p", "no:cacheprovider", "-q"]
    if mode == "plain":
        return base
    if mode == "xdist":
        return [*base, "-n", str(workers)]
    if mode == "gold":
        return [*base, "--gold", "--gold-engines", str(workers)]
    raise ValueError(mode)


def run_once(args: list[str], cwd: Path, expected: str, timeout: float, label: str) -> float:
    run = run_pytest(args, cwd, MARKER_VARIABLE, timeout, label)
    run.check_output(expected, " ".join(["-m", "pytest", *args]))
    run.check_leftovers()
    return run.wall


def run_suite(
    suite: str, test_file: str, cases: int, workers: int, cwd: Path, plan: Plan
) -> list[Result]:
    results = []
    for mode in ("plain", "xdist", "gold"):
        cmd = command(test_file, mode, workers)
        times = []
        for _, label in repeated(plan.repeat, f"{suite}/{mode}"):
            seconds = run_once(cmd, cwd, f"{cases} passed", plan.timeout, label)
            print(f" {seconds:.2f} s", flush=True)
            times.append(seconds)
        results.append(Result(suite, mode, None if mode == "plain" else workers, tuple(times)))
    return results


def report(plan: Plan, trivial: list[Result], sleep: list[Result]) -> None:
    print()
    stat = "median" if plan.repeat > 1 else "wall"
    header = f"{'suite':<24} {'mode':<6} {'N':>3} {stat + ' [s]':>11}  ratios"
    print(header)
    print("-" * max(len(header), 72))
    by_mode_a = {r.mode: r.median for r in trivial}
    by_mode_b = {r.mode: r.median for r in sleep}
    ideal = plan.sleep_ideal
    ratios = {
        ("a", "gold"): f"gold/xdist {ratio(by_mode_a['gold'], by_mode_a['xdist']):.2f}  "
        f"gold/plain {ratio(by_mode_a['gold'], by_mode_a['plain']):.2f}",
        ("b", "xdist"): f"xdist/ideal {ratio(by_mode_b['xdist'], ideal):.2f}",
        ("b", "gold"): f"gold/ideal {ratio(by_mode_b['gold'], ideal):.2f}",
    }
    names = {
        "a": f"(a) trivial x{plan.trivial_cases}",
        "b": f"(b) sleep {SLEEP_SECONDS}s x{plan.sleep_cases}",
    }
    for key, results in (("a", trivial), ("b", sleep)):
        for r in results:
            workers = "-" if r.workers is None else str(r.workers)
            print(
                f"{names[key]:<24} {r.mode:<6} {workers:>3} {r.median:>11.2f}  "
                f"{ratios.get((key, r.mode), '')}".rstrip()
            )
    print(f"{'(b) ideal makespan':<24} {'':<6} {plan.sleep_workers:>3} {ideal:>11.2f}")
    if plan.repeat > 1:
        print(f"(medians of {plan.repeat} runs each)")
    print()
    yes_b = by_mode_b["gold"] <= 2 * ideal
    yes_a = by_mode_a["gold"] <= 3 * by_mode_a["xdist"]
    print(f"goal (b) gold within 2x ideal: {yes_no(yes_b)}")
    print(f"goal (a) gold within 3x xdist: {yes_no(yes_a)}")
    print_leftover_notes()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    print_setup(
        f"trivial suite {plan.trivial_cases} cases on N={plan.trivial_workers}; sleep suite "
        f"{plan.sleep_cases} x {SLEEP_SECONDS} s on N={plan.sleep_workers} (ideal "
        f"{plan.sleep_ideal:.2f} s); repeat {plan.repeat}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        directory = write_suites(Path(tmp) / "suite", plan)
        try:
            trivial = run_suite(
                "a",
                "test_trivial.py",
                plan.trivial_cases,
                plan.trivial_workers,
                directory,
                plan,
            )
            sleep = run_suite(
                "b", "test_sleep.py", plan.sleep_cases, plan.sleep_workers, directory, plan
            )
        except BenchError as error:
            print(" FAILED", flush=True)
            print(f"\nERROR: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return interrupted()
    report(plan, trivial, sleep)
    print_load_at_end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
