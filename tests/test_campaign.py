"""End-to-end: campaign features (results table, resume) on a real cluster."""

from __future__ import annotations

import csv
import json
import signal
import xml.etree.ElementTree as ET

import pytest

from .inner import InnerPytest

# Tests that need a cluster are marked one by one: the others run in the fast lane.

SWEEP = """
    import numpy as np
    import pytest

    @pytest.mark.parametrize("channel", [183.3, 89.0])
    @pytest.mark.parametrize("surface", ["ocean", "land"])
    def test_bt(channel, surface, gold_record, record_property):
        gold_record["tb_k"] = np.float64(200.0 + channel / 10)
        gold_record["profile"] = np.arange(3)
        record_property("iterations", 7)
        assert not (surface == "land" and channel == 89.0), "too warm"
"""

#: SWEEP whose failing case passes once the file ``fixed`` exists.
FIXABLE_SWEEP = "    import os\n" + SWEEP.replace(
    "assert not", "assert os.path.exists('fixed') or not"
)


@pytest.mark.cluster
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_results_table_one_row_per_case(pytester: pytest.Pytester, gold_args, suffix):
    pytester.makepyfile(test_sweep=SWEEP)
    path = pytester.path / f"results{suffix}"
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider", f"--gold-results={path}")
    result.assert_outcomes(passed=3, failed=1)
    if suffix == ".csv":
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
        profile = json.loads(rows[0]["profile"])
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        profile = rows[0]["profile"]
    assert len(rows) == 4
    by_id = {row["nodeid"]: row for row in rows}
    bad = by_id["test_sweep.py::test_bt[land-89.0]"]
    assert bad["outcome"] == "failed"
    assert bad["message"] == "AssertionError: too warm"
    assert str(bad["surface"]) == "land" and float(bad["channel"]) == 89.0
    assert float(bad["tb_k"]) == pytest.approx(208.9)
    assert str(bad["iterations"]) == "7"
    assert profile == [0, 1, 2]
    assert all(row["host"] and str(row["engine"]) != "" for row in rows)
    assert list(rows[0])[:3] == ["nodeid", "surface", "channel"]


def _table(path) -> dict[str, dict]:
    """The rows of a results table by node id (CSV cells as text)."""
    if path.suffix == ".csv":
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
    elif path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    by_id = {row["nodeid"]: row for row in rows}
    assert len(by_id) == len(rows), "one row per case"
    return by_id


