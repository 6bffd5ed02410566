"""The report's charts, drawn by Bokeh (the ``pytest-gold[report]`` extra).

Each function turns one view (:mod:`.views`) into a Bokeh figure. Times on the axes are
the controller's local time: Bokeh shows datetimes as UTC, so they are shifted by the
controller's UTC offset. Models the page's script updates have names (``grid-source``).
"""

from __future__ import annotations

from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
from bokeh.palettes import Category10, Category20
from bokeh.plotting import figure

from pytest_gold.report.model import (
    FAULT_CONTROLLER_LOST,
    FAULT_CRASH,
    FAULT_ENGINE_LOST,
    FAULT_NOT_RUN,
    FAULT_SUPERVISOR,
    FAULT_TIME_LIMIT,
    PASSED_BEFORE,
)
from pytest_gold.report.views import RUNNING, Histogram, Timeline, Utilisation

#: Colour of each kind of case (outcome or fault); failures red, faults darker shades.
KIND_COLORS = {
    "passed": "#2ca02c",
    PASSED_BEFORE: "#98df8a",
    "failed": "#d62728",
    "error": "#ff7f0e",
    "skipped": "#9e9e9e",
    "xfailed": "#bcbd22",
    "xpassed": "#17becf",
    FAULT_CRASH: "#7b0000",
    FAULT_TIME_LIMIT: "#9467bd",
    FAULT_ENGINE_LOST: "#3d3d3d",
    FAULT_CONTROLLER_LOST: "#6b3d1f",
    FAULT_SUPERVISOR: "#e377c2",
    FAULT_NOT_RUN: "#8c564b",
    RUNNING: "#1f77b4",
}
#: Colour of kinds not listed above (an outcome word a plugin made up).
OTHER_COLOR = "#555555"
#: Engine rows of the timeline: pixels each, and the figure's height bounds.
LANE_PIXELS = 22
MIN_TIMELINE_HEIGHT = 220
MAX_TIMELINE_HEIGHT = 1600
CHART_HEIGHT = 300
TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"


def color_of(kind: str) -> str:
    return KIND_COLORS.get(kind, OTHER_COLOR)


def _ms(seconds: float, offset: float) -> float:
    """Epoch seconds as Bokeh datetime milliseconds, shifted to local time."""
    return (seconds + offset) * 1000.0


def timeline_figure(view: Timeline, offset: float) -> figure:
    """One row per engine, one bar per case (or group of cases), coloured by kind."""
    lanes = list(reversed(view.lanes))  # the first engine at the top
    height = min(max(80 + LANE_PIXELS * len(lanes), MIN_TIMELINE_HEIGHT), MAX_TIMELINE_HEIGHT)
    fig = figure(
        name="timeline-figure",
        y_range=FactorRange(factors=lanes),
        x_axis_type="datetime",
        height=height,
        sizing_mode="stretch_width",
        tools=TOOLS,
        active_scroll="xwheel_zoom",
        toolbar_location="above",
    )
    spans = ColumnDataSource(
        {
            "lane": [lane for lane, _, _ in view.spans],
            "left": [_ms(start, offset) for _, start, _ in view.spans],
            "right": [_ms(stop, offset) for _, _, stop in view.spans],
        }
    )
    fig.hbar(y="lane", left="left", right="right", height=0.9, source=spans, color="#ececec")
    bars = ColumnDataSource(
        {
            "lane": [bar.lane for bar in view.bars],
            "left": [_ms(bar.left, offset) for bar in view.bars],
            "right": [_ms(bar.right, offset) for bar in view.bars],
            "kind": [bar.kind for bar in view.bars],
            "color": [color_of(bar.kind) for bar in view.bars],
            "text": [bar.text for bar in view.bars],
            "detail": [bar.detail for bar in view.bars],
            "host": [bar.host for bar in view.bars],
            "cases": [bar.cases for bar in view.bars],
        },
        name="timeline-bars",
    )
    drawn = fig.hbar(
        y="lane",
        left="left",
        right="right",
        height=0.7,
        source=bars,
        fill_color="color",
        line_color="color",
        legend_field="kind",
    )
    fig.add_tools(
        HoverTool(
            renderers=[drawn],
            tooltips=[
                ("case", "@text"),
                ("took", "@detail"),
                ("engine", "@lane"),
                ("host", "@host"),
                ("started", "@left{%F %T}"),
            ],
            formatters={"@left": "datetime"},
        )
    )
    for what, marker, color, legend in (
        ("joined", "triangle", "#1f77b4", "engine joined"),
        ("lost", "x", "#d62728", "engine died"),  # "engine lost" is the kind of its cases
    ):
        chosen = [m for m in view.markers if m.what == what]
        if not chosen:
            continue
        source = ColumnDataSource(
            {
                "lane": [m.lane for m in chosen],
                "time": [_ms(m.time, offset) for m in chosen],
                "text": [m.text for m in chosen],
            },
            name=f"timeline-{what}",
        )
        shown = fig.scatter(
            x="time",
            y="lane",
            source=source,
            marker=marker,
            size=14,
            line_width=3,
            color=color,
            legend_label=legend,
        )
        fig.add_tools(
            HoverTool(
                renderers=[shown],
                tooltips=[("", "@text"), ("at", "@time{%F %T}")],
                formatters={"@time": "datetime"},
            )
        )
    fig.legend.orientation = "horizontal"
    fig.legend.location = "top_left"
    fig.add_layout(fig.legend[0], "below")
    return fig


