"""The campaign report's pure parts: the log, the model and what each section draws."""

from __future__ import annotations

import csv
import itertools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_gold.report import campaignlog, grid, views
from pytest_gold.report.model import (
    FAULT_CONTROLLER_LOST,
    FAULT_CRASH,
    FAULT_ENGINE_LOST,
    FAULT_TIME_LIMIT,
    KINDS_BY_SEVERITY,
    Campaign,
    Case,
    Engine,
    Running,
    clean_text,
    fault_kind,
    function_of,
    label,
)
from tests.reportdata import campaign_records, write_log

START = 1_800_000_000.0


def case(
    nodeid: str = "t.py::test[1]",
    outcome: str = "passed",
    start: float = START,
    seconds: float = 1.0,
    engine: int = 0,
    host: str = "h",
    **more,
) -> Case:
    return Case(nodeid, outcome, start, start + seconds, seconds, host, engine, **more)


@pytest.mark.parametrize(
    "message, kind",
    [
        (
            "pytest-gold: t.py::a exceeded its time limit of 2 s on h:e0 and was stopped",
            FAULT_TIME_LIMIT,
        ),
        ("pytest-gold: t.py::a crashed its worker on h:e0 (pid 3): signal 11", FAULT_CRASH),
        ("pytest-gold: engine lost: h:e1 (pid 9) died while running this case", FAULT_ENGINE_LOST),
        ("pytest-gold: the ipyparallel controller stopped answering (40 s", FAULT_CONTROLLER_LOST),
        # As the run words them now: the cause first (crash, time limit, lost engine).
        ("crashed its worker: killed by SIGSEGV (Segmentation fault) on h:e0 (pid 3)", FAULT_CRASH),
        ("exceeded its time limit of 2 s on h:e1 (pid 4) and was stopped", FAULT_TIME_LIMIT),
        ("engine lost: h:e1 (pid 9) died while running this case (1 time(s))", FAULT_ENGINE_LOST),
        ("AssertionError: crashed its worker: no", ""),
        ("AssertionError: pytest-gold: engine lost", ""),  # a case's own words: no fault
        ("AssertionError: brightness temperature", ""),
    ],
)
def test_fault_kind_from_pytest_gold_messages(message, kind):
    assert fault_kind(message) == kind
    failed = case(outcome="failed", message=message)
    assert failed.kind == (kind or "failed")
    assert case(outcome="passed", message=message).kind == "passed"


def test_text_with_undecodable_bytes_becomes_writable():
    text = b"snow \xff\xfe".decode("utf-8", "surrogateescape")
    cleaned = clean_text(text)
    cleaned.encode("utf-8")  # no UnicodeEncodeError
    assert cleaned.startswith("snow ") and "\\udcff" in cleaned
    assert clean_text("ch\u00e9") == "ch\u00e9"


def test_labels_and_functions():
    assert [label(v) for v in ("snow", 183.31, 3, True, None, [1, 2])] == [
        "snow",
        "183.31",
        "3",
        "true",
        "null",
        "[1, 2]",
    ]
    assert function_of("sims/t.py::TestC::test_bt[183.3-snow]") == "sims/t.py::TestC::test_bt"
    assert function_of("t.py::test_x[a::b]") == "t.py::test_x"  # '::' inside an id
    assert function_of("t.py::test_plain") == "t.py::test_plain"


def test_log_beside_report_or_status_file():
    assert campaignlog.log_path_beside(Path("/x/campaign.html")) == Path("/x/campaign.events.jsonl")
    assert campaignlog.log_path_beside(Path("status")) == Path("status.events.jsonl")


def test_torn_last_line_is_ignored_and_damage_counted():
    lines = ['{"event": "run", "time": 1}\n', "garbage\n", '{"event": "case", "nod']
    records, damaged = campaignlog.read_records(lines)
    assert records == [{"event": "run", "time": 1}]
    assert damaged == 1


def test_log_round_trip_keeps_every_case_and_engine(tmp_path: Path):
    records = campaign_records(300, hosts=2, engines_per_host=3)
    path = write_log(tmp_path / "c.events.jsonl", records)
    assert campaignlog.is_campaign_log(path)
    campaign = campaignlog.read_log(path)
    assert len(campaign.cases) == campaign.total == 300
    assert len(campaign.engines) == 6
    lost = [e for e in campaign.engines.values() if e.lost is not None]
    assert len(lost) == 1 and lost[0].lost_cases
    assert campaign.state == "finished"
    assert campaign.profile == "gold" and campaign.utc_offset == 3600.0


