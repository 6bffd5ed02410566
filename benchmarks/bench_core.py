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
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SLEEP_SECONDS = 0.5
TAIL_LINES = 40
#: Environment variable marking every process a benchmark run starts, so leftovers (for
#: example cluster engines that started their own session) can be found afterwards.
MARKER_VARIABLE = "BENCH_CORE_RUN_ID"
#: How long to wait for a finished run's descendants to exit before calling them leftovers.
LEFTOVER_GRACE_SECONDS = 10.0
#: One line per run that left processes behind, repeated after the table.
LEFTOVER_NOTES: list[str] = []


class BenchError(Exception):
    """A run failed; the message says which and shows its output tail."""


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
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every command K times and report the median (default 1).",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds after which one run is killed and counted as failed (default 600).",
    )
    args = parser.parse_args(argv)
    if args.engines < 1:
        parser.error("--engines must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
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


def write_suites(directory: Path, plan: Plan) -> None:
    # An empty ini makes the temp dir the rootdir, so no project config is picked up.
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / "test_trivial.py").write_text(
        textwrap.dedent(
            f"""\
            import pytest


            @pytest.mark.parametrize("i", range({plan.trivial_cases}))
            def test_trivial(i):
                assert i >= 0
            """
        )
    )
    (directory / "test_sleep.py").write_text(
        textwrap.dedent(
            f"""\
            import time

            import pytest


            @pytest.mark.parametrize("i", range({plan.sleep_cases}))
            def test_sleep(i):
                time.sleep({SLEEP_SECONDS})
            """
        )
    )


def command(test_file: str, mode: str, workers: int) -> list[str]:
    base = [sys.executable, "-m", "pytest", test_file, "-p", "no:cacheprovider", "-q"]
    if mode == "plain":
        return base
    if mode == "xdist":
        return [*base, "-n", str(workers)]
    if mode == "gold":
        return [*base, "--gold", "--gold-engines", str(workers)]
    raise ValueError(mode)


def child_environment(run_id: str) -> dict[str, str]:
    env = dict(os.environ)
    # Keep the user's pytest settings out of the measurement.
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        env.pop(name, None)
    env[MARKER_VARIABLE] = run_id
    return env


def marked_processes(run_id: str) -> list[int]:
    """Pids of live processes whose environment carries this run's marker (Linux only)."""
    needle = f"{MARKER_VARIABLE}={run_id}".encode()
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
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def stop_leftovers(run_id: str, label: str) -> list[int]:
    """Wait for the run's descendants to exit; stop and return any that do not."""
    deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
    pids = marked_processes(run_id)
    while pids and time.monotonic() < deadline:
        time.sleep(0.25)
        pids = marked_processes(run_id)
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
            pids = [pid for pid in pids if pid in marked_processes(run_id)]
        if not pids:
            break
    return pids


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tail(output: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(output.rstrip().splitlines()[-lines:])


def run_once(cmd: list[str], cwd: Path, expected: str, timeout: float, label: str) -> float:
    run_id = uuid.uuid4().hex
    # Output goes to a file, not a pipe: a descendant that outlives the run (and keeps the
    # pipe open) must not hold up the timing; the run ends when pytest's process exits.
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=child_environment(run_id),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout can stop all of it
        )
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(process.pid)
            process.wait()
        except BaseException:
            kill_group(process.pid)
            process.wait()
            stop_leftovers(run_id, label)
            raise
        elapsed = time.perf_counter() - started
        leftovers = stop_leftovers(run_id, label)
        log.seek(0)
        output = log.read()
    shown = " ".join(cmd[1:])
    if timed_out:
        raise BenchError(f"{label}: `{shown}` timed out after {timeout:.0f} s:\n{tail(output)}")
    if process.returncode != 0:
        raise BenchError(f"{label}: `{shown}` exited with {process.returncode}:\n{tail(output)}")
    if not re.search(rf"(?<!\d){re.escape(expected)}\b", output):
        raise BenchError(f"{label}: `{shown}` did not report {expected!r}:\n{tail(output)}")
    if leftovers:
        raise BenchError(
            f"{label}: processes {leftovers} outlived the run and could not be stopped"
        )
    return elapsed


def run_suite(
    suite: str, test_file: str, cases: int, workers: int, cwd: Path, plan: Plan
) -> list[Result]:
    results = []
    for mode in ("plain", "xdist", "gold"):
        cmd = command(test_file, mode, workers)
        times = []
        for attempt in range(1, plan.repeat + 1):
            label = f"{suite}/{mode} run {attempt}/{plan.repeat}"
            print(f"  {label} ...", end="", flush=True)
            seconds = run_once(cmd, cwd, f"{cases} passed", plan.timeout, label)
            print(f" {seconds:.2f} s", flush=True)
            times.append(seconds)
        results.append(Result(suite, mode, None if mode == "plain" else workers, tuple(times)))
    return results


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("inf")


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
    print(f"goal (b) gold within 2x ideal: {'yes' if yes_b else 'no'}")
    print(f"goal (a) gold within 3x xdist: {'yes' if yes_a else 'no'}")
    for note in LEFTOVER_NOTES:
        print(f"WARNING: {note}")


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    print(
        f"python {sys.executable}; trivial suite {plan.trivial_cases} cases on "
        f"N={plan.trivial_workers}; sleep suite {plan.sleep_cases} x {SLEEP_SECONDS} s on "
        f"N={plan.sleep_workers} (ideal {plan.sleep_ideal:.2f} s); repeat {plan.repeat}; "
        f"{os.cpu_count()} CPUs, {load_average()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        directory = Path(tmp)
        write_suites(directory, plan)
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
            print("\ninterrupted", file=sys.stderr)
            return 130
    report(plan, trivial, sleep)
    print(f"({load_average()} at the end; other load on the machine skews the times)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
