"""The report page: one self-contained HTML file (Bokeh's JavaScript, styles and data
inlined; nothing is fetched), written atomically.

Text from the run (node ids, messages, output) reaches the page only HTML-escaped, or
as JSON inside ``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped,
which the page's script puts into the document as text, never as markup.
"""

from __future__ import annotations

import datetime
import html
import json
import os
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import pytest_gold.report.charts as charts
import pytest_gold.report.grid as grid_module
import pytest_gold.report.views as views
from pytest_gold import __version__
from pytest_gold.report.model import PASSED_BEFORE, STATE_RUNNING, Campaign, clean_text

#: Outcome words in the order the counts are listed.
OUTCOME_ORDER = ["passed", "failed", "error", "skipped", "xfailed", "xpassed", PASSED_BEFORE]
#: Nothing may be fetched: scripts and styles are inline, images are data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)


def esc(value: Any) -> str:
    return html.escape(clean_text(value), quote=True)


def json_script(element_id: str, data: Any) -> str:
    """Data for the page's script; escaped so that no text in it can end the element."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _asset(name: str) -> str:
    asset = resources.files(__package__).joinpath("assets").joinpath(name)
    return asset.read_text(encoding="utf-8")


def local_time(seconds: float, offset: float) -> str:
    """A moment in the controller's time zone (its offset from UTC)."""
    zone = datetime.timezone(datetime.timedelta(seconds=offset))
    return datetime.datetime.fromtimestamp(seconds, zone).strftime("%Y-%m-%d %H:%M:%S")


def build_page(
    campaign: Campaign,
    now: float,
    refresh_seconds: float | None = None,
    report_path: Path | None = None,
) -> str:
    """The whole page. ``refresh_seconds``: the run is going on; the page says so and
    reloads itself that often."""
    from bokeh.embed import components
    from bokeh.resources import Resources

    live = refresh_seconds is not None and campaign.state is None
    end = now if live else campaign.end
    offset = campaign.utc_offset
    timeline = views.timeline(campaign, end)
    utilisation = views.utilisation(campaign, end)
    figures: dict[str, Any] = {
        "timeline": charts.timeline_figure(timeline, offset),
        "utilisation": charts.utilisation_figure(utilisation, offset),
        "durations": charts.histogram_figure(views.duration_histogram(campaign.cases)),
        "grid": charts.grid_figure(),
    }
    script, divs = components(figures)
    bokeh_js = Resources(mode="inline", components=["bokeh"]).render_js()
    failures, failure_count = views.failures(campaign)
    grid = grid_module.grid(campaign)
    grid["colors"] = [charts.color_of(kind) for kind in grid["kinds"]]
    state = STATE_RUNNING if live else (campaign.state or "unknown")
    refresh = (
        f'<noscript><meta http-equiv="refresh" content="{refresh_seconds:g}"></noscript>'
        if live
        else ""
    )
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en" data-state="{esc(state)}"'
        + (f' data-refresh="{refresh_seconds:g}"' if live else "")
        + ">",
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        refresh,
        f"<title>{esc(_title(campaign, live))}</title>",
        f"<style>{_asset('report.css')}</style>",
        "</head>",
        "<body>",
        f"<header><h1>pytest-gold campaign</h1>{_banner(campaign, live, now, refresh_seconds)}"
        "</header>",
        "<main>",
        _run_section(campaign, end, live, report_path),
        _section(
            "timeline",
            "Timeline per engine",
            _timeline_note(timeline, campaign) + divs["timeline"],
        ),
        _section(
            "utilisation",
            "Utilisation per host",
            divs["utilisation"] + _idle_table(utilisation),
        ),
        _section("durations", "Case durations", divs["durations"] + _slowest_table(campaign)),
        _section(
            "failures", f"Failures ({failure_count})", _failures_body(failures, failure_count)
        ),
        _section("grid", "Outcome over the parameter grid", _grid_body(grid, divs["grid"])),
        "</main>",
        f"<footer>Written by pytest-gold {esc(__version__)} at "
        f"{esc(local_time(now, offset))}.</footer>",
        json_script("gold-failures-data", {"rows": failures, "colors": charts.KIND_COLORS}),
        json_script("gold-grid-data", grid),
        # Scripts last: the page's text shows while the browser is still reading them.
        bokeh_js,
        script,
        f"<script>{_asset('report.js')}</script>",
        "</body>",
        "</html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _title(campaign: Campaign, live: bool) -> str:
    done = f"{campaign.done}/{campaign.total}" if campaign.total else f"{campaign.done}"
    return f"{'running' if live else 'gold'}: {done} cases, {_failed(campaign)} failed"


