"""Unit tests of the results table and resume state (pure: no cluster)."""

from __future__ import annotations

import csv
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_gold.policy import resume
from pytest_gold.records.results import build_row, case_outcome, writer_for


def _report(when: str, outcome: str, **extra) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid="t.py::test[a]",
        location=("t.py", 1, "test[a]"),
        keywords={},
        outcome=outcome,
        longrepr="boom\nmore" if outcome == "failed" else None,
        when=when,
        duration=0.5,
        **extra,
    )


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ([("setup", "passed"), ("call", "passed"), ("teardown", "passed")], "passed"),
        ([("setup", "passed"), ("call", "failed"), ("teardown", "passed")], "failed"),
        ([("setup", "failed"), ("teardown", "passed")], "error"),
        ([("setup", "passed"), ("call", "passed"), ("teardown", "failed")], "error"),
        ([("setup", "passed"), ("call", "failed"), ("teardown", "failed")], "failed"),
        ([("setup", "skipped"), ("teardown", "passed")], "skipped"),
    ],
)
def test_case_outcome(phases, expected):
    assert case_outcome([_report(when, outcome) for when, outcome in phases]) == expected


def test_xfail_outcomes():
    xfailed = [_report("call", "skipped", wasxfail="bug")]
    xpassed = [_report("call", "passed", wasxfail="bug")]
    assert case_outcome(xfailed) == "xfailed"
    assert case_outcome(xpassed) == "xpassed"


def test_row_columns_and_collisions():
    reports = [
        _report("setup", "passed"),
        _report("call", "failed", user_properties=[("gold_host", "gold3"), ("outcome", 1)]),
        _report("teardown", "passed", user_properties=[("gold_host", "gold3"), ("outcome", 1)]),
    ]
    row = build_row("t.py::test[a]", {"surface": "ocean", "obj": object}, reports, {"tb": 2.5})
    assert list(row)[:3] == ["nodeid", "surface", "obj"]
    assert row["obj"] == str(object)
    assert row["outcome"] == "failed" and row["message"] == "boom"
    assert row["host"] == "gold3" and row["duration"] == 1.5
    assert row["record_outcome"] == 1 and row["tb"] == 2.5


