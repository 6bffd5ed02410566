"""Stress: hundreds of short ``--gold`` runs of a trivial 4-case suite, counting the runs
whose cases an engine did not find ("collected by the controller but not on engine").

Usage::

    python benchmarks/stress_collection.py [--runs N] [--churn] [--embedded] [--timeout S]

By default one embedded cluster of 2 engines is started for the whole stress and every
run attaches to it through its connection file (so the engines keep a worker started
ahead between runs); ``--embedded`` makes each run start its own cluster instead.
``--churn`` creates and removes a ``setup.py`` in the suite's parent directory every few
milliseconds while the runs go on (without an ini file, it makes that directory the
rootdir): a worker that determined its rootdir itself (rather than taking the
controller's) then named the cases differently from the controller.

Needs pytest-gold importable (it starts the shared cluster). Exits non-zero if any run
failed; prints each failed run's output tail.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import (
    add_timeout_option,
    interrupted,
    print_load_at_end,
    print_setup,
    reports,
    run_pytest,
    tail,
)

#: Environment variable marking every process a run starts (leftovers are stopped).
MARKER_VARIABLE = "STRESS_COLLECTION_RUN_ID"
ENGINES = 2
CASES = 4
SUITE = f"""\
import pytest


@pytest.mark.parametrize("i", range({CASES}))
def test_x(i):
    pass
"""
#: The symptom counted separately.
NOT_COLLECTED = "was collected by the controller but not on engine"
#: How often --churn flips the parent directory's setup.py.
CHURN_SECONDS = 0.005


def churn(marker: Path, stop: threading.Event) -> None:
    """Create and remove ``marker`` until ``stop`` is set."""
    while not stop.is_set():
        marker.write_text("")
        time.sleep(CHURN_SECONDS)
        marker.unlink(missing_ok=True)
        time.sleep(CHURN_SECONDS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="number of runs (default 300)")
    parser.add_argument("--churn", action="store_true", help="flip a setup.py in the parent")
    parser.add_argument("--embedded", action="store_true", help="a cluster per run")
    add_timeout_option(parser, 300.0)
    args = parser.parse_args()
    print_setup(
        f"stress_collection: {args.runs} runs of {CASES} cases on {ENGINES} engines"
        f"{', a cluster per run' if args.embedded else ', one attached cluster'}"
        f"{', setup.py churn in the parent directory' if args.churn else ''}"
    )
    with tempfile.TemporaryDirectory(prefix="stress-collection-") as temp:
        parent = Path(temp)
        suite = parent / "suite"
        suite.mkdir()
        (suite / "test_x.py").write_text(SUITE)
        handle = None
        if args.embedded:
            where = [f"--gold-engines={ENGINES}"]
        else:
            from pytest_gold.launch.cluster import start_embedded

            handle = start_embedded(ENGINES, wait_seconds=120)
            handle.client.wait_for_engines(ENGINES, timeout=120)
            where = [f"--gold-connection-file={handle.connection_file}"]
        stop = threading.Event()
        churner = threading.Thread(target=churn, args=(parent / "setup.py", stop), daemon=True)
        if args.churn:
            churner.start()
        failed = not_collected = 0
        started = time.monotonic()
        try:
            for index in range(1, args.runs + 1):
                run = run_pytest(
                    ["--gold", *where, "-q", "-p", "no:cacheprovider"],
                    suite,
                    MARKER_VARIABLE,
                    args.timeout,
                    f"run {index}",
                )
                ok = run.returncode == 0 and reports(run.output, f"{CASES} passed")
                if not ok:
                    failed += 1
                    not_collected += NOT_COLLECTED in run.output
                    print(f"run {index} failed (exit {run.returncode}):\n{tail(run.output)}")
                if index % 25 == 0 or not ok:
                    print(
                        f"{index} runs, {failed} failed ({not_collected} with cases not "
                        f"found on an engine), {time.monotonic() - started:.0f} s",
                        flush=True,
                    )
        except KeyboardInterrupt:
            return interrupted()
        finally:
            stop.set()
            if args.churn:
                churner.join()
            if handle is not None:
                handle.close()
    print(f"total: {args.runs} runs, {failed} failed, {not_collected} with cases not found")
    print_load_at_end()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
