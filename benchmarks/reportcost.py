"""What ``--gold-report`` costs the controller: bench_report.py's part 3.

A :class:`~pytest_gold.report.recorder.CampaignRecorder` is fed a made-up campaign through
the hooks a run calls (``pytest_gold_case_scheduled``, ``pytest_gold_case_finished`` with
real ``TestReport`` objects), on a stand-in for pytest's config. Then rewrites are made
as the redrawing thread makes them (a progress record; starting the drawing process and
waiting for it), each measured as this process's CPU time, and the drawing process's.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_gold.protocol.messages import EngineInfo
from pytest_gold.report.options import ReportSettings
from pytest_gold.report.recorder import CampaignRecorder

#: The thread is not started: rewrites are made one by one here.
NO_TIMER_SECONDS = 3600.0


@dataclass
class Cost:
    #: Controller CPU seconds per case, and per rewrite.
    per_case: float
    per_rewrite: float
    #: Wall and CPU seconds of the drawing process, per rewrite.
    draw_wall: float
    draw_cpu: float


class _Item:
    """Stands for a collected pytest item (node id and parametrize values)."""

    def __init__(self, nodeid: str, params: dict[str, Any]) -> None:
        self.nodeid = nodeid
        self.callspec = SimpleNamespace(params=params)


def _config(directory: Path) -> Any:
    return SimpleNamespace(
        getoption=lambda name: None,
        invocation_params=SimpleNamespace(args=("--gold", "sims/"), dir=directory),
        pluginmanager=SimpleNamespace(get_plugin=lambda name: None),
        get_verbosity=lambda: 0,
        option=SimpleNamespace(collectonly=False),
    )


def _reports(record: dict[str, Any]) -> list[pytest.TestReport]:
    failed = record["outcome"] == "failed"
    location = (record["nodeid"].split("::")[0], 1, record["nodeid"])
    return [
        pytest.TestReport(
            nodeid=record["nodeid"],
            location=location,
            keywords={},
            when=when,
            outcome="failed" if failed and when == "call" else "passed",
            longrepr=record.get("longrepr") if failed and when == "call" else None,
            sections=[("Captured stdout call", record.get("output", ""))] if failed else [],
            duration=record["duration"] if when == "call" else 0.0,
            start=record["start"],
            stop=record["stop"],
        )
        for when in ("setup", "call", "teardown")
    ]


def controller_cost(records: list[dict[str, Any]], directory: Path, rewrites: int) -> Cost:
    cases = [record for record in records if record["event"] == "case"]
    engines = {
        (r["host"], r["engine"]): EngineInfo(
            engine_id=r["engine"],
            host=r["host"],
            pid=1,
            python="3",
            executable=sys.executable,
            platform="linux",
        )
        for r in cases
    }
    settings = ReportSettings(
        report=directory / "live.html",
        log=directory / "live.events.jsonl",
        interval=NO_TIMER_SECONDS,
    )
    config = _config(directory)
    recorder = CampaignRecorder(config, settings, "made-up cluster", None)
    session = SimpleNamespace(config=config, items=[_Item(r["nodeid"], r["params"]) for r in cases])
    recorder.pytest_collection_finish(session)
    reports = [_reports(record) for record in cases]  # made before: the worker's part
    started = time.process_time()
    for record, case_reports in zip(cases, reports, strict=True):
        engine = engines[(record["host"], record["engine"])]
        recorder.pytest_gold_case_scheduled(nodeid=record["nodeid"], engine=engine)
        recorder.pytest_gold_case_finished(
            nodeid=record["nodeid"], reports=case_reports, engine=engine
        )
    per_case = (time.process_time() - started) / len(cases)
    redrawer = recorder.redrawer
    assert redrawer is not None
    controller = draw_cpu = draw_wall = 0.0
    for _ in range(rewrites):
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        started, wall = time.process_time(), time.perf_counter()
        redrawer.before_each()
        redrawer.redraw()
        controller += time.process_time() - started
        draw_wall += time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        draw_cpu += after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        if redrawer.problem is not None:
            raise RuntimeError(f"the rewrite failed: {redrawer.problem}")
    recorder.pytest_unconfigure()
    return Cost(per_case, controller / rewrites, draw_wall / rewrites, draw_cpu / rewrites)
