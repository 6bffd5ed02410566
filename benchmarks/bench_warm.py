"""Warm runs: attaching to a kept embedded cluster against starting a fresh one.

One generated suite (trivial cases), run as subprocesses:

- **cold**: ``pytest --gold --gold-engines N`` starts (and stops) an embedded cluster;
- **keep**: ``pytest --gold --gold-engines N --gold-keep-cluster`` once, which starts the
  cluster and leaves it running;
- **warm**: ``pytest --gold --gold-engines N`` again, which attaches to the kept cluster.

It prints the time to get a cluster (the ``started in X s`` / ``attached ... in X s`` of
each run's ``gold:`` line), the whole command's wall time, the ratios, and whether the
goal of issue 12 (attach in under 1 s) is met. The kept cluster lives in a temporary
``XDG_RUNTIME_DIR`` of the script's own and is stopped at the end with
``python -m pytest_gold cluster stop``; every process the runs start is tagged, and any
left afterwards is reported and killed.

Usage::

    python benchmarks/bench_warm.py [--engines N] [--cases C] [--repeat K] [--timeout S]

Stdlib only (and pytest-gold in the same Python).
"""

from __future__ import annotations

import argparse
import re
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
    print_load_at_end,
    print_setup,
    ratio,
    reports,
    stop_kept,
    tail,
    trivial_tests,
    write_suite,
    yes_no,
)

MARKER_VARIABLE = "BENCH_WARM_RUN_ID"
#: Issue 12, goal 4: the next run attaches to the kept cluster in under this.
ATTACH_GOAL_SECONDS = 1.0
STARTED = re.compile(r"^gold: embedded cluster on \S+(?:, kept for the next runs)?, started in "
                     r"([0-9.]+) s", re.MULTILINE)  # fmt: skip
ATTACHED = re.compile(r"^gold: attached to the kept embedded cluster on \S+ in ([0-9.]+) s",
                      re.MULTILINE)  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=2, help="engines (default 2)")
    parser.add_argument("--cases", type=int, default=50, help="trivial cases (default 50)")
    add_repeat_option(parser, "do the cold and the warm run")
    add_timeout_option(parser, 300.0)
    args = parser.parse_args(argv)
    check_repeat_and_timeout(parser, args)
    if args.engines < 1 or args.cases < 1:
        parser.error("--engines and --cases must be at least 1")
    return args


def run(
    args: Sequence[str], suite: Path, env: dict[str, str], timeout: float, expected: str
) -> tuple[float, str]:
    """``python -m pytest ARGS`` in ``suite``: its wall time and output (checked)."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=suite,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0 or not reports(completed.stdout, expected):
        raise BenchError(
            f"`pytest {' '.join(args)}` exited with {completed.returncode}:\n"
            f"{tail(completed.stdout)}"
        )
    return wall, completed.stdout


def seconds(pattern: re.Pattern[str], output: str) -> float:
    found = pattern.search(output)
    if found is None:
        raise BenchError(f"no line matching {pattern.pattern!r} in:\n{tail(output)}")
    return float(found.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    expected = f"{args.cases} passed"
    gold = ["--gold", f"--gold-engines={args.engines}", "-p", "no:cacheprovider"]
    print_setup(f"{args.cases} trivial cases, {args.engines} engines, {args.repeat} runs each")
    marker = RunMarker(MARKER_VARIABLE)
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as temp:
        runtime = Path(temp, "runtime")
        runtime.mkdir(mode=0o700)
        suite = write_suite(Path(temp, "suite"), {"test_trivial.py": trivial_tests(args.cases)})
        env = {**marker.environment(), "XDG_RUNTIME_DIR": str(runtime)}
        cold_start, cold_wall, warm_attach, warm_wall, plain_wall = [], [], [], [], []
        try:
            for attempt in range(args.repeat):
                print(f"  cold run {attempt + 1}/{args.repeat} ...", end="", flush=True)
                wall, output = run(gold, suite, env, args.timeout, expected)
                cold_wall.append(wall)
                cold_start.append(seconds(STARTED, output))
                print(f" {wall:.2f} s (cluster started in {cold_start[-1]:.2f} s)")
                wall, _ = run(["-p", "no:cacheprovider"], suite, env, args.timeout, expected)
                plain_wall.append(wall)
            print("  keep run ...", end="", flush=True)
            wall, output = run([*gold, "--gold-keep-cluster"], suite, env, args.timeout, expected)
            print(f" {wall:.2f} s (kept cluster started in {seconds(STARTED, output):.2f} s)")
            for attempt in range(args.repeat):
                print(f"  warm run {attempt + 1}/{args.repeat} ...", end="", flush=True)
                wall, output = run(gold, suite, env, args.timeout, expected)
                warm_wall.append(wall)
                warm_attach.append(seconds(ATTACHED, output))
                print(f" {wall:.2f} s (attached in {warm_attach[-1]:.3f} s)")
        except KeyboardInterrupt:
            stop_kept(suite, env, marker)
            return interrupted()
        except (BenchError, subprocess.TimeoutExpired) as error:
            stop_kept(suite, env, marker)
            print(f"\nERROR: {error}", file=sys.stderr)
            return 1
        left = stop_kept(suite, env, marker)
    median = statistics.median
    rows = [
        ("cluster ready", f"{median(cold_start):.3f} s", f"{median(warm_attach):.3f} s",
         f"{ratio(median(warm_attach), median(cold_start)):.3f}"),
        ("whole run (pytest command)", f"{median(cold_wall):.2f} s", f"{median(warm_wall):.2f} s",
         f"{ratio(median(warm_wall), median(cold_wall)):.2f}"),
    ]  # fmt: skip
    table = Table(("median", "cold", "warm", "warm/cold"), rows, "<>>>")
    print()
    for row in [table.header, *rows]:
        print(table.line(row))
    print(f"plain pytest (no --gold), whole run: {median(plain_wall):.2f} s")
    attach = median(warm_attach)
    print(
        f"goal: attach to the kept cluster in < {ATTACH_GOAL_SECONDS:g} s: "
        f"{'met' if attach < ATTACH_GOAL_SECONDS else 'not met'} ({attach:.3f} s)"
    )
    print(f"nothing left running after 'cluster stop': {yes_no(not left)}")
    print_load_at_end()
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