def utilisation_figure(view: Utilisation, offset: float) -> figure:
    """The busy share of each host's engines over time."""
    fig = figure(
        name="utilisation-figure",
        x_axis_type="datetime",
        height=CHART_HEIGHT,
        sizing_mode="stretch_width",
        tools=TOOLS,
        active_scroll="xwheel_zoom",
        y_range=Range1d(start=0, end=105),
        y_axis_label="engines busy (%)",
    )
    hosts = list(view.hosts)
    palette = Category10[10] if len(hosts) <= 10 else Category20[20]
    middles = [_ms((a + b) / 2, offset) for a, b in zip(view.edges, view.edges[1:], strict=False)]
    for index, host in enumerate(hosts):
        values = [100.0 * v if v is not None else float("nan") for v in view.hosts[host]]
        source = ColumnDataSource({"time": middles, "use": values, "host": [host] * len(values)})
        fig.line(
            x="time",
            y="use",
            source=source,
            line_width=2,
            color=palette[index % len(palette)],
            legend_label=host,
        )
    fig.add_tools(
        HoverTool(
            tooltips=[("host", "@host"), ("busy", "@use{0.0}%"), ("at", "@time{%F %T}")],
            formatters={"@time": "datetime"},
        )
    )
    if hosts:
        fig.legend.location = "bottom_left"
        fig.legend.click_policy = "hide"
    return fig


def histogram_figure(view: Histogram) -> figure:
    """Case durations on a log axis, passed and failed stacked."""
    fig = figure(
        name="durations-figure",
        x_axis_type="log",
        height=CHART_HEIGHT,
        sizing_mode="stretch_width",
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
        x_axis_label="case duration (s)",
        y_axis_label="cases",
    )
    if not view.edges:
        return fig
    passed, failed = view.counts["passed"], view.counts["failed"]
    base = {"left": view.edges[:-1], "right": view.edges[1:]}
    for name, bottom, top, color in (
        ("passed", [0] * len(passed), passed, KIND_COLORS["passed"]),
        (
            "failed",
            passed,
            [p + f for p, f in zip(passed, failed, strict=True)],
            color_of("failed"),
        ),
    ):
        source = ColumnDataSource(
            {
                **base,
                "bottom": bottom,
                "top": top,
                "count": [t - b for t, b in zip(top, bottom, strict=True)],
            }
        )
        fig.quad(
            left="left",
            right="right",
            bottom="bottom",
            top="top",
            source=source,
            color=color,
            legend_label=name,
            line_color="white",
        )
    fig.add_tools(
        HoverTool(
            tooltips=[("from", "@left{0.000} s"), ("to", "@right{0.000} s"), ("cases", "@count")]
        )
    )
    fig.legend.location = "top_right"
    return fig


def grid_figure() -> figure:
    """An empty heatmap; the page's script fills it for the arguments picked."""
    source = ColumnDataSource(
        {"x": [], "y": [], "color": [], "kind": [], "where": [], "counts": []},
        name="grid-source",
    )
    fig = figure(
        name="grid-figure",
        x_range=FactorRange(),
        y_range=FactorRange(),
        height=CHART_HEIGHT + 150,
        sizing_mode="stretch_width",
        tools="pan,wheel_zoom,box_zoom,reset,save",
        toolbar_location="above",
        background_fill_color="#f4f4f4",
    )
    fig.rect(
        x="x", y="y", width=0.95, height=0.95, source=source, fill_color="color", line_color=None
    )
    fig.add_tools(HoverTool(tooltips=[("", "@where"), ("worst", "@kind"), ("cases", "@counts")]))
    fig.xaxis.name = "grid-xaxis"
    fig.yaxis.name = "grid-yaxis"
    fig.xaxis.major_label_orientation = 0.9
    fig.grid.visible = False
    return fig
