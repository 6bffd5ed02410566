"""The campaign report at campaign scale: file size, first paint, cost to the controller.

Three parts, on a made-up campaign log of N cases (default 100,000; tests/reportdata.py:
24 engines on 6 hosts, lognormal durations, ~2.6% failures with tracebacks, an engine lost
and two joining late):

1. **Library**: a timeline of all N bars, one per case, drawn by Bokeh (INLINE resources,
   bokeh.min.js) and by Plotly (``include_plotlyjs=True``, horizontal bars): the file's
   size, the time to build it, and how long headless Chromium takes to draw it.
2. **The report** (Bokeh; bars aggregated beyond ``MAX_TIMELINE_BARS``): drawn by
   ``python -m pytest_gold report LOG -o report.html`` (wall and CPU time of that process,
   file size), then opened in headless Chromium: the first contentful paint, and the time
   until every chart is drawn and the tables are built (``window.goldReport.ready``).
   Goals: at most 15 MB, drawn within 3 s on 2 cores.
3. **Controller**: a ``CampaignRecorder`` (the ``--gold-report`` plugin) fed the N cases
   through its hooks, with real ``TestReport`` objects: the controller's CPU time per
   case, and per rewrite during the run (a progress record, and starting and waiting for
   the process that draws), against 1% of the default interval (30 s). The drawing
   process's own CPU time is printed too: it is not the controller's, but the machine's.

How long drawing takes is given twice: the wall time from navigation until drawn, and the
CPU time of the page's main thread until then, from Chrome's trace (the sum of its tasks'
thread time). The page is drawn on that one thread, so on a machine with nothing else to
do the two agree; on a busy machine the wall time grows with the load and the CPU time
does not, which makes it the figure to compare with the goal.

Usage::

    python benchmarks/bench_report.py [--cases N] [--repeat K] [--quick] [--no-plotly]

Needs ``pip install -e '.[test]'`` (Bokeh, Playwright) and Debian's ``chromium`` at
/usr/bin/chromium; part 1 needs plotly (``pip install plotly``, or ``--no-plotly``).
Wall times are skewed by other load on the machine (the load average is printed at the
start and the end); page figures are medians of ``--repeat`` loads.
About 3 minutes for 100,000 cases on 2 cores (``--quick``: 20,000 cases, 1 load).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import Table, print_load_at_end, print_setup

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' made-up campaign (tests/reportdata.py)

from reportcost import controller_cost  # noqa: E402

from pytest_gold.report import campaignlog, charts, views  # noqa: E402
from tests.reportbrowser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.reportdata import campaign_records, write_log  # noqa: E402

MB = 1e6
GOAL_MB = 15.0
GOAL_PAINT_SECONDS = 3.0
DEFAULT_INTERVAL = 30.0
#: A chart not drawn within this long counts as never drawn.
PAINT_TIMEOUT_SECONDS = 300.0
#: Chrome trace categories with the main thread's tasks and their CPU time.
TRACE_CATEGORIES = ["toplevel", "devtools.timeline", "disabled-by-default-devtools.timeline"]
CHARTS_DRAWN = {
    "bokeh": "() => window.Bokeh && Bokeh.documents.length > 0 && "
    "Bokeh.documents.every(d => d.is_idle)",
    "plotly": "() => window.__drawn === true",
    "report": "() => window.goldReport && window.goldReport.ready",
}


def bokeh_timeline(campaign: campaignlog.Campaign, path: Path) -> float:
    from bokeh.embed import components
    from bokeh.resources import Resources

    started = time.process_time()
    timeline = views.timeline(campaign, campaign.end, max_bars=len(campaign.cases) + 1)
    script, div = components(charts.timeline_figure(timeline, campaign.utc_offset))
    js = Resources(mode="inline", components=["bokeh"]).render_js()
    html = f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{div}{js}{script}"
    path.write_text(html + "</body></html>")
    return time.process_time() - started


def plotly_timeline(campaign: campaignlog.Campaign, path: Path) -> float:
    import plotly.graph_objects as go

    started = time.process_time()
    figure = go.Figure()
    for kind in sorted({case.kind for case in campaign.cases}):
        cases = [case for case in campaign.cases if case.kind == kind and case.placed]
        figure.add_bar(
            orientation="h",
            name=kind,
            marker_color=charts.color_of(kind),
            base=[case.start * 1000 for case in cases],
            x=[(case.stop - case.start) * 1000 for case in cases],
            y=[case.tag for case in cases],
            customdata=[case.nodeid for case in cases],
            hovertemplate="%{customdata}<br>%{y}",
        )
    figure.update_xaxes(type="date")
    figure.update_layout(barmode="overlay", height=700)
    figure.write_html(path, include_plotlyjs=True, post_script="window.__drawn = true;")
    return time.process_time() - started


@dataclass
class Paint:
    """Medians over the loads of a page (None: not drawn within the time limit)."""

    #: Seconds from navigation to the first contentful paint, and until drawn.
    first: float | None
    drawn: float | None
    #: CPU seconds of the page's main thread until drawn (Chrome's trace, ``tdur``): what
    #: the wall time would be on an otherwise idle machine, whatever the load now.
    main_thread_cpu: float | None


def main_thread_cpu(trace: bytes) -> float:
    data = json.loads(trace)
    events = data["traceEvents"] if isinstance(data, dict) else data
    renderer = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("ph") == "M"
        and e.get("name") == "thread_name"
        and e["args"].get("name") == "CrRendererMain"
    }
    return sum(
        e["tdur"] / 1e6
        for e in events
        if e.get("name") == "RunTask"
        and e.get("ph") == "X"
        and "tdur" in e
        and (e["pid"], e["tid"]) in renderer
    )


def paint_times(path: Path, ready: str, repeat: int) -> Paint:
    """Load the page ``repeat`` times, each in a new page of a fresh headless Chromium."""
    from playwright.sync_api import Error, sync_playwright

    firsts, drawn, cpu = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            for _ in range(repeat):
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                page.route(
                    "**/*",
                    lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort(),
                )
                browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
                started = time.perf_counter()
                page.goto(path.as_uri(), wait_until="commit", timeout=PAINT_TIMEOUT_SECONDS * 1000)
                try:
                    page.wait_for_function(ready, polling=20, timeout=PAINT_TIMEOUT_SECONDS * 1000)
                except Error:
                    browser.stop_tracing()
                    return Paint(None, None, None)
                drawn.append(time.perf_counter() - started)
                cpu.append(main_thread_cpu(browser.stop_tracing()))
                fcp = page.evaluate(
                    "() => (performance.getEntriesByName('first-contentful-paint')[0] || {})"
                    ".startTime"
                )
                if fcp is not None:
                    firsts.append(fcp / 1000)
                page.close()
        finally:
            browser.close()
    median = statistics.median
    return Paint(median(firsts) if firsts else None, median(drawn), median(cpu))


def seconds(value: float | None, missing: str = "not drawn") -> str:
    return f"{value:.2f} s" if value is not None else missing


def part_library(campaign: campaignlog.Campaign, work: Path, repeat: int, plotly: bool) -> None:
    print(f"\n1. Library: a timeline of {len(campaign.cases)} bars, one per case")
    rows = []
    makers = [("Bokeh INLINE", "bokeh", bokeh_timeline)]
    if plotly:
        makers.append(("Plotly include_plotlyjs=True", "plotly", plotly_timeline))
    for name, kind, make in makers:
        path = work / f"timeline-{kind}.html"
        build = make(campaign, path)
        paint = paint_times(path, CHARTS_DRAWN[kind], repeat)
        rows.append(
            (
                name,
                f"{path.stat().st_size / MB:.1f} MB",
                f"{build:.1f} s",
                seconds(paint.drawn),
                seconds(paint.main_thread_cpu, "-"),
            )
        )
    header = ("library", "file", "build (CPU)", "chart drawn", "main-thread CPU")
    table = Table(header, rows, "<>>>")
    for row in [header, *rows]:
        print("   " + table.line(row))


def part_report(log: Path, work: Path, repeat: int) -> None:
    cases = sum(1 for line in open(log) if '"event": "case"' in line)
    print(f"\n2. The report of {cases} cases (python -m pytest_gold report)")
    out = work / "report.html"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest_gold", "report", str(log), "-o", str(out)],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    size = out.stat().st_size / MB
    paint = paint_times(out, CHARTS_DRAWN["report"], repeat)
    bars = views.timeline(campaignlog.read_log(log), 0).bars
    print(f"   drawn in {wall:.1f} s ({cpu:.1f} s CPU); {len(bars)} timeline bars")
    print(f"   file {size:.1f} MB (goal <= {GOAL_MB:g}: {'met' if size <= GOAL_MB else 'MISSED'})")
    cpu = paint.main_thread_cpu
    met = cpu is not None and cpu <= GOAL_PAINT_SECONDS
    print(
        f"   first contentful paint {seconds(paint.first, '-')}; everything drawn "
        f"{seconds(paint.drawn)}, {seconds(cpu, '-')} of main-thread CPU "
        f"(goal <= {GOAL_PAINT_SECONDS:g} s: {'met' if met else 'MISSED'})"
    )


def part_controller(records: list[dict[str, Any]], work: Path) -> None:
    cases = sum(1 for record in records if record["event"] == "case")
    print(f"\n3. Controller cost with --gold-report ({cases} cases)")
    cost = controller_cost(records, work, rewrites=3)
    budget = DEFAULT_INTERVAL / 100
    print(f"   per case: {cost.per_case * 1e6:.0f} us of controller CPU (hooks and log)")
    print(
        f"   per rewrite: {cost.per_rewrite * 1e3:.1f} ms of controller CPU "
        f"(goal <= 1% of {DEFAULT_INTERVAL:g} s = {budget * 1e3:.0f} ms: "
        f"{'met' if cost.per_rewrite <= budget else 'MISSED'})"
    )
    print(
        f"   the drawing process, per rewrite: {cost.draw_wall:.1f} s, {cost.draw_cpu:.1f} s CPU "
        "(not the controller's; niced)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="page loads per measurement")
    parser.add_argument("--quick", action="store_true", help="20,000 cases, one load each")
    parser.add_argument("--no-plotly", dest="plotly", action="store_false")
    args = parser.parse_args()
    if args.quick:
        args.cases, args.repeat = 20_000, 1
    print_setup(f"{args.cases} cases, {args.repeat} page load(s) per measurement")
    records = campaign_records(args.cases)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as directory:
        work = Path(directory)
        log = write_log(work / "campaign.events.jsonl", records)
        print(f"campaign log: {log.stat().st_size / MB:.1f} MB")
        part_library(campaignlog.read_log(log), work, args.repeat, args.plotly)
        part_report(log, work, args.repeat)
        part_controller(records, work)
    print_load_at_end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