def _failed(campaign: Campaign) -> int:
    counts = campaign.counts()
    return counts["failed"] + counts["error"]


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def _banner(campaign: Campaign, live: bool, now: float, refresh: float | None) -> str:
    offset = campaign.utc_offset
    if live:
        return (
            '<p class="notice running">This campaign is running. The page reloads every '
            f'{refresh:g} s <label><input type="checkbox" id="auto-refresh" checked> '
            f"auto-refresh</label>; written at {esc(local_time(now, offset))}.</p>"
        )
    if campaign.state is None:
        return (
            '<p class="notice unknown">The record of this run ends at '
            f"{esc(local_time(campaign.updated, offset))} without an end: the run is still "
            "going, or it was stopped without finishing its record (killed).</p>"
        )
    ended = esc(local_time(campaign.updated, offset))
    if campaign.state == "finished":
        return f'<p class="notice finished">Finished at {ended}.</p>'
    return f'<p class="notice stopped">Stopped at {ended}: {esc(campaign.state)}.</p>'


def _run_section(campaign: Campaign, end: float, live: bool, report_path: Path | None) -> str:
    offset = campaign.utc_offset
    hosts = Counter(engine.host for engine in campaign.engines.values())
    first = min((e.joined for e in campaign.engines.values()), default=campaign.started)
    joined = sum(1 for e in campaign.engines.values() if e.joined > first)
    lost = sum(1 for e in campaign.engines.values() if e.lost is not None)
    engines = f"{len(campaign.engines)}"
    if joined or lost:
        engines += f" ({joined} joined during the run, {lost} lost)"
    eta = campaign.eta_seconds
    rows = [
        ("Command", f"<code>{esc(campaign.command)}</code>"),
        ("Cluster", esc(campaign.cluster or "unknown")),
        ("Profile", esc(campaign.profile or "none")),
        ("Hosts", esc(", ".join(f"{h} ({n})" for h, n in sorted(hosts.items())) or "none")),
        ("Engines", esc(engines)),
        ("Started", esc(local_time(campaign.started, offset)) if campaign.started else "unknown"),
        ("Elapsed", esc(views.format_seconds(max(end - campaign.started, 0.0)))),
    ]
    if live:
        rows.append(("ETA", esc(views.format_seconds(eta)) if eta is not None else "not yet known"))
    if campaign.results:
        rows.append(("Results", _results_link(campaign.results, report_path)))
    table = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    notes = "".join(f'<p class="note">{esc(note)}</p>' for note in campaign.notes)
    return _section(
        "run", "The run", f'<table class="facts">{table}</table>{_progress(campaign)}{notes}'
    )


def _results_link(results: str, report_path: Path | None) -> str:
    target = Path(results)
    href = target.as_posix()
    if report_path is not None and target.is_absolute():
        href = Path(os.path.relpath(target, report_path.resolve().parent)).as_posix()
    return f'<a id="results-link" href="{esc(href)}">{esc(results)}</a>'


def _progress(campaign: Campaign) -> str:
    counts = campaign.counts()
    running = sum(run.cases for run in campaign.running)
    total = max(campaign.total, campaign.done + running, 1)
    order = OUTCOME_ORDER + sorted(set(counts) - set(OUTCOME_ORDER))
    segments, items = [], []
    for outcome in [*order, "running"]:
        count = running if outcome == "running" else counts.get(outcome, 0)
        if not count:
            continue
        color = charts.color_of(outcome)
        segments.append(
            f'<span class="segment" title="{esc(outcome)}: {count}" '
            f'style="width:{100 * count / total:.3f}%;background:{color}"></span>'
        )
        items.append(
            f'<li data-outcome="{esc(outcome)}"><span class="swatch" style="background:'
            f'{color}"></span>{esc(outcome)} <b>{count}</b></li>'
        )
    left = max(campaign.total - campaign.done - running, 0)
    if left:
        word = "to run" if campaign.state is None else "did not run"
        items.append(
            f'<li data-outcome="left"><span class="swatch"></span>{word} <b>{left}</b></li>'
        )
    share = 100 * campaign.done / total
    return (
        f'<div class="progress" role="progressbar" aria-valuenow="{share:.1f}" '
        f'aria-valuemin="0" aria-valuemax="100">{"".join(segments)}</div>'
        f'<p class="done">{campaign.done} of {campaign.total} cases done ({share:.1f}%)</p>'
        f'<ul class="counts">{"".join(items)}</ul>'
    )


