"""End-to-end: the campaign report of real ``--gold`` runs, opened in headless Chromium."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_gold.report.charts import KIND_COLORS
from tests.reportbrowser import ReportPage

pytestmark = [pytest.mark.cluster, pytest.mark.browser]

SWEEP = """
import pytest

@pytest.mark.parametrize("profile", range(10))
@pytest.mark.parametrize("surface", ["ocean", "land", "snow", "ice"])
@pytest.mark.parametrize("channel", [23.8, 89.0, 165.5, 183.31, 190.31])
def test_bt(channel, surface, profile):
    print(f"simulating {channel} GHz over {surface}, profile {profile}")
    if channel == 183.31 and surface == "snow":
        pytest.fail(f"brightness temperature below the snowpack limit (profile {profile})")
    assert not (channel == 23.8 and surface == "land" and profile == 7), (
        "radiance overflow in the ozone band"
    )
"""
SECTIONS = ["run", "timeline", "utilisation", "durations", "failures", "grid"]
FIGURES = ["timeline-figure", "utilisation-figure", "durations-figure", "grid-figure"]
RUN_SECONDS = 600


def hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory: pytest.TempPathFactory, connection_file: Path) -> Path:
    """A 200-case sweep (11 failures) run once on the session cluster with --gold-report."""
    directory = tmp_path_factory.mktemp("sweep")
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / "test_sweep.py").write_text(SWEEP)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--gold",
            f"--gold-connection-file={connection_file}",
            "--gold-report=out/campaign.html",
            "--gold-results=rt.csv",
            "-q",
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    assert "11 failed, 189 passed" in run.stdout, run.stdout + run.stderr
    return directory / "out" / "campaign.html"


def figure_view_finished(report: ReportPage, name: str) -> bool:
    return report.js(
        """name => {
            const model = Bokeh.documents[0].get_model_by_name(name);
            const view = model && Bokeh.index.find_one(model);
            return Boolean(view && view.has_finished());
        }""",
        name,
    )


def test_report_loads_offline_without_errors(sweep_report: Path, open_report: Any):
    report = open_report(sweep_report)
    assert report.errors == []
    assert report.blocked == []  # nothing but the file itself was requested
    external = report.js(
        """() => [...document.querySelectorAll("[src], [href]")]
                .map(e => e.getAttribute("src") || e.getAttribute("href"))
                .filter(url => /^\\s*(https?:)?\\/\\//i.test(url))"""
    )
    assert external == []
    raw = sweep_report.read_text()
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\s(src|href)\s*=", raw, re.I)
    assert report.js("() => window.goldReport.problems") == []


def test_every_section_is_present_and_drawn(sweep_report: Path, open_report: Any):
    report = open_report(sweep_report)
    for section in SECTIONS:
        assert report.page.locator(f"section#{section} h2").is_visible(), section
    for name in FIGURES:
        assert figure_view_finished(report, name), name
    counts = report.js(
        """() => Object.fromEntries([...document.querySelectorAll("ul.counts li[data-outcome]")]
                .map(li => [li.dataset.outcome, li.querySelector("b").textContent]))"""
    )
    assert counts == {"passed": "189", "failed": "11"}
    facts = report.page.locator("table.facts").inner_text()
    assert "--gold-report=out/campaign.html" in facts and "attach through" in facts
    assert report.page.locator("#results-link").get_attribute("href") == "../rt.csv"
    assert report.js("() => document.documentElement.dataset.state") == "finished"


