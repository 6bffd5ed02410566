"""Replaying what engines report through pytest's own hooks, on the controller.

Each report is rebuilt with ``pytest_report_from_serializable`` and passed to
``pytest_runtest_logreport``, so the terminal, ``--junitxml``, ``--lf`` (cacheprovider),
``--durations`` and any other plugin see what they would in a plain run. A report also
carries ``node``, an object shaped like pytest-xdist's worker node: pytest's terminal then
tags verbose result lines with ``[host:eN]`` and failure headers with the engine's Python,
and junitxml keeps cases of different engines apart.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_gold.protocol.junitxml import SharedProperties, junit_xml
from pytest_gold.protocol.messages import (
    BatchResult,
    EngineInfo,
    ExitRequested,
    LogFinish,
    LogStart,
    NotRun,
    ReportEvent,
    SuitePropertyEvent,
    WarningEvent,
    WorkerCrashed,
)
from pytest_gold.protocol.serialization import report_data_from_wire, warning_from_event
from pytest_gold.records.results import RERUN, case_outcome

#: ``record_property`` names added to every case's reports (and so to the JUnit XML).
HOST_PROPERTY = "gold_host"
ENGINE_PROPERTY = "gold_engine"


class GoldNode:
    """Stands for an engine on replayed reports (pytest reads ``gateway.id``, ``workerinfo``)."""

    def __init__(self, engine: EngineInfo) -> None:
        self.engine = engine
        self.gateway = SimpleNamespace(id=engine.tag)
        version = [int(part) for part in re.findall(r"\d+", engine.python)[:3]]
        self.workerinfo = {
            "id": engine.tag,
            "sysplatform": f"{engine.platform} host {engine.host} engine {engine.engine_id}",
            "version_info": (*version, 0, 0, 0)[:3],
            "executable": engine.executable,
        }
        #: The properties every report of this engine gets (shared by all its reports).
        self.placement = ((HOST_PROPERTY, engine.host), (ENGINE_PROPERTY, engine.engine_id))

    def __repr__(self) -> str:
        return f"<GoldNode {self.engine.tag}>"


@dataclass
class ReplayOutcome:
    """What the controller's run loop needs to know from one replayed result."""

    finished: dict[str, float] = field(default_factory=dict)  # node id -> seconds
    outcomes: dict[str, str] = field(default_factory=dict)  # node id -> outcome word
    not_run: list[str] = field(default_factory=list)
    cut_short: list[str] = field(default_factory=list)
    exit_request: ExitRequested | None = None
    crashes: list[WorkerCrashed] = field(default_factory=list)