def test_writer_output_is_read_back_with_surrogates_and_without_end(tmp_path: Path):
    path = tmp_path / "run.events.jsonl"
    writer = campaignlog.CampaignLogWriter(path)
    odd = b"\xff".decode("utf-8", "surrogateescape")
    writer.write({"event": "run", "format": campaignlog.LOG_FORMAT, "time": START, "total": 2})
    writer.write({"event": "engine", "time": START, "host": "h", "engine": 0})
    writer.write(
        {
            "event": "case",
            "nodeid": f"t.py::test[{odd}]",
            "outcome": "failed",
            "start": START,
            "stop": START + 2,
            "host": "h",
            "engine": 0,
            "message": f"bad {odd}",
        }
    )
    writer.write(
        {
            "event": "progress",
            "time": START + 3,
            "done": 1,
            "eta": 5.0,
            "running": [
                {"host": "h", "engine": 0, "since": START + 2, "cases": 1, "first": "t.py::test[2]"}
            ],
        }
    )
    writer.close()
    campaign = campaignlog.read_log(path)
    assert campaign.state is None  # killed, or still running
    assert campaign.cases[0].nodeid == "t.py::test[\\udcff]"
    assert campaign.eta_seconds == 5.0
    assert [run.first for run in campaign.running] == ["t.py::test[2]"]
    assert campaign.updated == START + 3


# -- timeline ------------------------------------------------------------------------


def small_campaign() -> Campaign:
    campaign = Campaign(started=START, total=4)
    campaign.engines = {"h:e0": Engine("h", 0, START), "h:e1": Engine("h", 1, START + 5)}
    campaign.engines["h:e1"].lost = START + 8
    campaign.cases = [
        case("t.py::a", start=START, seconds=4, engine=0),
        case("t.py::b", start=START + 4, seconds=6, engine=0, outcome="failed"),
        case("t.py::c", start=START + 5, seconds=3, engine=1),
        Case("t.py::d", "passed-before"),
    ]
    campaign.running = [Running("h", 0, START + 10, 2, "t.py::e")]
    campaign.updated = START + 10
    return campaign


def test_timeline_one_bar_per_case_plus_running_and_markers():
    timeline = views.timeline(small_campaign(), now=START + 12)
    assert timeline.lanes == ["h:e0", "h:e1"]
    assert timeline.groups == 0
    bars = {bar.text: bar for bar in timeline.bars}
    assert set(bars) == {"t.py::a", "t.py::b", "t.py::c", "2 cases, the first: t.py::e"}
    assert bars["t.py::b"].kind == "failed"
    assert (
        bars["2 cases, the first: t.py::e"].left,
        bars["2 cases, the first: t.py::e"].right,
    ) == (
        START + 10,
        START + 12,
    )
    assert [(m.lane, m.what) for m in timeline.markers] == [("h:e1", "joined"), ("h:e1", "lost")]
    assert ("h:e1", START + 5, START + 8) in timeline.spans


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.floats(0.01, 100), st.booleans()), min_size=1, max_size=300
    ),
    st.integers(4, 60),
)
def test_aggregated_timeline_counts_every_case_once(cases, max_bars):
    campaign = Campaign(started=START)
    free = [START] * 6
    for index, (engine, seconds, failed) in enumerate(cases):
        campaign.cases.append(
            case(
                f"t.py::x[{index}]", "failed" if failed else "passed", free[engine], seconds, engine
            )
        )
        free[engine] += seconds
    max_notable = max_bars // 4
    timeline = views.timeline(campaign, now=max(free), max_bars=max_bars, max_notable=max_notable)
    assert sum(bar.cases for bar in timeline.bars) == len(cases)
    if len(cases) <= max_bars:
        assert timeline.groups == 0 and len(timeline.bars) == len(cases)
    else:
        # Within the budget (give or take one group per engine), failures kept single.
        assert len(timeline.bars) <= max_bars + 6
        singles = [bar for bar in timeline.bars if bar.cases == 1 and bar.kind == "failed"]
        assert len(singles) >= min(max_notable, sum(1 for *_, failed in cases if failed))
        for lane in timeline.lanes:  # groups of one engine do not overlap
            groups = sorted(
                (b.left, b.right)
                for b in timeline.bars
                if b.lane == lane and b.text.endswith(" cases")
            )
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(groups))


