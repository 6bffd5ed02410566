"""The worker: a pytest session in its own process, owned by an engine's supervisor.

Started as ``python -m pytest_gold.worker FD TAG LAUNCHED_NS ENGINE_PID`` by an engine's
supervisor, once per run and engine (possibly ahead of its run); see
:mod:`pytest_gold.worker.startup`. It receives a
:class:`~pytest_gold.protocol.messages.RunSpec` over the socket ``FD``, runs ``pytest.main``
with the controller's arguments (so conftest files, options and ini settings apply),
collects only the files holding selected cases, then runs the batches of node ids it is
sent and streams every log event back (:mod:`pytest_gold.protocol.control`). Being a
fresh process per run is what makes edited simulation code take effect and keeps module
state from leaking.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pytest_gold.protocol.xdistcompat as xdistcompat
import pytest_gold.records.recording as recording
from pytest_gold.protocol.collecting import not_collected_detail
from pytest_gold.protocol.control import (
    EXIT_REQUESTED,
    INTERRUPTED,
    BatchDone,
    CaptureFd,
    Channel,
    Finish,
    Ready,
    RunBatch,
    TeardownDone,
)
from pytest_gold.protocol.junitxml import forward_suite_properties
from pytest_gold.protocol.messages import (
    Event,
    ExitRequested,
    LogFinish,
    LogStart,
    NotRun,
    ReportEvent,
    RunSpec,
    SuitePropertyEvent,
)
from pytest_gold.protocol.serialization import (
    UnserializableValue,
    report_data_to_wire,
    report_event,
    unsendable_report,
    warning_to_event,
    with_values_as_text,
)
from pytest_gold.protocol.synthetic import plain_report
from pytest_gold.protocol.timing import WORKER_EXIT_GRACE_SECONDS


class QuietTerminal:
    """Gives ``sys.stdout`` back once the terminal reporter took the null file."""

    real_stdout: Any = None

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        if self.real_stdout is not None:
            sys.stdout = self.real_stdout


class WorkerPlugin:
    """Runs inside the worker's pytest session; replaces the normal run loop."""

    def __init__(self, spec: RunSpec, channel: Channel, engine_tag: str) -> None:
        self.spec = spec
        self.channel = channel
        self.engine_tag = engine_tag
        self.config: pytest.Config | None = None
        self.items: dict[str, pytest.Item] = {}
        self.collect_errors: dict[str, str] = {}
        #: The last case run; the fixtures of its parents may still be set up.
        self.previous: pytest.Item | None = None
        self.kept_chain: list[pytest.Item | pytest.Collector] = []
        self.capture_fd_sent = False
        #: A descriptor of the worker's own output file (shares its file offset).
        self.log_fd = -1
        self.quiet_terminal = QuietTerminal()
        #: Cases whose report could not be sent (reported once, as a failure).
        self.unsendable: set[str] = set()
        #: A case is running: SIGINT interrupts it (see ``on_interrupt``).
        self.in_case = False
        #: SIGINT came while no case ran: the next case of the batch does not start.
        self.interrupt_pending = False
        #: The last case whose start was reported.
        self.last_started: str | None = None

    def on_interrupt(self, signum: int, frame: Any) -> None:
        """SIGINT, the supervisor's stop request: a running case is interrupted as by
        Ctrl-C. Outside a case it only keeps the next case from starting (a
        KeyboardInterrupt there ended the session, and the supervisor lost the batch it had
        just sent); during a send, the case's next event raises it."""
        if self.in_case and not self.channel.sending:
            raise KeyboardInterrupt
        self.interrupt_pending = True

    def send_event(self, event: Event) -> None:
        self.channel.send(event)
        if self.in_case and self.interrupt_pending:
            raise KeyboardInterrupt  # it came while a message was going out

    # -- configuration -----------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> object:
        # The xdist convention, set where pytest-xdist sets it (before any plugin's
        # pytest_configure): plugins (junitxml, cacheprovider, stepwise, pytest-cov, ...)
        # check for ``workerinput`` and leave files and summaries to the controller; what
        # they send back in ``workeroutput`` goes to the controller when the session ends.
        xdistcompat.configure_worker(config, self.spec, self.engine_tag, self.channel.send)
        return (yield)

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config
        # The terminal reporter, created by the configure hooks that follow, writes to
        # nothing: the worker's own output then holds only what cases print (streamed
        # with -s) and fatal errors (quoted in crash reports).
        self.quiet_terminal.real_stdout = sys.stdout
        sys.stdout = open(os.devnull, "w")
        recording.attach_records(config)  # gold_record values travel with the reports
        # Testsuite properties plugins add (hypothesis's statistics) go to the controller.
        forward_suite_properties(config, self.send_suite_property)
        option = config.option
        # The controller selects, orders and stops; the worker runs exactly what it is sent.
        option.maxfail = 0
        option.lf = option.failedfirst = option.newfirst = False
        option.stepwise = option.stepwise_skip = False
        option.keyword = option.markexpr = ""
        option.deselect = []
        option.continue_on_collection_errors = True
        option.gold = False
        # Nobody reads a worker's terminal; its summary hooks (some import a lot) would
        # only delay the end of the run. The controller prints the real summary.
        option.no_summary = option.no_header = True
        if option.basetemp:
            # Like pytest-xdist: one directory per worker below the given one, since each
            # session empties its basetemp when it starts.
            option.basetemp = os.path.join(option.basetemp, self.engine_tag.replace(":", "-"))
        # Collect from the controller's own arguments, which makes node ids the same (files
        # outside the rootdir are named after the argument they were found under); the
        # CollectionPruner keeps the worker to the files of selected cases.
        config.args = list(self.spec.collect_args)

    def send_suite_property(self, name: str, value: str) -> None:
        self.send_event(SuitePropertyEvent(name=name, value=value))

    @pytest.fixture
    def record_testsuite_property(self) -> Callable[[str, object], None]:
        """Worker version of pytest's fixture: the controller writes the JUnit XML."""

        def record(name: str, value: object) -> None:
            if not isinstance(name, str):
                raise TypeError(
                    f"name parameter needs to be a string, but {type(name).__name__} given"
                )
            self.send_event(SuitePropertyEvent(name=name, value=str(value)))

        return record

    @pytest.fixture
    def record_xml_attribute(self, request: pytest.FixtureRequest) -> Callable[[str, object], None]:
        """Worker version of pytest's fixture: attributes travel on the case's reports."""
        request.node.warn(
            pytest.PytestExperimentalApiWarning("record_xml_attribute is an experimental feature")
        )
        attributes: dict[str, str] = request.node.stash.setdefault(_xml_attributes_key, {})

        def record(name: str, value: object) -> None:
            attributes[name] = str(value)

        return record

    # -- events ------------------------------------------------------------------------

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # Inside a case's setup, fds 1 and 2 are the files pytest captures into (one each
        # per session). Duplicates let the supervisor read what a case wrote before it
        # crashed, which would otherwise die with the process.
        if not self.capture_fd_sent:
            self.capture_fd_sent = True
            self.channel.send(CaptureFd(stdout=os.dup(1), stderr=os.dup(2)))
            # Wait until the supervisor holds the file: a case that crashes at once must
            # not take it along before it was opened.
            self.channel.recv()

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors[report.nodeid] = str(report.longrepr)

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.log_start(nodeid, location)

    def log_start(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        offset = os.lseek(self.log_fd, 0, os.SEEK_CUR) if self.log_fd >= 0 else 0
        self.send_event(LogStart(nodeid=nodeid, location=location, log_offset=offset))
        self.last_started = nodeid  # after: the supervisor knows it started (or may know)

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.send_event(LogFinish(nodeid=nodeid, location=location))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        report: pytest.TestReport = yield
        attributes = item.stash.get(_xml_attributes_key, None)
        if attributes and report.when == "teardown":
            report.gold_xml_attributes = dict(attributes)  # type: ignore[attr-defined]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        assert self.config is not None
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        try:
            event = report_event(data)  # encoded once, here
        except (UnserializableValue, TypeError, ValueError) as error:
            if report.nodeid in self.unsendable:
                # Already failed for this: later phases go with the values as text.
                wire = report_data_to_wire(with_values_as_text(data))
            else:
                self.unsendable.add(report.nodeid)
                wire = unsendable_report(data, error)
            event = ReportEvent(data=wire)
        self.send_event(event)

    def pytest_warning_recorded(
        self, warning_message: warnings.WarningMessage, when: str, nodeid: str, location: Any
    ) -> None:
        # Collection and configuration warnings are the controller's own; only what the
        # cases raise is new information.
        if when == "runtest":
            self.send_event(warning_to_event(warning_message, when, nodeid))

    # -- the run loop --------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        self.items = {item.nodeid: item for item in session.items}
        self.channel.send(Ready(collected=len(self.items)))
        while True:
            command = self.channel.recv()
            if isinstance(command, Finish):
                self.teardown_kept(None)
                self.channel.send(TeardownDone())
                # The controller has what it needs; the rest of the session (summaries,
                # sessionfinish hooks) runs on without it, within a bounded time.
                _exit_after(WORKER_EXIT_GRACE_SECONDS)
                return True
            if isinstance(command, RunBatch):
                self.run_batch(command.batch.nodeids, command.batch.lookahead)
                self.channel.send(BatchDone())
            # Anything else (CaptureFdTaken): the answer to a case's first setup that an
            # interruption cut short.

    def run_batch(self, nodeids: list[str], lookahead: str | None) -> None:
        for index, nodeid in enumerate(nodeids):
            item = self.items.get(nodeid)
            if item is None:
                self.report_not_collected(nodeid)
                continue
            if self.previous is not None and not _is_prefix(self.kept_chain, item.listchain()):
                self.teardown_kept(item)
            nextitem = self.next_item(nodeids[index + 1 :], lookahead)
            try:
                self.in_case = True  # from here on SIGINT raises KeyboardInterrupt
                if self.interrupt_pending:
                    raise KeyboardInterrupt
                item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                self.in_case = False
            except pytest.exit.Exception as exit_:
                self.in_case = False
                self.previous, self.kept_chain = item, item.listchain()
                self.send_event(
                    ExitRequested(nodeid=nodeid, reason=exit_.msg, returncode=exit_.returncode)
                )
                self.send_event(NotRun(nodeids=nodeids[index + 1 :], reason=EXIT_REQUESTED))
                return
            except KeyboardInterrupt:
                self.in_case = self.interrupt_pending = False
                if self.last_started != nodeid:  # it never started: its fixtures are not set up
                    self.send_event(NotRun(nodeids=nodeids[index:], reason=INTERRUPTED))
                    return
                self.previous, self.kept_chain = item, item.listchain()
                self.send_event(NotRun(nodeids=nodeids[index + 1 :], reason=INTERRUPTED))
                return
            self.previous = item
            self.kept_chain = _kept_after(item, nextitem)

    def next_item(self, rest_of_batch: list[str], lookahead: str | None) -> pytest.Item | None:
        for nodeid in rest_of_batch:
            if nodeid in self.items:
                return self.items[nodeid]
        if lookahead is None:
            return None
        # The next case of the whole run: tear down exactly what a plain run would. If it
        # ends up on another engine, the next case here tears down the rest (teardown_kept).
        return self.items.get(lookahead)

    def teardown_kept(self, nextitem: pytest.Item | None) -> None:
        """Tear down fixtures kept for a lookahead case that went to another engine.

        Errors are reported on the case that set the fixtures up, as a plain run would.
        """
        previous = self.previous
        if previous is None or not self.kept_chain:
            return
        self.kept_chain = _kept_after(previous, nextitem)
        if nextitem is None:
            self.previous = None
        # The case's own teardown hooks already ran (they clear per-case state), so only the
        # fixture stack is unwound here. pytest has no public API for that step.
        setup_state = previous.session._setupstate
        call = pytest.CallInfo.from_call(
            lambda: setup_state.teardown_exact(nextitem),
            when="teardown",
            reraise=(pytest.exit.Exception, KeyboardInterrupt),
        )
        report = previous.ihook.pytest_runtest_makereport(item=previous, call=call)
        if report.failed:
            self.log_start(previous.nodeid, previous.location)
            previous.ihook.pytest_runtest_logreport(report=report)
            self.send_event(LogFinish(nodeid=previous.nodeid, location=previous.location))

    def report_not_collected(self, nodeid: str) -> None:
        path = nodeid.split("::", 1)[0]
        assert self.config is not None
        detail = not_collected_detail(
            nodeid, self.items, self.collect_errors, self.config.rootpath, Path(self.spec.rootdir)
        )
        message = (
            f"pytest-gold: {nodeid} was collected by the controller but not on engine "
            f"{self.engine_tag}. Collection there may depend on something the engine lacks "
            "(an environment variable, a file outside the shared filesystem, a package). "
            f"What the engine's collection said:\n{detail}"
        )
        location = (path, None, nodeid)
        self.log_start(nodeid, location)
        for when, outcome, longrepr in (("setup", "failed", message), ("teardown", "passed", None)):
            data = plain_report(nodeid, location, when, outcome, longrepr)
            self.send_event(ReportEvent(data=data))
        self.send_event(LogFinish(nodeid=nodeid, location=location))


_xml_attributes_key = pytest.StashKey[dict[str, str]]()


def _is_prefix(prefix: list[Any], chain: list[Any]) -> bool:
    return chain[: len(prefix)] == prefix


def _kept_after(item: pytest.Item, nextitem: pytest.Item | None) -> list[Any]:
    """The collectors whose fixtures stay set up after ``item`` ran with ``nextitem``."""
    if nextitem is None:
        return []
    kept = []
    for mine, theirs in zip(item.listchain(), nextitem.listchain(), strict=False):
        if mine is not theirs:
            break
        kept.append(mine)
    return kept


def _exit_after(seconds: float) -> None:
    """End this process after ``seconds`` whatever it is doing (a hung sessionfinish)."""
    timer = threading.Timer(seconds, os._exit, args=(0,))
    timer.daemon = True
    timer.start()