def test_csv_writer_adds_columns_as_they_appear(tmp_path):
    writer = writer_for(str(tmp_path / "r.csv"))
    writer.write({"nodeid": "a", "x": 1})
    writer.write({"nodeid": "b", "x": 2, "y": [1, 2]})
    writer.write({"nodeid": "c", "x": float("nan")})
    writer.close()
    with open(tmp_path / "r.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["nodeid"] for row in rows] == ["a", "b", "c"]
    assert rows[0]["y"] == "" and json.loads(rows[1]["y"]) == [1, 2]


def test_bad_results_path():
    with pytest.raises(ValueError, match="unknown format"):
        writer_for("out.txt")


@given(
    st.lists(st.sampled_from([f"c{i}" for i in range(20)]), unique=True),
    st.dictionaries(
        st.sampled_from([f"c{i}" for i in range(20)]),
        st.sampled_from(["passed", "failed", "error", "skipped", "xfailed", "passed-before"]),
    ),
    st.lists(st.sampled_from([f"c{i}" for i in range(20)]), unique=True),
)
def test_resume_state(previous, outcomes, selection):
    done = resume.update_done(previous, outcomes)
    for nodeid, outcome in outcomes.items():
        assert (nodeid in done) == (outcome in resume.DONE_OUTCOMES)
    for nodeid in set(previous) - set(outcomes):
        assert nodeid in done  # not reached in this run: its state is kept
    to_run, before = resume.partition(selection, done)
    assert sorted(to_run + before) == sorted(selection)
    assert set(before) <= set(done) and not set(to_run) & set(done)


def test_eta_and_formatting():
    from pytest_gold.controller.progress import Progress, format_duration, format_status

    assert format_duration(3 * 86400 + 3723) == "3d 1:02:03"
    progress = Progress(total=10)
    progress.add_engine("gold2")
    for i in range(6):
        progress.finished("gold2", "failed" if i == 0 else "passed", 2.0)
    snapshot = progress.snapshot(
        running=1, engines_busy=1, engines_available=1, queued_seconds=[2.0] * 4
    )
    assert snapshot.eta_seconds == 8.0
    text = format_status(snapshot)
    assert text.startswith("gold: 6/10 cases done (5 passed, 1 failed), 1 running, engines 1/1")
    assert text.endswith("ETA 0:00:08")


def test_nan_stays_a_float_in_rows_and_becomes_null_in_jsonl(tmp_path):
    import math

    import numpy as np

    row = build_row(
        "t.py::x",
        {},
        [_report("call", "passed")],
        {"v": np.float64("nan"), "l": [1.0, float("inf")]},
    )
    assert math.isnan(row["v"]) and row["l"][1] == math.inf
    writer = writer_for(str(tmp_path / "r.jsonl"))
    writer.write(row)
    writer.close()
    data = json.loads((tmp_path / "r.jsonl").read_text())
    assert data["v"] is None and data["l"] == [1.0, None]


@given(
    done=st.integers(0, 10**6),
    failed=st.integers(0, 10**6),
    running=st.integers(0, 10**4),
    eta=st.one_of(st.none(), st.floats(0, 10**7)),
    width=st.integers(1, 300),
)
def test_short_status_fits_and_keeps_progress_failures_and_eta(done, failed, running, eta, width):
    from pytest_gold.controller.progress import Snapshot, format_status, format_status_short

    failed = min(failed, done)
    snapshot = Snapshot(
        total=done + running + 5,
        done=done,
        passed=done - failed,
        failed=failed,
        running=running,
        engines_busy=min(running, 24),
        engines_available=24,
        elapsed_seconds=3725.0,
        eta_seconds=eta,
    )
    text = format_status_short(snapshot, width)
    assert len(text) <= width
    full = format_status(snapshot)
    if len(full) <= width:
        assert text == full
    elif width >= 64:  # an 80-column terminal: progress, failures and ETA stay
        assert f"{done}/{snapshot.total} done" in text
        assert f"{failed} failed" in text and "ETA " in text


def test_the_run_wall_time_ends_with_the_cases_not_with_the_cluster():
    """The per-host use of a run that stops its cluster: 6-8 % instead of ~40 % when the
    cluster's stop time counted."""
    from pytest_gold.controller.progress import Progress, format_host_table

    now = [100.0]
    progress = Progress(total=2, clock=lambda: now[0])
    now[0] = 110.0  # the cluster is up
    progress.start()
    progress.add_engine("gold2")
    now[0] = 120.0
    progress.finished("gold2", "passed", 4.0)
    progress.finished("gold2", "passed", 4.0)
    progress.stop()
    now[0] = 220.0  # stopping an SSH cluster takes its time
    assert progress.wall_seconds == 10.0
    snapshot = progress.snapshot(running=0, engines_busy=0, engines_available=1, queued_seconds=[])
    assert snapshot.elapsed_seconds == 10.0
    assert format_host_table(progress.hosts, progress.wall_seconds)[1].split()[5] == "80%"


def test_occupied_is_the_engines_time_running_batches_over_their_time_in_the_run():
    """``use`` counts the cases' own durations; ``occupied`` the time the engines ran
    batches (pytest's per-case overhead included): the rest they waited."""
    from pytest_gold.controller.progress import Progress, format_host_table

    now = [0.0]
    progress = Progress(total=4, clock=lambda: now[0])
    progress.add_engine("gold2", 0)  # during the first wait: counts from the start
    progress.add_engine("gold3", 1)
    now[0] = 10.0
    progress.start()
    progress.task_ran(0, 6.0)
    progress.task_ran(0, 3.0)
    progress.finished("gold2", "passed", 1.0)
    now[0] = 15.0
    progress.lose_engine("gold3", 1)  # in the run for 5 s, 4 of them running a batch
    progress.task_ran(1, 4.0)
    progress.finished("gold3", "passed", 1.0)
    progress.add_engine("gold3", 2)  # joins late: counts from then
    progress.task_ran(2, 5.0)
    now[0] = 20.0
    progress.stop()
    now[0] = 99.0  # (stopping the cluster does not count)
    assert progress.occupied() == {"gold2": 0.9, "gold3": 0.9}
    table = format_host_table(progress.hosts, progress.wall_seconds, progress.occupied())
    assert table[0].split()[5:7] == ["use", "occupied"]
    assert table[1].split()[5:7] == ["10%", "90%"]
    assert format_host_table(progress.hosts, progress.wall_seconds)[1].split()[6] == "-"