def test_large_campaign_is_aggregated_below_the_bar_limit():
    campaign = campaignlog.campaign_from_records(campaign_records(30_000))
    timeline = views.timeline(campaign, campaign.end)
    assert timeline.groups > 0
    assert len(timeline.bars) <= views.MAX_TIMELINE_BARS + len(timeline.lanes)
    assert sum(bar.cases for bar in timeline.bars) == 30_000 + 1  # and the one lost case


# -- utilisation, durations, failures ------------------------------------------------


def test_utilisation_counts_busy_and_available_engine_seconds():
    campaign = Campaign(started=START)
    campaign.engines = {"a:e0": Engine("a", 0, START), "a:e1": Engine("a", 1, START)}
    campaign.engines["a:e1"].lost = START + 50  # half the run
    campaign.cases = [case(start=START, seconds=100, engine=0, host="a")]
    use = views.utilisation(campaign, now=START + 100, bins=4)
    (host,) = use.totals
    assert host.available_seconds == pytest.approx(150)
    assert host.busy_seconds == pytest.approx(100)
    assert use.idle_seconds == pytest.approx(50)
    assert use.hosts["a"] == pytest.approx([0.5, 0.5, 1.0, 1.0])


def test_histogram_is_log_binned_and_counts_every_timed_case():
    cases = [
        case(seconds=s, outcome="failed" if s > 50 else "passed")
        for s in (0.01, 0.1, 1, 10, 100, 100)
    ]
    cases.append(Case("t.py::before", "passed-before"))  # not run: not counted
    histogram = views.duration_histogram(cases, bins=10)
    assert histogram.edges[0] == pytest.approx(0.01) and histogram.edges[-1] == pytest.approx(100)
    ratios = {round(b / a, 6) for a, b in zip(histogram.edges, histogram.edges[1:], strict=False)}
    assert len(ratios) == 1  # equal widths on a log axis
    assert sum(histogram.counts["passed"]) == 4 and histogram.counts["failed"][-1] == 2
    assert [c.nodeid for c in views.slowest(cases, 1)] == ["t.py::test[1]"]


def test_failures_keep_start_and_end_of_long_texts():
    text = "HEAD" + "x" * 100_000 + "TAIL"
    campaign = Campaign(
        cases=[case(outcome="failed", message="boom\nmore", longrepr=text), case("t.py::ok")]
    )
    rows, count = views.failures(campaign, budget=3000)
    assert count == 1 and rows[0]["message"] == "boom"
    assert rows[0]["longrepr"].startswith("HEAD") and rows[0]["longrepr"].endswith("TAIL")
    assert len(rows[0]["longrepr"]) < 3000
    assert re.search(r"\[\.\.\. \d+ characters left out \.\.\.\]", rows[0]["longrepr"])


# -- grid ----------------------------------------------------------------------------


def test_grid_keeps_collection_order_and_the_worst_kind_per_case():
    campaign = Campaign(
        axes={
            "t.py::test_bt": {
                "channel": ["23.8", "183.3"],
                "surface": ["ocean", "snow", "ice"],
                "sky": ["clear"],
            }
        }
    )
    crash = "pytest-gold: t.py::test_bt[183.3-snow] crashed its worker on h:e0 (pid 1): x"
    campaign.cases = [
        case(
            "t.py::test_bt[183.3-snow-clear]",
            "failed",
            message=crash,
            params={"channel": "183.3", "surface": "snow", "sky": "clear"},
        ),
        case(
            "t.py::test_bt[23.8-ice-clear]",
            params={"channel": "23.8", "surface": "ice", "sky": "clear"},
        ),
        case("t.py::test_plain"),
    ]
    (function,) = grid.grid(campaign)["functions"]
    assert function["args"] == ["channel", "surface", "sky"]
    assert function["values"][1] == ["ocean", "snow", "ice"]
    assert function["default"] == [0, 1]  # the two arguments with the most values
    kinds = KINDS_BY_SEVERITY
    assert function["cases"] == [[1, 1, 0, kinds.index("crash")], [0, 2, 0, kinds.index("passed")]]