def test_gantt_has_one_bar_per_case(sweep_report: Path, open_report: Any):
    report = open_report(sweep_report)
    bars = report.js(
        """() => {
            const data = Bokeh.documents[0].get_model_by_name("timeline-bars").data;
            return {text: [...data.text], kind: [...data.kind], lane: [...data.lane]};
        }"""
    )
    with open(sweep_report.parent.parent / "rt.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 200
    assert sorted(bars["text"]) == sorted(row["nodeid"] for row in rows)
    where = {row["nodeid"]: f"{row['host']}:e{row['engine']}" for row in rows}
    assert all(where[text] == lane for text, lane in zip(bars["text"], bars["lane"], strict=True))
    assert bars["kind"].count("failed") == 11


def test_failure_search_finds_a_case_by_a_word_of_its_message(sweep_report: Path, open_report: Any):
    report = open_report(sweep_report)
    rows = report.page.locator("#failure-table tbody tr.failure")
    assert rows.count() == 11
    report.page.fill("#failure-search", "ozone")
    assert rows.count() == 1
    assert rows.first.locator("td.nodeid").inner_text() == "test_sweep.py::test_bt[23.8-land-7]"
    rows.first.click()  # the full failure and the captured output behind the row
    details = report.page.locator("#failure-table tr.details").inner_text()
    assert "radiance overflow in the ozone band" in details
    assert "simulating 23.8 GHz over land, profile 7" in details
    report.page.fill("#failure-search", "SNOWPACK limit")
    assert rows.count() == 10
    assert report.page.locator("#failure-count").inner_text() == "10 of 11 shown"


def cell_color(report: ReportPage, x: str, y: str) -> tuple[int, int, int]:
    """The colour drawn at the centre of the heatmap cell (x, y)."""
    left, top = report.js(
        """([x, y]) => {
            const model = Bokeh.documents[0].get_model_by_name("grid-figure");
            const view = Bokeh.index.find_one(model);
            const box = view.el.getBoundingClientRect();
            return [box.left + window.scrollX + view.frame.x_scale.compute(x),
                    box.top + window.scrollY + view.frame.y_scale.compute(y)];
        }""",
        [x, y],
    )
    return report.pixel(left, top)


def pick(report: ReportPage, name: str, label: str) -> None:
    report.page.locator(f"#grid-controls select[name='{name}']").select_option(label=label)
    report.page.wait_for_function("() => Bokeh.documents.every(d => d.is_idle)")
    report.page.evaluate(
        "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
    )


def test_heatmap_cell_of_a_failing_combination_is_coloured_failed(
    sweep_report: Path, open_report: Any
):
    report = open_report(sweep_report)
    pick(report, "x", "channel")
    pick(report, "y", "surface")
    failed, passed = hex_rgb(KIND_COLORS["failed"]), hex_rgb(KIND_COLORS["passed"])
    assert cell_color(report, "183.31", "snow") == failed
    assert cell_color(report, "183.31", "ocean") == passed
    assert cell_color(report, "23.8", "land") == failed  # profile 7 fails there
    pick(report, "profile", "3")  # the other arguments are selectors
    assert cell_color(report, "23.8", "land") == passed
    assert cell_color(report, "183.31", "snow") == failed
    pick(report, "y", "profile")  # an argument on an axis shows all its values
    assert cell_color(report, "23.8", "7") == failed  # over land (surface: all)
    assert cell_color(report, "23.8", "3") == passed
    assert report.errors == []


HOSTILE = r"""
import os
import pytest

@pytest.mark.parametrize("name", [
    pytest.param(1, id="<script>window.__pwned = 1</script>"),
    pytest.param(2, id='"><img src=x onerror="window.__pwned = 2">'),
    pytest.param(3, id="it's \"quoted\" & <b>bold</b>"),
])
def test_hostile(name):
    os.write(1, b"raw output \xff\xfe <script>window.__pwned = 3</script>\n")
    message = b"bad bytes \xff\xfe".decode("utf-8", "surrogateescape")
    assert False, message + " <script>window.__pwned = 4</script>"
"""


def test_hostile_node_ids_and_messages_are_escaped_and_run_no_script(
    pytester: pytest.Pytester, gold_args: list[str], open_report: Any
):
    pytester.makepyfile(test_hostile=HOSTILE)
    # In process: the terminal output holds the undecodable bytes as they are.
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider", "--gold-report=campaign.html")
    result.assert_outcomes(failed=3)
    path = pytester.path / "campaign.html"
    raw = path.read_text(encoding="utf-8")  # valid UTF-8 throughout
    assert "<script>window.__pwned" not in raw and "<img src=x" not in raw
    report = open_report(path)
    rows = report.page.locator("#failure-table tbody tr.failure")
    for index in range(rows.count()):
        rows.nth(index).click()  # every failure's details, output included
    table = report.page.locator("#failure-table").inner_text()
    assert "test_hostile.py::test_hostile[<script>window.__pwned = 1</script>]" in table
    assert '"><img src=x onerror="window.__pwned = 2">' in table
    assert "bad bytes \\udcff\\udcfe <script>window.__pwned = 4</script>" in table
    slowest = report.page.locator("#slowest").inner_text()
    assert 'it\'s "quoted" & <b>bold</b>' in slowest  # shown as text, not as markup
    report.page.locator("#timeline").scroll_into_view_if_needed()
    bar = report.js(
        """() => {
            const doc = Bokeh.documents[0];
            const data = doc.get_model_by_name("timeline-bars").data;
            const index = [...data.text].findIndex(t => t.includes("<script>"));
            const view = Bokeh.index.find_one(doc.get_model_by_name("timeline-figure"));
            const box = view.el.getBoundingClientRect();
            const x = (data.left[index] + data.right[index]) / 2;
            return [box.left + view.frame.x_scale.compute(x),
                    box.top + view.frame.y_scale.compute(data.lane[index])];
        }"""
    )
    report.page.mouse.move(*bar)  # the tooltip shows the node id
    report.page.fill("#failure-search", "__pwned = 1</script>]")
    assert report.page.locator("#failure-table tbody tr.failure").count() == 1
    assert report.js("() => window.__pwned") is None
    assert report.errors == []


LIVE = """
import time
from pathlib import Path

def test_first():
    pass

def test_waits_for_the_live_report():
    report = Path("campaign.html")  # cases run in the invocation directory
    deadline = time.monotonic() + 240  # within the test's own time limit (300 s)
    while time.monotonic() < deadline:
        text = report.read_text() if report.exists() else ""
        if 'data-state="running"' in text and "test_live.py::test_first" in text:
            Path("live.html").write_text(text)
            return
        time.sleep(0.1)
    raise AssertionError("no report of the running campaign")
"""


def test_report_is_rewritten_while_the_run_goes_on(
    pytester: pytest.Pytester, gold_args: list[str], open_report: Any
):
    pytester.makepyfile(test_live=LIVE)
    result = pytester.runpytest(
        *gold_args,
        "-p",
        "no:cacheprovider",
        "--gold-report=campaign.html",
        "--gold-report-interval=2",
    )
    result.assert_outcomes(passed=2)
    final = (pytester.path / "campaign.html").read_text()
    assert '<html lang="en" data-state="finished">' in final
    live = open_report(pytester.path / "live.html", wait=False)
    assert (
        live.page.locator("header .notice.running")
        .inner_text()
        .startswith("This campaign is running. The page reloads every 2 s")
    )
    assert live.page.locator("#auto-refresh").is_checked()
    live.js("() => { window.__before_reload = true; }")
    live.page.wait_for_function("() => window.__before_reload === undefined", timeout=60_000)
    assert live.errors == []
