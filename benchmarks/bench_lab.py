"""The lab cluster: attach latency and makespan on 12 SSH engines (six loopback hosts).

Builds the test suite's SSH rig (``tests/sshrig.py``: sshd on 127.0.0.2 .. 127.0.0.7 named
gold2 .. gold7, a profile made by ``python -m pytest_gold profile create``, 2 engines per
host, started with ``ipcluster start``), then runs ``pytest --gold --gold-profile=gold``
against the running cluster and reports, measured in the same runs:

- attach: seconds from launching ``python -m pytest`` to the end of collection, and from
  the end of collection to the first case dispatched (goal: under 1 s);
- makespan: 48 x ``time.sleep(1)`` on the 12 engines, first dispatch to last result, over
  the ideal 48 x 1 / 12 = 4 s (goal: within 1.25x); and the whole run's wall time.

Needs sshd (``apt-get install -y openssh-server``) and runs as a user who may start it.
Everything it starts is stopped at the end, also on failure or Ctrl-C.

    python benchmarks/bench_lab.py [--repeat K] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from harness import (
    BenchError,
    Table,
    add_repeat_option,
    add_timeout_option,
    check_repeat_and_timeout,
    interrupted,
    print_load_at_end,
    print_setup,
    ratio,
    repeated,
    run_pytest,
    write_suite,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.sshrig import LabRig, sshd_available

CASES = 48
CASE_SECONDS = 1.0
ENGINES = 12
IDEAL_SECONDS = CASES * CASE_SECONDS / ENGINES
TIMES_ENV = "BENCH_LAB_TIMES"

#: A conftest that writes when collection ended, and when the first case was dispatched
#: and the last one finished (pytest-gold's own hooks), as epoch seconds.
CONFTEST = f"""
import json, os, time

_times = {{}}

def pytest_collection_finish(session):
    _times["collected"] = time.time()

def pytest_gold_case_scheduled(config, nodeid, engine):
    _times.setdefault("first_dispatch", time.time())

def pytest_gold_case_finished(config, nodeid, reports, engine):
    _times["last_result"] = time.time()

def pytest_unconfigure(config):
    path = os.environ.get("{TIMES_ENV}")
    if path and not hasattr(config, "workerinput"):  # the controller, not a worker
        with open(path, "w") as out:
            json.dump(_times, out)
"""
SLEEPS = f"""
import time
import pytest

@pytest.mark.parametrize("case", range({CASES}))
def test_case(case):
    time.sleep({CASE_SECONDS})
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_repeat_option(parser, "each measurement")
    add_timeout_option(parser, 300)
    args = parser.parse_args()
    check_repeat_and_timeout(parser, args)
    if not sshd_available():
        print("bench_lab needs sshd: apt-get install -y openssh-server", file=sys.stderr)
        return 2
    print_setup(f"{ENGINES} SSH engines on 6 loopback hosts, {CASES} x sleep({CASE_SECONDS:g})")
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp:
        rig = LabRig(Path(tmp) / "rig")
        try:
            rig.start_sshd()
            rig.start_cluster()
            os.environ["IPYTHONDIR"] = str(rig.ipython_dir)
            suite = write_suite(
                Path(tmp) / "suite", {"conftest.py": CONFTEST, "test_sleeps.py": SLEEPS}
            )
            rows = measure(suite, Path(tmp) / "times.json", args.repeat, args.timeout)
        except KeyboardInterrupt:
            return interrupted()
        except BenchError as error:
            print(f"\n{error}", file=sys.stderr)
            return 1
        finally:
            rig.stop()
    report(rows)
    print_load_at_end()
    return 0


def measure(suite: Path, times_file: Path, repeat: int, timeout: float) -> list[dict[str, float]]:
    os.environ[TIMES_ENV] = str(times_file)
    rows = []
    for _, label in repeated(repeat, "attach + 48 x 1 s"):
        run = run_pytest(
            ["--gold", "--gold-profile=gold", "-q", "-p", "no:cacheprovider"],
            suite,
            "BENCH_LAB_RUN_ID",
            timeout,
            label,
        )
        run.check_output(f"{CASES} passed", "pytest --gold --gold-profile=gold")
        run.check_leftovers()
        times = json.loads(times_file.read_text())
        row = {
            "to_collected": times["collected"] - run.started_epoch,
            "collected_to_dispatch": times["first_dispatch"] - times["collected"],
            "makespan": times["last_result"] - times["first_dispatch"],
            "wall": run.wall,
        }
        rows.append(row)
        print(
            f" collected +{row['to_collected']:.2f} s, first dispatch "
            f"+{row['collected_to_dispatch']:.2f} s, makespan {row['makespan']:.2f} s",
            flush=True,
        )
    return rows


def report(rows: list[dict[str, float]]) -> None:
    def median(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    def against_ideal(key: str) -> str:
        return f"{median(key):.2f}  ({ratio(median(key), IDEAL_SECONDS):.2f}x ideal)"

    table = Table(
        ("measure", "seconds", "goal"),
        [
            ("launch -> collection done", f"{median('to_collected'):.2f}", ""),
            (
                "collection done -> first case dispatched",
                f"{median('collected_to_dispatch'):.2f}",
                "< 1 s",
            ),
            (
                f"makespan (first dispatch -> last result), ideal {IDEAL_SECONDS:g} s",
                against_ideal("makespan"),
                "<= 1.25x",
            ),
            (
                "whole run (wall)",
                against_ideal("wall"),
                "",
            ),
        ],
        "<>",
    )
    print()
    print(table.line(table.header))
    for row in table.rows:
        print(table.line(row))


if __name__ == "__main__":
    sys.exit(main())