# -- a campaign from a results table -------------------------------------------------


def test_campaign_from_results_places_cases_back_to_back(tmp_path: Path):
    path = tmp_path / "rt.csv"
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["nodeid", "channel", "outcome", "duration", "host", "engine", "message", "tb_k"]
        )
        writer.writerow(["t.py::t[1]", "1", "passed", "2.0", "h", "0", "", "271"])
        writer.writerow(["t.py::t[2]", "2", "failed", "3.0", "h", "0", "boom", ""])
        writer.writerow(["t.py::t[3]", "3", "passed", "1.0", "h", "1", "", "270"])
        writer.writerow(["t.py::t[4]", "4", "passed-before", "0", "", "", "", ""])
    campaign = campaignlog.campaign_from_results(campaignlog.read_results(path), 1000.0)
    by_id = {c.nodeid: c for c in campaign.cases}
    assert (by_id["t.py::t[1]"].start, by_id["t.py::t[2]"].stop) == (995.0, 1000.0)
    assert (by_id["t.py::t[3]"].start, by_id["t.py::t[3]"].stop) == (995.0, 996.0)
    assert by_id["t.py::t[2]"].params == {"channel": "2"}  # recorded columns are not params
    assert not by_id["t.py::t[4]"].placed
    assert campaign.axes == {"t.py::t": {"channel": ["1", "2", "3", "4"]}}
    assert campaign.notes and "no times" in campaign.notes[0]


def test_results_jsonl_rows_are_read(tmp_path: Path):
    path = tmp_path / "rt.jsonl"
    row = {
        "nodeid": "t.py::t[a]",
        "x": "a",
        "outcome": "passed",
        "duration": 1.0,
        "host": "h",
        "engine": 2,
        "message": "",
    }
    path.write_text(json.dumps(row) + "\n")
    (read,) = campaignlog.campaign_from_results(campaignlog.read_results(path), 10.0).cases
    assert (read.tag, read.params, read.stop) == ("h:e2", {"x": "a"}, 10.0)


@pytest.mark.parametrize(
    "sizes, axes",
    [
        ([10, 5000, 2], [0, 2]),  # an argument of 5000 values makes no readable axis
        ([3, 7, 5], [1, 2]),
        ([5000, 4000], [1, 0]),  # no readable one: the smallest first
        ([1, 8], [1, 0]),
        ([6], [0]),
    ],
)
def test_default_heatmap_axes(sizes, axes):
    assert grid.default_axes(sizes) == axes


def test_work_lost_with_an_engine_is_a_bar_and_counts_as_busy():
    campaign = Campaign(started=START)
    engine = campaign.engines["a:e0"] = Engine("a", 0, START, lost=START + 10)
    engine.lost_cases, engine.lost_since = ["t.py::x", "t.py::y"], START + 4
    (bar,) = views.timeline(campaign, now=START + 20).bars
    assert (bar.kind, bar.left, bar.right, bar.cases) == ("engine lost", START + 4, START + 10, 2)
    assert bar.text == "2 cases lost with the engine, the first: t.py::x"
    (host,) = views.utilisation(campaign, now=START + 20, bins=2).totals
    assert (host.available_seconds, host.busy_seconds) == (10, 6)


def test_lost_record_is_read_with_the_time_of_the_lost_work():
    campaign = campaignlog.campaign_from_records(
        [
            {"event": "engine", "time": START, "host": "a", "engine": 3},
            {
                "event": "lost",
                "time": START + 9,
                "host": "a",
                "engine": 3,
                "cases": ["t.py::x"],
                "since": START + 2,
            },
        ]
    )
    engine = campaign.engines["a:e3"]
    assert (engine.lost, engine.lost_since, engine.lost_cases) == (
        START + 9,
        START + 2,
        ["t.py::x"],
    )


def test_report_is_replaced_in_one_step(tmp_path: Path):
    path = tmp_path / "campaign.html"
    path.write_text("old")
    campaignlog.write_atomically(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["campaign.html"]  # no partial file left