def logstart_caller(config: pytest.Config, without_terminal: bool) -> Any:
    """``pytest_runtest_logstart``, without the terminal reporter's own start-of-case
    output when ``without_terminal``."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is None or not without_terminal:
        return config.hook.pytest_runtest_logstart
    return config.pluginmanager.subset_hook_caller(
        "pytest_runtest_logstart", remove_plugins=[terminal]
    )


class Replayer:
    def __init__(
        self, config: pytest.Config, compact: bool = False, items: Iterable[pytest.Item] = ()
    ) -> None:
        self.config = config
        #: The controller's items of the cases to replay, until each is done: a report
        #: takes its item's parsed node id (pytest's own reports of a case share the
        #: item's), and a done item lets go of its fixture request (see ``release``).
        self.items: dict[str, pytest.Item] = {item.nodeid: item for item in items}
        self.hook = config.hook
        self.nodes: dict[EngineInfo, GoldNode] = {}
        self.case_reports: dict[str, list[pytest.TestReport]] = defaultdict(list)
        #: The last report's shared fields, as they came and as built: the reports of a
        #: case share their equal parts (see ``report_data_from_wire``).
        self.last_shared: dict[str, tuple[Any, Any]] = {}
        # In verbose mode the tagged result line says everything: the terminal's own
        # start-of-case line would print every case twice. In compact mode nothing is.
        self.logstart = logstart_caller(config, compact or config.get_verbosity() > 0)
        #: What the replay under way (or the last one) found so far.
        self.replaying = ReplayOutcome()
        #: The last report's parsed node id (pytest >= 9.2 keeps one on every report;
        #: its own reports of a case share the item's).
        self.last_id: Any = None
        self.shared_properties = SharedProperties((HOST_PROPERTY, ENGINE_PROPERTY))

    def node_for(self, engine: EngineInfo) -> GoldNode:
        node = self.nodes.get(engine)
        if node is None:
            node = self.nodes[engine] = GoldNode(engine)
        return node

    def replay(self, result: BatchResult) -> ReplayOutcome:
        outcome = self.replaying = ReplayOutcome()
        node = self.node_for(result.engine)
        for event in result.events:
            if isinstance(event, LogStart):
                self.logstart(nodeid=event.nodeid, location=event.location)
            elif isinstance(event, ReportEvent):
                self.replay_report(event.data, node)
            elif isinstance(event, LogFinish):
                self.hook.pytest_runtest_logfinish(nodeid=event.nodeid, location=event.location)
                reports = self.case_reports.pop(event.nodeid, [])
                if any(report.outcome == RERUN for report in reports):
                    continue  # pytest-rerunfailures runs it again: its last attempt counts
                self.release(event.nodeid)
                outcome.finished[event.nodeid] = sum(r.duration for r in reports)
                outcome.outcomes[event.nodeid] = case_outcome(reports)
                self.hook.pytest_gold_case_finished(
                    config=self.config, nodeid=event.nodeid, reports=reports, engine=node.engine
                )
            elif isinstance(event, WarningEvent):
                self.hook.pytest_warning_recorded.call_historic(
                    kwargs=dict(
                        warning_message=warning_from_event(event),
                        when=event.when,
                        nodeid=event.nodeid,
                        location=None,
                    )
                )
            elif isinstance(event, SuitePropertyEvent):
                xml = self.junit_xml()
                if xml is not None:
                    xml.add_global_property(event.name, event.value)
            elif isinstance(event, ExitRequested):
                outcome.exit_request = outcome.exit_request or event
            elif isinstance(event, NotRun):
                outcome.not_run.extend(event.nodeids)
                outcome.cut_short.extend(f"{n} (on {node.engine.tag})" for n in event.cut_short)
            elif isinstance(event, WorkerCrashed):
                outcome.crashes.append(event)
        return outcome

    def replay_report(self, data: dict[str, Any], node: GoldNode) -> None:
        report = self.hook.pytest_report_from_serializable(
            config=self.config, data=report_data_from_wire(data, self.last_shared)
        )
        self.share_node_id(report)
        report.node = node
        report.user_properties = [*report.user_properties, *node.placement]
        attributes = report.__dict__.pop("gold_xml_attributes", None)
        xml = self.junit_xml()
        if xml is not None:
            reporter = xml.node_reporter(report)
            self.shared_properties.adopt(reporter)
            for name, value in (attributes or {}).items():
                reporter.add_attribute(name, value)
        self.case_reports[report.nodeid].append(report)
        self.hook.pytest_runtest_logreport(report=report)

    def share_node_id(self, report: pytest.TestReport) -> None:
        """Give a report the last report's parsed node id when they are equal (a case's
        setup, call and teardown): pytest keeps every report to the end of the run."""
        ident = report.__dict__.get("_id")
        if ident is None:  # pytest < 9.2: the node id string, shared already
            return
        item = self.items.get(report.nodeid)
        item_id = getattr(item, "_id", None)  # a slot of pytest >= 9.2's nodes
        if item_id is not None and item_id == ident:
            report.__dict__["_id"] = self.last_id = item_id
        elif ident == self.last_id:
            report.__dict__["_id"] = self.last_id
        else:
            self.last_id = ident

    def release(self, nodeid: str) -> None:
        """A case is done: its item lets go of its fixture request and arguments, as
        pytest's own ``runtestprotocol`` has an item do after its run (the controller
        never runs it; each item would keep them to the end of the run)."""
        item = self.items.pop(nodeid, None)
        if item is not None and getattr(item, "_request", None):
            item._request = False  # type: ignore[attr-defined]
            item.funcargs = None  # type: ignore[attr-defined]

    def junit_xml(self) -> Any:
        """pytest's LogXML plugin, when --junitxml is on."""
        return junit_xml(self.config)
