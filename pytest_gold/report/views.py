"""What each section of the report draws, computed from a :class:`~.model.Campaign`.

Pure functions over plain data, so they are tested without a browser or Bokeh. Times are
epoch seconds; the charts turn them into the controller's local time.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pytest_gold.report.model import FAILED_OUTCOMES, FAULT_ENGINE_LOST, Campaign, Case, Engine

#: Timeline bars a browser draws quickly (measured in benchmarks/bench_report.py); a run
#: with more cases has its bars aggregated down to this many.
MAX_TIMELINE_BARS = 20_000
#: Of those, how many may be failures drawn one by one among aggregated bars.
MAX_NOTABLE_BARS = MAX_TIMELINE_BARS // 4
#: Kind of a bar for cases an engine is running now.
RUNNING = "running"
UTILISATION_BINS = 200
HISTOGRAM_BINS = 40
SLOWEST_CASES = 20
#: Failures listed in the table, and the characters of failure text and output kept
#: for all of them together (each case gets a share, within the bounds below).
MAX_FAILURE_ROWS = 20_000
DETAIL_BUDGET_CHARS = 6_000_000
MIN_DETAIL_CHARS = 2_000
MAX_DETAIL_CHARS = 40_000


def lane_key(tag: str) -> tuple[Any, ...]:
    """Engines in the order of host, then engine number."""
    host, _, engine = tag.rpartition(":e")
    return (host, int(engine)) if engine.lstrip("-").isdigit() else (tag, 0)


def case_seconds(case: Case) -> float:
    """How long a case took: pytest's duration, else its time on the engine (a case
    stopped at its time limit, or lost with its engine, has no duration of its own)."""
    if case.duration > 0:
        return case.duration
    return max(case.stop - case.start, 0.0) if case.placed else 0.0


# -- timeline ------------------------------------------------------------------------


@dataclass
class Bar:
    lane: str
    left: float
    right: float
    kind: str
    #: A node id, or "N cases" for an aggregated bar.
    text: str
    #: Duration, or the outcomes of an aggregated bar's cases.
    detail: str
    host: str
    cases: int = 1


@dataclass
class Marker:
    lane: str
    time: float
    what: str  # "joined" or "lost"
    text: str


@dataclass
class Timeline:
    lanes: list[str]
    bars: list[Bar]
    markers: list[Marker]
    #: (lane, from, to): while each engine was part of the run.
    spans: list[tuple[str, float, float]]
    #: Bars that stand for several cases (0: one bar per case).
    groups: int = 0


def timeline(
    campaign: Campaign,
    now: float,
    max_bars: int = MAX_TIMELINE_BARS,
    max_notable: int = MAX_NOTABLE_BARS,
) -> Timeline:
    placed = [case for case in campaign.cases if case.placed]
    lanes = {case.tag for case in placed} | set(campaign.engines)
    lanes |= {run.tag for run in campaign.running}
    if len(placed) <= max_bars:
        bars = [_case_bar(case) for case in placed]
        groups = 0
    else:
        bars, groups = _aggregate(placed, max_bars, max_notable)
    for run in campaign.running:
        many = f"{run.cases} cases, the first: " if run.cases > 1 else ""
        bars.append(
            Bar(
                run.tag,
                run.since,
                max(now, run.since),
                RUNNING,
                f"{many}{run.first}",
                f"running for {format_seconds(now - run.since)}",
                run.host,
                run.cases,
            )
        )
    markers = []
    spans = []
    first = min((e.joined for e in campaign.engines.values()), default=campaign.started)
    for tag, engine in campaign.engines.items():
        until = engine.lost if engine.lost is not None else now
        spans.append((tag, engine.joined, until))
        if engine.joined > first:
            markers.append(Marker(tag, engine.joined, "joined", f"{tag} joined the run"))
        if engine.lost is not None:
            count = len(engine.lost_cases)
            markers.append(
                Marker(tag, engine.lost, "lost", f"{tag} was lost while running {count} case(s)")
            )
            bar = lost_work(engine)
            if bar is not None:
                bars.append(bar)
    return Timeline(sorted(lanes, key=lane_key), bars, markers, spans, groups)


def lost_work(engine: Engine) -> Bar | None:
    """The batch an engine was running when it was lost: its time was lost with it."""
    if engine.lost is None or engine.lost_since is None or not engine.lost_cases:
        return None
    count = len(engine.lost_cases)
    first = engine.lost_cases[0]
    text = f"{count} cases lost with the engine, the first: {first}" if count > 1 else first
    return Bar(
        engine.tag,
        engine.lost_since,
        engine.lost,
        FAULT_ENGINE_LOST,
        text,
        f"lost after {format_seconds(engine.lost - engine.lost_since)}",
        engine.host,
        count,
    )


def _case_bar(case: Case) -> Bar:
    return Bar(
        case.tag,
        case.start,
        case.stop,
        case.kind,
        case.nodeid,
        format_seconds(case_seconds(case)),
        case.host,
    )


def _aggregate(placed: list[Case], max_bars: int, max_notable: int) -> tuple[list[Bar], int]:
    """Consecutive cases of an engine merged into one bar each, so that at most
    ``max_bars`` are drawn; up to ``max_notable`` failures stay bars of their own."""
    notable = [case for case in placed if case.outcome in FAILED_OUTCOMES][:max_notable]
    alone = {id(case) for case in notable}
    by_lane: dict[str, list[Case]] = {}
    for case in placed:
        if id(case) not in alone:
            by_lane.setdefault(case.tag, []).append(case)
    rest = sum(len(cases) for cases in by_lane.values())
    budget = max(max_bars - len(notable), len(by_lane))
    bars: list[Bar] = []
    for lane, cases in by_lane.items():
        cases.sort(key=lambda case: case.start)
        share = max(1, budget * len(cases) // max(rest, 1))
        size = math.ceil(len(cases) / share)
        for index in range(0, len(cases), size):
            chunk = cases[index : index + size]
            kinds = Counter(case.kind for case in chunk)
            summary = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
            bars.append(
                Bar(
                    lane,
                    chunk[0].start,
                    max(case.stop for case in chunk),
                    kinds.most_common(1)[0][0],
                    f"{len(chunk)} cases",
                    summary,
                    chunk[0].host,
                    len(chunk),
                )
            )
    groups = len(bars)
    return bars + [_case_bar(case) for case in notable], groups


# -- utilisation ---------------------------------------------------------------------


@dataclass
class HostUse:
    host: str
    engines: int
    available_seconds: float
    busy_seconds: float

    @property
    def idle_seconds(self) -> float:
        return max(self.available_seconds - self.busy_seconds, 0.0)

    @property
    def use(self) -> float | None:
        return self.busy_seconds / self.available_seconds if self.available_seconds else None


@dataclass
class Utilisation:
    #: Bin edges (epoch seconds); per host, the busy share of each bin (None: no engine).
    edges: list[float]
    hosts: dict[str, list[float | None]] = field(default_factory=dict)
    totals: list[HostUse] = field(default_factory=list)

    @property
    def idle_seconds(self) -> float:
        return sum(host.idle_seconds for host in self.totals)


def utilisation(campaign: Campaign, now: float, bins: int = UTILISATION_BINS) -> Utilisation:
    start = campaign.started or min((c.start for c in campaign.cases if c.placed), default=now)
    end = max(now, start + 1e-6)
    width = (end - start) / bins
    edges = [start + i * width for i in range(bins + 1)]
    busy: dict[str, list[float]] = {}
    available: dict[str, list[float]] = {}
    engines: Counter[str] = Counter()
    for engine in campaign.engines.values():
        engines[engine.host] += 1
        until = engine.lost if engine.lost is not None else end
        _spread(available.setdefault(engine.host, [0.0] * bins), engine.joined, until, start, width)
    intervals = [(c.host, c.start, c.stop) for c in campaign.cases if c.placed]
    intervals += [(run.host, run.since, end) for run in campaign.running]
    lost = (lost_work(engine) for engine in campaign.engines.values())
    intervals += [(bar.host, bar.left, bar.right) for bar in lost if bar is not None]
    for host, left, right in intervals:
        _spread(busy.setdefault(host, [0.0] * bins), left, right, start, width)
    result = Utilisation(edges)
    for host in sorted(available.keys() | busy.keys()):
        have = available.get(host, [0.0] * bins)
        used = busy.get(host, [0.0] * bins)
        result.hosts[host] = [
            min(u / a, 1.0) if a > 0 else None for u, a in zip(used, have, strict=True)
        ]
        result.totals.append(HostUse(host, engines[host], sum(have), sum(used)))
    return result


def _spread(into: list[float], left: float, right: float, start: float, width: float) -> None:
    """Add the seconds of [left, right] that fall into each bin."""
    bins = len(into)
    left, right = max(left, start), min(right, start + bins * width)
    if right <= left:
        return
    first = min(int((left - start) / width), bins - 1)
    last = min(int((right - start) / width), bins - 1)
    for index in range(first, last + 1):
        low = start + index * width
        into[index] += max(min(right, low + width) - max(left, low), 0.0)


# -- durations -----------------------------------------------------------------------


@dataclass
class Histogram:
    edges: list[float]
    #: "passed" (every outcome but a failure) and "failed": cases per bin.
    counts: dict[str, list[int]]


def duration_histogram(cases: Iterable[Case], bins: int = HISTOGRAM_BINS) -> Histogram:
    """Case durations in bins of equal width on a log axis."""
    timed = [(case_seconds(c), c.outcome in FAILED_OUTCOMES) for c in cases if c.placed]
    positive = [seconds for seconds, _ in timed if seconds > 0]
    if not positive:
        return Histogram([], {"passed": [], "failed": []})
    low, high = min(positive), max(positive)
    if high <= low * 1.001:
        low, high = low / 1.5, high * 1.5
    ratio = math.log(high / low)
    edges = [low * math.exp(ratio * i / bins) for i in range(bins + 1)]
    counts = {"passed": [0] * bins, "failed": [0] * bins}
    for seconds, failed in timed:
        where = math.log(max(seconds, low) / low) / ratio * bins
        counts["failed" if failed else "passed"][min(int(where), bins - 1)] += 1
    return Histogram(edges, counts)


def slowest(cases: Iterable[Case], count: int = SLOWEST_CASES) -> list[Case]:
    placed = [case for case in cases if case.placed]
    return sorted(placed, key=case_seconds, reverse=True)[:count]


# -- failures ------------------------------------------------------------------------


def failures(
    campaign: Campaign,
    max_rows: int = MAX_FAILURE_ROWS,
    budget: int = DETAIL_BUDGET_CHARS,
) -> tuple[list[dict[str, str]], int]:
    """Rows of the failures table in the order the cases ended, and how many failures
    there are in all. Long failure texts and output keep their start and end."""
    failed = [case for case in campaign.cases if case.outcome in FAILED_OUTCOMES]
    failed.sort(key=lambda case: case.stop)
    shown = failed[:max_rows]
    share = min(max(budget // max(len(shown), 1), MIN_DETAIL_CHARS), MAX_DETAIL_CHARS)
    rows = [
        {
            "nodeid": case.nodeid,
            "where": case.tag if case.engine is not None and case.engine >= 0 else case.host,
            "kind": case.fault or case.outcome,
            "message": one_line(case.message),
            "longrepr": shorten(case.longrepr or case.message, share * 2 // 3),
            "output": shorten(case.output, share // 3),
        }
        for case in shown
    ]
    return rows, len(failed)


def one_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def shorten(text: str, limit: int) -> str:
    """``text`` within about ``limit`` characters: its start and its end."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n\n[... {cut} characters left out ...]\n\n{text[len(text) - tail :]}"


# -- text ----------------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    """A duration for people: 0.012 s, 4.2 s, 3 min 20 s, 5 h 02 min, 2 d 3 h."""
    if seconds < 10:
        return f"{seconds:.3g} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
