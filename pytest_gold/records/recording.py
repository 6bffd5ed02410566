"""Recording values per case: the ``gold_record`` fixture and the ``--gold-results`` table.

The fixture runs wherever a case runs (a worker, or a plain pytest process). What it
holds travels on the case's reports only where something reads it (:class:`RecordAttacher`).
The recorder runs on the controller only and sees every finished case through
``pytest_runtest_logreport``, whether the reports were made there or replayed.

Without ``--gold`` and ``--gold-results`` none of this runs (see :func:`configure`): a
plain ``pytest`` with pytest-gold installed pays for the fixture's definition and one
look at the end of collection, not a hook call per report, and never touches a
parametrize value.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import pytest

import pytest_gold.dataset as dataset
import pytest_gold.policy.resume as resume
import pytest_gold.records.carryforward as carryforward
from pytest_gold.dataset.meta import REPORT_ATTRIBUTE as LAYOUT_ATTRIBUTE
from pytest_gold.dataset.meta import record_layout
from pytest_gold.records.cachedata import has_entry, read_done
from pytest_gold.records.results import (
    RERUN,
    ResultsWriter,
    build_row,
    case_outcome,
    check_format,
    writer_for,
)

#: Plugin names (``-p no:NAME`` does not apply to them; they are internal).
FIXTURE_PLUGIN = "gold-recording"
ATTACHER_PLUGIN = "gold-record-attacher"
RECORDER_PLUGIN = "gold-results"
SWITCH_PLUGIN = "gold-recording-switch"


class GoldRecord(MutableMapping[str, Any]):
    """What a case records: ``gold_record["tb_k"] = 271.3``. Numbers, strings, lists,
    dicts, numpy scalars and (small) arrays; each key becomes a results-table column.

    For a dataset (``--gold-results=x.zarr``): ``dims[key]`` names an array's own
    dimensions, ``coords[dim]`` gives a dimension's coordinate, ``attrs[name]`` a
    variable's (or coordinate's) attributes, such as units.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self.dims: dict[str, tuple[str, ...]] = {}
        self.coords: dict[str, Any] = {}
        self.attrs: dict[str, dict[str, Any]] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError(f"gold_record keys are non-empty strings, not {key!r}")
        self._values[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __delitem__(self, key: str) -> None:
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"GoldRecord({self._values!r})"


_record_key = pytest.StashKey[GoldRecord]()


class RecordFixture:
    """The fixture, registered in every session (it costs its definition only)."""

    @pytest.fixture
    def gold_record(self, request: pytest.FixtureRequest) -> GoldRecord:
        """A mapping for the values this case produced; they travel with its report and
        become columns of ``--gold-results`` (and reach the ``pytest_gold_record`` hook)."""
        record = GoldRecord()
        request.node.stash[_record_key] = record
        return record


class RecordAttacher:
    """Puts what a case recorded on its reports, where a recorder (here or on the
    controller) will read them."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        record = item.stash.get(_record_key, None)
        if record:
            report.gold_record = dict(record)
        if record is not None:
            layout = record_layout(record, record.dims, record.coords, record.attrs)
            if layout:  # numpy types and dataset dims/coords/attrs, only when there are any
                setattr(report, LAYOUT_ATTRIBUTE, layout)
        return report


def attach_records(config: pytest.Config) -> None:
    """Make ``gold_record`` values travel on reports (idempotent)."""
    if not config.pluginmanager.has_plugin(ATTACHER_PLUGIN):
        config.pluginmanager.register(RecordAttacher(), ATTACHER_PLUGIN)


class ResultsRecorder:
    """Follows every finished case on the controller: its outcome (for ``--gold-resume``)
    and, where a results file or a ``pytest_gold_record`` hook wants it, its row."""

    def __init__(
        self,
        config: pytest.Config,
        writer: ResultsWriter | None,
        earlier: Mapping[str, Any] | None = None,
        *,
        rows: bool = False,
    ) -> None:
        self.config = config
        self.writer = writer
        #: Rows are built (and parametrize values turned into cells) only when wanted.
        self.rows = rows or writer is not None
        self.params: dict[str, dict[str, Any]] = {}
        self.reports: dict[str, list[pytest.TestReport]] = {}
        self.done: set[str] = set()
        #: Cases whose current attempt ends in a rerun (pytest-rerunfailures).
        self.rerun: set[str] = set()
        #: Outcome word of every case that finished in this run.
        self.outcomes: dict[str, str] = {}
        #: Node ids of the rows carried forward from the same table of an earlier run.
        self.earlier: set[str] = set(earlier or ())
        #: Passed-before cases whose values are not in this run's table.
        self.without_values = 0
        self.closed = False

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.rows = self.rows or wants_rows(self.config)
        if not self.rows:
            return
        for item in session.items:
            callspec = getattr(item, "callspec", None)
            # A shallow copy: the values themselves become cells only as rows are built.
            self.params[item.nodeid] = dict(callspec.params) if callspec is not None else {}
        if self.writer is not None:
            self.writer.start(session.items)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        if nodeid in self.done:
            return  # a late teardown error of a finished case: its row is written
        if report.outcome == RERUN:
            # pytest-rerunfailures: this attempt failed and the case runs again; the
            # outcome is the last attempt's, so this attempt's reports are dropped.
            self.rerun.add(nodeid)
        if report.when != "teardown":
            # Without rows, a phase that passed cannot change the case's outcome.
            if self.rows or not (report.passed and not hasattr(report, "wasxfail")):
                self.reports.setdefault(nodeid, []).append(report)
            return
        reports = [*self.reports.pop(nodeid, ()), report]
        if nodeid in self.rerun:
            self.rerun.discard(nodeid)
            return
        self.done.add(nodeid)
        if not self.rows:
            self.outcomes[nodeid] = case_outcome(reports)
            return
        record: dict[str, Any] = {}
        for phase in reports:
            record.update(getattr(phase, "gold_record", None) or {})
        row = build_row(nodeid, self.params.pop(nodeid, {}), reports, record)
        self.outcomes[nodeid] = row["outcome"]
        if self.writer is not None:
            if row["outcome"] != resume.PASSED_BEFORE or self.writer.keeps_earlier_values:
                self.writer.write_case(row, reports)
            elif nodeid not in self.earlier:
                self.writer.write_case(row, reports)
                self.without_values += 1
            # else: the row of the run that ran it is in the table already
        self.config.hook.pytest_gold_record(config=self.config, report=report, record=row)

    def resume_done(self) -> set[str] | None:
        """Cases done according to the results being written (a dataset), if it knows."""
        return self.writer.resume_done() if self.writer is not None else None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Say where the values of passed-before cases are when this table lacks them."""
        if self.writer is None or not self.without_values:
            return
        count = self.without_values
        cases = f"{count} passed-before case{'s' if count != 1 else ''}"
        cache = getattr(self.config, "cache", None)
        remembered = cache.get(carryforward.RESULTS_FILES_CACHE_KEY, []) if cache else []
        here = self.config.invocation_params.dir
        others = [shown_path(p, here) for p in carryforward.elsewhere(remembered, self.writer.path)]
        if others:
            where = (
                f"their rows are in the results table of an earlier run: {others[0]}"
                + (f" (earlier still: {', '.join(others[1:3])})" if others[1:] else "")
                + f". Resume with --gold-results={others[0]} to keep one table per campaign"
            )
        else:
            where = "no earlier results table of this project is known (pytest's cache)"
        table = shown_path(str(self.writer.path), here)
        terminalreporter.write_line(
            f"gold: {cases} have no recorded values in {table}: {where}.", yellow=True
        )

    def pytest_sessionfinish(self) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is not None and self.outcomes:
            previous = read_done(self.config)
            cache.set(resume.CACHE_KEY, resume.update_done(previous, self.outcomes))
        if self.writer is not None and not self.closed:
            self.closed = True
            self.writer.close()
            if cache is not None:
                key = carryforward.RESULTS_FILES_CACHE_KEY
                cache.set(key, carryforward.remember(cache.get(key, []), self.writer.path))


def shown_path(path: str, here: Path) -> str:
    """``path`` relative to ``here`` when it is below it, else absolute."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(here.resolve()))
    except ValueError:
        return str(absolute)


def wants_rows(config: pytest.Config) -> bool:
    """Whether a conftest or plugin implements ``pytest_gold_record`` (all conftests of
    the collected directories are loaded once collection is done)."""
    return bool(config.hook.pytest_gold_record.get_hookimpls())


class RecordingSwitch:
    """In a plain run without ``--gold-results``: turns recording on after collection,
    only if something needs it. That is a ``pytest_gold_record`` hook, or (for
    ``--gold-resume``) a ``gold/passed`` cache entry that a ``--gold`` run wrote, which
    must not keep calling a case passed after this run failed it."""

    def __init__(self, worker: bool) -> None:
        self.worker = worker

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        config = session.config
        rows = wants_rows(config)
        if self.worker:  # a pytest-xdist worker: its controller builds the rows
            if rows:
                attach_records(config)
            return
        track = has_entry(config, resume.CACHE_KEY)
        if not (rows or track):
            return
        if rows:
            attach_records(config)
        recorder = ResultsRecorder(config, None, rows=rows)
        config.pluginmanager.register(recorder, RECORDER_PLUGIN)
        recorder.pytest_collection_finish(session)  # registered too late for this call


def configure(config: pytest.Config) -> None:
    """Register what this session needs: the fixture always; reports carrying records,
    the recorder and the results file only in a ``--gold`` run, with ``--gold-results``,
    or when :class:`RecordingSwitch` finds a use for them."""
    manager = config.pluginmanager
    manager.register(RecordFixture(), FIXTURE_PLUGIN)
    worker = hasattr(config, "workerinput")
    path = config.getoption("gold_results")
    if worker:  # ours attach records explicitly (pytest_gold.worker); pytest-xdist's:
        if path:
            attach_records(config)
        else:
            manager.register(RecordingSwitch(worker=True), SWITCH_PLUGIN)
        return
    if config.getoption("gold") or path:
        attach_records(config)
        manager.register(make_recorder(config, path), RECORDER_PLUGIN)
    else:
        manager.register(RecordingSwitch(worker=False), SWITCH_PLUGIN)


def make_recorder(config: pytest.Config, path: str | None) -> ResultsRecorder:
    """The recorder, with a writer for ``--gold-results``: a dataset (.zarr, .nc) is
    filled in (--gold-resume); an existing table is carried forward (--gold-resume),
    replaced (--gold-results-overwrite) or refused."""
    if not path:
        return ResultsRecorder(config, None)
    if dataset.is_dataset_path(path):
        return ResultsRecorder(config, dataset.open_writer(config, path))
    resuming = bool(config.getoption("gold_resume"))
    overwrite = bool(config.getoption("gold_results_overwrite"))
    if resuming and overwrite:
        raise pytest.UsageError(
            f"--gold-resume carries the rows of --gold-results {path} forward, "
            f"{carryforward.OVERWRITE_OPTION} replaces them: give one of them (or another "
            "path for this run's table)."
        )
    try:
        check_format(path)
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    target = Path(path).expanduser()
    existing = carryforward.existing_files(target)
    earlier: dict[str, dict[str, Any]] = {}
    if existing and not overwrite:
        if not resuming:
            raise pytest.UsageError(carryforward.refusal(path, existing))
        try:
            earlier = carryforward.read_table(target)
        except carryforward.UnreadableTable as error:
            raise pytest.UsageError(
                f"--gold-results {path}: --gold-resume cannot carry the earlier rows forward, "
                f"the table cannot be read ({error}). Give another path, or "
                f"{carryforward.OVERWRITE_OPTION} to replace it."
            ) from None
    return ResultsRecorder(config, writer_for(path, earlier), earlier)