def _timeline_note(timeline: views.Timeline, campaign: Campaign) -> str:
    placed = sum(1 for case in campaign.cases if case.placed)
    text = (
        "One row per engine, one bar per case, coloured by outcome. Hover a bar for the "
        "case; drag to pan, scroll to zoom. Grey: while the engine was part of the run."
    )
    if timeline.groups:
        text += (
            f" With {placed} cases, consecutive cases of an engine are drawn as one bar "
            f"({timeline.groups} bars; hover for their outcomes); failures stay bars of "
            "their own."
        )
    return f'<p class="note">{esc(text)}</p>'


def _idle_table(use: views.Utilisation) -> str:
    rows = []
    for host in use.totals:
        share = f"{100 * host.use:.0f}%" if host.use is not None else "-"
        rows.append(
            f"<tr><td>{esc(host.host)}</td><td>{host.engines}</td>"
            f"<td>{host.available_seconds:.0f}</td><td>{host.busy_seconds:.0f}</td>"
            f"<td>{host.idle_seconds:.0f}</td><td>{share}</td></tr>"
        )
    idle = use.idle_seconds
    spelled = f" ({esc(views.format_seconds(idle))} of engine time)" if idle >= 60 else ""
    return (
        f'<p class="idle">Idle engine-seconds: <b id="idle-seconds">{idle:.0f}</b>{spelled}.</p>'
        '<table class="data"><thead><tr><th>host</th><th>engines</th><th>engine-seconds '
        "available</th><th>busy</th><th>idle</th><th>use</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _slowest_table(campaign: Campaign) -> str:
    rows = "".join(
        f"<tr><td>{esc(case.nodeid)}</td><td>{esc(views.format_seconds(views.case_seconds(case)))}"
        f"</td><td>{esc(case.tag)}</td><td>{esc(case.kind)}</td></tr>"
        for case in views.slowest(campaign.cases)
    )
    return (
        "<h3>The slowest cases</h3>"
        '<table class="data" id="slowest"><thead><tr><th>case</th><th>took</th>'
        f"<th>engine</th><th>outcome</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _failures_body(rows: list[dict[str, str]], count: int) -> str:
    more = (
        f'<p class="note">The {count - len(rows)} failures after the first {len(rows)} are '
        "not listed; the results table has them all.</p>"
        if count > len(rows)
        else ""
    )
    return (
        '<p><input type="search" id="failure-search" placeholder="search: words of the case, '
        'engine, kind or message" aria-label="search failures"> '
        '<span id="failure-count"></span></p>'
        '<p class="note">Click a row for the full failure and the captured output.</p>'
        '<table class="data" id="failure-table"><thead><tr><th>case</th><th>engine</th>'
        f"<th>kind</th><th>message</th></tr></thead><tbody></tbody></table>{more}"
    )


def _grid_body(grid: dict[str, Any], div: str) -> str:
    if not grid["functions"]:
        return f'<p class="note">No parametrized cases.</p><div hidden>{div}</div>'
    present = {row[-1] for function in grid["functions"] for row in function["cases"]}
    legend = "".join(
        f'<li><span class="swatch" style="background:{color}"></span>{esc(kind)}</li>'
        for index, (kind, color) in enumerate(zip(grid["kinds"], grid["colors"], strict=True))
        if index in present
    )
    return (
        '<p class="note">Each cell shows the worst outcome of its cases (grey: none has '
        "finished). Pick the two arguments to plot; the others can be fixed to a value.</p>"
        '<div id="grid-controls"></div>'
        f'<ul class="counts legend">{legend}</ul>{div}'
    )