@pytest.mark.cluster
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_resume_into_the_same_table_keeps_every_value(pytester: pytest.Pytester, gold_args, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    pytester.makepyfile(test_sweep=FIXABLE_SWEEP)
    path = pytester.path / f"results{suffix}"
    pytester.runpytest(*gold_args, f"--gold-results={path}").assert_outcomes(passed=3, failed=1)
    first = _table(path)
    (pytester.path / "fixed").touch()
    result = pytester.runpytest(*gold_args, "--gold-resume", f"--gold-results={path}")
    result.stdout.fnmatch_lines(["*1 passed, 3 passed-before*"])
    assert "no recorded values" not in result.stdout.str()
    second = _table(path)
    assert sorted(second) == sorted(first)
    fixed = "test_sweep.py::test_bt[land-89.0]"
    for nodeid, row in first.items():
        if nodeid != fixed:
            assert second[nodeid] == row  # host, engine, duration, tb_k, profile: all kept
    assert first[fixed]["outcome"] == "failed" and second[fixed]["outcome"] == "passed"
    assert float(second[fixed]["tb_k"]) == pytest.approx(208.9)

    # Another table: it cannot have the earlier values, and the run says where they are.
    other = pytester.path / f"other{suffix}"
    elsewhere = pytester.runpytest(*gold_args, "--gold-resume", f"--gold-results={other}")
    elsewhere.stdout.fnmatch_lines(
        [
            f"gold: 4 passed-before cases have no recorded values in {other.name}: their rows "
            f"are in the results table of an earlier run: {path.name}. Resume with "
            f"--gold-results={path.name} to keep one table per campaign.",
        ]
    )
    assert {row["outcome"] for row in _table(other).values()} == {"passed-before"}


def test_results_and_record_hook_without_gold(pytester: pytest.Pytester):
    log = pytester.path / "hook.log"
    pytester.makeconftest(
        f"""
        def pytest_gold_record(config, report, record):
            with open({str(log)!r}, "a") as f:
                f.write(f"{{record['nodeid']}} {{record['outcome']}} {{record.get('tb_k')}}\\n")
        """
    )
    pytester.makepyfile(test_sweep=SWEEP)
    result = pytester.runpytest("-p", "no:cacheprovider", "--gold-results=out.jsonl")
    result.assert_outcomes(passed=3, failed=1)
    lines = sorted(log.read_text().splitlines())
    assert lines[0] == "test_sweep.py::test_bt[land-183.3] passed 218.33"
    assert len((pytester.path / "out.jsonl").read_text().splitlines()) == 4


def test_unknown_results_format_is_a_clear_error(pytester: pytest.Pytester):
    pytester.makepyfile(test_sweep=SWEEP)
    result = pytester.runpytest("--gold-results=out.xlsx")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --gold-results out.xlsx: unknown format '.xlsx'*"])


@pytest.mark.cluster
def test_resume_runs_only_what_did_not_pass(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_case(i):
            with open(f"ran-{i}", "a") as f:
                f.write("x")
            assert not (i == 4 and not os.path.exists("fixed"))
        """
    )
    pytester.runpytest(*gold_args).assert_outcomes(passed=5, failed=1)
    (pytester.path / "fixed").touch()
    result = pytester.runpytest(*gold_args, "--gold-resume", "-v", "--junitxml=out.xml")
    result.stdout.fnmatch_lines(
        [
            "*test_case[[]0[]] PASSED-BEFORE*",
            "gold: 5 cases passed in an earlier run and did not run again*",
            "*1 passed, 5 passed-before*",
        ]
    )
    assert result.ret == 0
    runs = {i: (pytester.path / f"ran-{i}").read_text() for i in range(6)}
    assert runs == {0: "x", 1: "x", 2: "x", 3: "x", 4: "xx", 5: "x"}
    props = [
        p.get("value")
        for p in ET.parse(pytester.path / "out.xml").getroot().iter("property")
        if p.get("name") == "gold_outcome"
    ]
    assert props == ["passed-before"] * 5
    everything_done = pytester.runpytest(*gold_args, "--gold-resume")
    everything_done.stdout.fnmatch_lines(["*6 passed-before*"])
    assert "gold: embedded cluster" not in everything_done.stdout.str()  # nothing to run


@pytest.mark.cluster
def test_resume_after_interruption_runs_the_rest(pytester: pytest.Pytester, leak_check):
    pytester.makepyfile(
        """
        import os
        import time
        import pytest

        @pytest.mark.parametrize("i", range(10))
        def test_case(i):
            if i >= 6 and not os.path.exists("go"):
                open(f"hanging-{i}", "w").close()
                time.sleep(600)
        """
    )
    # One case per task, in collection order: when 6 and 7 hang, 0..5 have finished.
    args = ["--gold-engines=2", "--gold-order=collection", "--gold-batch-seconds=0.000001"]
    with InnerPytest(pytester.path, "--gold", *args) as run:
        run.wait_for_files(pytester.path / "hanging-6", pytester.path / "hanging-7")
        run.send_signal(signal.SIGINT)
        run.finish()
    (pytester.path / "go").touch()
    result = pytester.runpytest_subprocess("--gold", "--gold-engines=2", "--gold-resume")
    result.stdout.fnmatch_lines(["*4 passed, 6 passed-before*"])


@pytest.mark.cluster
def test_progress_lines_status_file_and_per_host_summary(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.parametrize("i", range(12))
        def test_case(i):
            time.sleep(0.3)
            assert i != 7
        """
    )
    status = pytester.path / "status.json"
    result = pytester.runpytest(
        *gold_args,
        "-p",
        "no:cacheprovider",
        f"--gold-status-file={status}",
        "--gold-status-interval=0.5",
    )
    result.assert_outcomes(passed=11, failed=1)
    result.stdout.fnmatch_lines(
        [
            "gold: */12 cases done (* passed, * failed), * running, engines */2 busy, "
            "elapsed 0:00:0*, ETA *",
            "*gold: per-host summary*",
            "host*engines*cases*failed*busy*use*occupied",
            "* 2 * 12 * 1 * 0:00:0*%",
        ]
    )
    data = json.loads(status.read_text())
    assert data["state"] == "finished"
    assert (data["total"], data["done"], data["passed"], data["failed"]) == (12, 12, 11, 1)
    assert data["engines_available"] == 2 and data["running"] == 0
    assert sum(host["cases"] for host in data["hosts"].values()) == 12


@pytest.mark.cluster
def test_output_is_streamed_live_with_s(pytester: pytest.Pytester, leak_check):
    """The case waits for the test to have *seen* its line: only live output gets it."""
    go = pytester.path / "go"
    pytester.makepyfile(
        f"""
        import os
        import time

        def test_talks():
            print("waiting for go", flush=True)
            deadline = time.monotonic() + 60
            while not os.path.exists({str(go)!r}):
                assert time.monotonic() < deadline, "the output was not streamed in time"
                time.sleep(0.1)
            print("got go", flush=True)
        """
    )
    with InnerPytest(pytester.path, "--gold", "--gold-engines=1", "-s") as run:
        line = run.read_until("waiting for go")
        assert line.startswith("[") and ":e0] waiting for go" in line, line
        go.touch()
        returncode = run.finish()
    assert returncode == 0, run.output
    assert ":e0] got go" in run.output


@pytest.mark.cluster
def test_the_controller_keeps_no_finished_task(pytester: pytest.Pytester, gold_args):
    """A campaign's memory must not grow with its tasks: once replayed, a task's result
    is gone from the client (ipyparallel kept up to 128 of them in a cache)."""
    import gc

    from ipyparallel.client.asyncresult import AsyncResult

    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(200))
        def test_case(i):
            pass
        """
    )
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider", "--gold-batch-seconds=0.0001")
    result.assert_outcomes(passed=200)
    gc.collect()
    alive = [obj for obj in gc.get_objects() if isinstance(obj, AsyncResult)]
    assert len(alive) < 20, f"{len(alive)} finished tasks are still held"


@pytest.mark.cluster
def test_per_host_use_ends_when_the_cases_end(pytester: pytest.Pytester, leak_check):
    """The run stops its embedded cluster after the cases: that time is not the engines'.
    The summary's use must be computed over the same wall time as the final status."""
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_case(i):
            time.sleep(0.2)
        """
    )
    status = pytester.path / "status.json"
    result = pytester.runpytest_subprocess(
        "--gold", "--gold-engines=1", "-p", "no:cacheprovider", f"--gold-status-file={status}"
    )
    result.assert_outcomes(passed=4)
    data = json.loads(status.read_text())
    (host,) = data["hosts"]
    tally = data["hosts"][host]
    use = 100 * tally["busy_seconds"] / (tally["engines"] * data["elapsed_seconds"])
    result.stdout.fnmatch_lines([f"{host} * 1 * 4 * 0 * 0:00:0* {use:.0f}% *%"])
