"""The lab cluster: start, stop, attach latency and makespan on 12 SSH engines (six hosts).

Builds the test suite's SSH rig (``tests/sshrig.py``: sshd on 127.0.0.2 .. 127.0.0.7 named
gold2 .. gold7, profiles made by ``python -m pytest_gold profile create``, 2 engines per
host) and reports:

- start: seconds from ``ipcluster start`` to all 12 engines registered, and stop: the
  wall time of ``ipcluster stop`` (goal: seconds, not minutes), with pytest-gold's SSH
  launcher, and with ``--compare-ipyparallel`` also with ipyparallel's own (the same
  profile with ``engine_launcher_class = "ssh"``, scp given the rig's ssh config);
- attach: seconds from launching ``python -m pytest`` to the end of collection, and from
  the end of collection to the first case dispatched (goal: under 1 s), against the
  running cluster (``pytest --gold --gold-profile=gold``);
- makespan: 48 x ``time.sleep(1)`` on the 12 engines, first dispatch to last result, over
  the ideal 48 x 1 / 12 = 4 s (goal: within 1.25x); and the whole run's wall time.

Needs sshd (``apt-get install -y openssh-server``) and runs as a user who may start it.
Everything it starts is stopped at the end, also on failure or Ctrl-C.

    python benchmarks/bench_lab.py [--repeat K] [--timeout S] [--compare-ipyparallel]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
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

#: ipyparallel's own launcher would otherwise fail to find the rig's hosts with scp.
STOCK_LAUNCHER = """
c.Cluster.engine_launcher_class = "ssh"
c.SSHLauncher.scp_args = ["-F", {ssh_config!r}]
"""
#: How long an ``ipcluster start`` process gets to exit after ``ipcluster stop``.
IPCLUSTER_EXIT_SECONDS = 60.0
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
    parser.add_argument(
        "--compare-ipyparallel",
        action="store_true",
        help="also start and stop the cluster with ipyparallel's own SSH launcher "
        "(minutes per run)",
    )
    args = parser.parse_args()
    check_repeat_and_timeout(parser, args)
    if not sshd_available():
        print("bench_lab needs sshd: apt-get install -y openssh-server", file=sys.stderr)
        return 2
    print_setup(f"{ENGINES} SSH engines on 6 loopback hosts, {CASES} x sleep({CASE_SECONDS:g})")
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp:
        rig = LabRig(Path(tmp) / "rig")
        launchers = ["pytest-gold", "ipyparallel"] if args.compare_ipyparallel else ["pytest-gold"]
        try:
            rig.start_sshd()
            cycles = {
                launcher: measure_start_stop(rig, launcher, args.repeat, args.timeout)
                for launcher in launchers
            }
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
    report(rows, cycles)
    print_load_at_end()
    return 0


def measure_start_stop(
    rig: LabRig, launcher: str, repeat: int, timeout: float
) -> list[dict[str, float]]:
    """``ipcluster start`` until every engine registered, then ``ipcluster stop``."""
    rows = []
    name = "cycle"
    for _, label in repeated(repeat, f"ipcluster start + stop ({launcher} launcher)"):
        profile = rig.create_profile(name)
        if launcher == "ipyparallel":
            with open(profile / "ipcluster_config.py", "a") as config:
                config.write(STOCK_LAUNCHER.format(ssh_config=str(rig.ssh_config)))
        ipcluster = str(Path(sys.executable).with_name("ipcluster"))
        started = time.monotonic()
        process = subprocess.Popen(
            [ipcluster, "start", f"--profile={name}", "--log-level=WARN"],
            env=rig.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_engines(profile, rig.engine_count, process, timeout)
            start = time.monotonic() - started
            begun = time.monotonic()
            subprocess.run(
                [ipcluster, "stop", f"--profile={name}"],
                env=rig.env,
                capture_output=True,
                timeout=timeout,
                check=True,
            )
            stop = time.monotonic() - begun
            process.wait(timeout=IPCLUSTER_EXIT_SECONDS)
        except (subprocess.SubprocessError, TimeoutError) as error:
            raise BenchError(f"{label}: {error}") from None
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            for leftover in rig.rig_processes(profile):
                leftover.kill()
        rows.append({"start": start, "stop": stop})
        print(f" start {start:.1f} s, stop {stop:.1f} s", flush=True)
    return rows


def wait_for_engines(
    profile: Path, count: int, process: subprocess.Popen[bytes], timeout: float
) -> None:
    import ipyparallel as ipp

    deadline = time.monotonic() + timeout
    connection = profile / "security" / "ipcontroller-client.json"
    while not connection.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            raise TimeoutError("the controller did not start")
        time.sleep(0.1)
    client = ipp.Client(str(connection), timeout=timeout)
    try:
        client.wait_for_engines(count, timeout=max(1.0, deadline - time.monotonic()))
    finally:
        client.close()


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


def report(rows: list[dict[str, float]], cycles: dict[str, list[dict[str, float]]]) -> None:
    def median(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    cycle_rows = []
    for launcher, measured in cycles.items():
        for key in ("start", "stop"):
            seconds = statistics.median(row[key] for row in measured)
            cycle_rows.append(
                (
                    f"ipcluster {key}, {ENGINES} engines on 6 hosts ({launcher} launcher)",
                    f"{seconds:.1f}",
                    "seconds" if launcher == "pytest-gold" else "",
                )
            )

    def against_ideal(key: str) -> str:
        return f"{median(key):.2f}  ({ratio(median(key), IDEAL_SECONDS):.2f}x ideal)"

    table = Table(
        ("measure", "seconds", "goal"),
        [
            *cycle_rows,
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
