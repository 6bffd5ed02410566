"""Reports drawn from made-up campaign logs and results tables, opened in Chromium."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from pytest_gold.cli.main import main
from pytest_gold.report import views
from tests.reportdata import campaign_records, write_log

pytestmark = pytest.mark.browser

#: More cases than the timeline draws one by one.
LARGE_CAMPAIGN = 30_000


def test_a_large_campaign_is_drawn_with_aggregated_bars(tmp_path: Path, open_report: Any):
    log = write_log(tmp_path / "big.events.jsonl", campaign_records(LARGE_CAMPAIGN))
    assert main(["report", str(log), "-o", str(tmp_path / "big.html")]) == 0
    report = open_report(tmp_path / "big.html")
    assert report.errors == [] and report.js("() => window.goldReport.problems") == []
    bars = report.js(
        """() => {
            const data = Bokeh.documents[0].get_model_by_name("timeline-bars").data;
            return {cases: [...data.cases], kind: [...data.kind]};
        }"""
    )
    assert 0 < len(bars["cases"]) <= views.MAX_TIMELINE_BARS + 24
    lost_with_engine = 1  # the made-up engine loss stands for one case
    assert sum(bars["cases"]) == LARGE_CAMPAIGN + lost_with_engine
    drawn = report.js(
        """() => {
            const model = Bokeh.documents[0].get_model_by_name("timeline-figure");
            return Bokeh.index.find_one(model).has_finished();
        }"""
    )
    assert drawn
    assert (
        "consecutive cases of an engine are drawn as one bar"
        in report.page.locator("#timeline").inner_text()
    )


def test_a_report_from_a_results_table_alone(tmp_path: Path, open_report: Any):
    table = tmp_path / "rt.csv"
    with open(table, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["nodeid", "ch", "surface", "outcome", "duration", "host", "engine", "message"]
        )
        for index, (ch, surface) in enumerate([(ch, s) for ch in (1, 2, 3) for s in "ab"]):
            failed = (ch, surface) == (3, "b")
            writer.writerow(
                [
                    f"t.py::test_bt[{ch}-{surface}]",
                    ch,
                    surface,
                    "failed" if failed else "passed",
                    1.5,
                    "gold2",
                    index % 2,
                    "AssertionError: too cold" if failed else "",
                ]
            )
    assert main(["report", str(table), "-o", str(tmp_path / "from-table.html")]) == 0
    report = open_report(tmp_path / "from-table.html")
    assert report.errors == []
    assert "Built from a results table" in report.page.locator("section#run").inner_text()
    assert report.page.locator("#results-link").get_attribute("href") == "rt.csv"
    assert report.page.locator("#failure-table tbody tr.failure").count() == 1
