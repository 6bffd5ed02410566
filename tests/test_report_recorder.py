"""The --gold-report plugin's bookkeeping, fed through its hooks without a cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_gold.protocol.messages import EngineInfo
from pytest_gold.report.options import ReportSettings
from pytest_gold.report.recorder import CampaignRecorder
from pytest_gold.report.redraw import Redrawer
from tests.reportdata import campaign_records, write_log

ENGINE = EngineInfo(
    engine_id=3, host="gold4", pid=1, python="3", executable=sys.executable, platform="linux"
)


class Item:
    def __init__(self, nodeid: str, **params: Any) -> None:
        self.nodeid = nodeid
        self.callspec = SimpleNamespace(params=params) if params else None


def make_recorder(tmp_path: Path, durations: dict[str, float] | None = None) -> CampaignRecorder:
    cache = SimpleNamespace(get=lambda key, default: durations or default)
    config = SimpleNamespace(
        getoption=lambda name: None,
        invocation_params=SimpleNamespace(args=("--gold", "sims/"), dir=tmp_path),
        pluginmanager=SimpleNamespace(get_plugin=lambda name: None),
        get_verbosity=lambda: 0,
        cache=cache,
    )
    settings = ReportSettings(report=None, log=tmp_path / "s.events.jsonl", interval=30)
    recorder = CampaignRecorder(config, settings, "a cluster", "gold")
    items = [
        Item("t.py::test_bt[1-snow]", ch=1, surface="snow"),
        Item("t.py::test_x"),
        Item("t.py::test_y"),
    ]
    session = SimpleNamespace(
        config=SimpleNamespace(option=SimpleNamespace(collectonly=False)), items=items
    )
    recorder.pytest_collection_finish(session)
    recorder.pytest_gold_cluster_ready(engines=[ENGINE])
    return recorder


def report(
    nodeid: str,
    when: str,
    outcome: str = "passed",
    start: float = 0.0,
    stop: float = 0.0,
    longrepr: Any = None,
) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid=nodeid,
        location=("t.py", 1, nodeid),
        keywords={},
        outcome=outcome,
        longrepr=longrepr,
        when=when,
        duration=stop - start,
        start=start,
        stop=stop,
    )


def records(recorder: CampaignRecorder, event: str) -> list[dict[str, Any]]:
    recorder.pytest_unconfigure()
    lines = recorder.settings.log.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


def test_run_record_holds_the_grid_axes_and_the_cluster(tmp_path: Path):
    (run,) = records(make_recorder(tmp_path), "run")
    assert run["total"] == 3 and run["cluster"] == "a cluster" and run["profile"] == "gold"
    assert run["axes"]["t.py::test_bt"] == {"ch": ["1"], "surface": ["snow"]}
    assert run["command"] == "pytest --gold sims/"


def test_case_times_come_from_the_worker_or_from_the_controller_for_made_up_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    recorder = make_recorder(tmp_path)
    clock = iter([100.0, 110.0, 200.0, 260.0])
    monkeypatch.setattr("pytest_gold.report.recorder.time.time", lambda: next(clock))
    nodeid = "t.py::test_bt[1-snow]"
    recorder.pytest_gold_case_scheduled(nodeid=nodeid, engine=ENGINE)  # at 100
    reports = [
        report(nodeid, "setup", start=101, stop=102),
        report(nodeid, "call", start=102, stop=105),
        report(nodeid, "teardown", start=105, stop=106),
    ]
    recorder.pytest_gold_case_finished(nodeid=nodeid, reports=reports, engine=ENGINE)  # at 110
    recorder.pytest_gold_case_scheduled(nodeid="t.py::test_x", engine=ENGINE)  # at 200
    made_up = [
        report("t.py::test_x", "setup", start=201, stop=202),  # real: it started
        report(
            "t.py::test_x",
            "call",
            "failed",
            longrepr="pytest-gold: t.py::test_x "
            "exceeded its time limit of 50 s on gold4:e3 and was stopped",
        ),
        report("t.py::test_x", "teardown"),
    ]
    recorder.pytest_gold_case_finished(nodeid="t.py::test_x", reports=made_up, engine=ENGINE)
    first, second = records(recorder, "case")
    assert (first["start"], first["stop"], first["params"]) == (
        101,
        106,
        {"ch": "1", "surface": "snow"},
    )
    assert (second["start"], second["stop"]) == (201, 260)  # stopped when it was reported
    assert second["message"].startswith("pytest-gold: t.py::test_x exceeded its time limit")
    assert "message" not in first


def test_eta_uses_recorded_durations_and_this_runs_mean(tmp_path: Path):
    recorder = make_recorder(tmp_path, durations={"t.py::test_x": 30.0})
    assert recorder.eta() is None  # nothing finished: no mean yet
    nodeid = "t.py::test_y"
    reports = [report(nodeid, "call", start=0.5, stop=10.5)]
    recorder.pytest_gold_case_finished(nodeid=nodeid, reports=reports, engine=ENGINE)
    # Left: test_x (30 s recorded) and test_bt (unknown: this run's mean, 10 s); 1 engine.
    assert recorder.eta() == pytest.approx(40.0)
    recorder.pytest_gold_engine_lost(engine=ENGINE, cases=[])
    assert recorder.eta() is None  # no engine left


def test_passed_before_cases_are_recorded_with_their_parameters(tmp_path: Path):
    recorder = make_recorder(tmp_path)
    resumed = report("t.py::test_bt[1-snow]", "call")
    resumed.gold_passed_before = True
    recorder.pytest_runtest_logreport(report=resumed)
    (case,) = records(recorder, "case")
    assert case == {
        "event": "case",
        "nodeid": "t.py::test_bt[1-snow]",
        "outcome": "passed-before",
        "params": {"ch": "1", "surface": "snow"},
    }


def test_lost_engine_record_and_running_batches(tmp_path: Path):
    recorder = make_recorder(tmp_path)
    for nodeid in ("t.py::test_x", "t.py::test_y"):
        recorder.pytest_gold_case_scheduled(nodeid=nodeid, engine=ENGINE)
    recorder.write_progress()
    recorder.pytest_gold_engine_lost(engine=ENGINE, cases=["t.py::test_x", "t.py::test_y"])
    recorder.write_progress()
    log = recorder.settings.log
    (lost,) = records(recorder, "lost")
    assert lost["cases"] == ["t.py::test_x", "t.py::test_y"] and lost["since"] <= lost["time"]
    progress = [json.loads(line) for line in log.read_text().splitlines() if '"progress"' in line]
    assert [p["running"] for p in progress] == [
        [
            {
                "host": "gold4",
                "engine": 3,
                "since": lost["since"],
                "cases": 2,
                "first": "t.py::test_x",
            }
        ],
        [],
    ]


@pytest.mark.parametrize(
    "exitstatus, shouldfail, done, state",
    [
        (pytest.ExitCode.OK, False, 3, "finished"),
        (pytest.ExitCode.TESTS_FAILED, "stopping after 1 failures", 1, "stopping after 1 failures"),
        (pytest.ExitCode.INTERRUPTED, False, 1, "interrupted"),
        (pytest.ExitCode.TESTS_FAILED, False, 1, "stopped early: 2 of 3 cases did not run"),
    ],
)
def test_end_state(tmp_path: Path, exitstatus, shouldfail, done, state):
    recorder = make_recorder(tmp_path)
    recorder.done = done
    session = SimpleNamespace(shouldfail=shouldfail, shouldstop=False)
    assert recorder.end_state(session, exitstatus) == state


def test_a_failing_redraw_is_told_once_until_one_works(tmp_path: Path):
    log = tmp_path / "run.events.jsonl"
    redrawer = Redrawer(log, tmp_path / "r.html", 30, lambda: None)
    redrawer.redraw()  # no log yet: the drawing process fails and says why
    warning = redrawer.warning()
    assert warning is not None and "was not rewritten: python -m pytest_gold report:" in warning
    assert "run.events.jsonl: no such file; the run goes on (next try in 30 s)" in warning
    redrawer.redraw()
    assert redrawer.warning() is None  # the same stretch of failures: said once
    write_log(log, campaign_records(20, hosts=1))
    redrawer.redraw()
    assert redrawer.problem is None and (tmp_path / "r.html").is_file()
    log.unlink()
    redrawer.redraw()
    assert redrawer.warning() is not None  # failing again after it worked: said again


def test_a_case_finishing_twice_is_recorded_once(tmp_path: Path):
    recorder = make_recorder(tmp_path)
    first = [report("t.py::test_x", "call", start=1, stop=2)]
    late = [report("t.py::test_x", "teardown", "failed", start=5, stop=6, longrepr="late")]
    recorder.pytest_gold_case_finished(nodeid="t.py::test_x", reports=first, engine=ENGINE)
    recorder.pytest_gold_case_finished(nodeid="t.py::test_x", reports=late, engine=ENGINE)
    assert recorder.done == 1
    assert [case["outcome"] for case in records(recorder, "case")] == ["passed"]
