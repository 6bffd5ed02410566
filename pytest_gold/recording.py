"""Recording values per case: the ``gold_record`` fixture and the ``--gold-results`` table.

The fixture and the report hook run wherever a case runs (a worker, or a plain pytest
process); the recorder runs on the controller only and sees every finished case through
``pytest_runtest_logreport``, whether the reports were made there or replayed.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

from . import dataset, resume
from .dataset.meta import REPORT_ATTRIBUTE as LAYOUT_ATTRIBUTE
from .dataset.meta import record_layout
from .results import ResultsWriter, build_row, writer_for


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


@pytest.fixture
def gold_record(request: pytest.FixtureRequest) -> GoldRecord:
    """A mapping for the values this case produced; they travel with its report and
    become columns of ``--gold-results`` (and reach the ``pytest_gold_record`` hook)."""
    record = GoldRecord()
    request.node.stash[_record_key] = record
    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    record = item.stash.get(_record_key, None)
    if record:
        report.gold_record = dict(record)
    if record is not None:
        layout = record_layout(record, record.dims, record.coords, record.attrs)
        if layout:  # numpy types and dataset dims/coords/attrs, only when there are any
            setattr(report, LAYOUT_ATTRIBUTE, layout)
    return report


class ResultsRecorder:
    """Builds one row per finished case on the controller; writes it and calls the hook."""

    def __init__(self, config: pytest.Config, writer: ResultsWriter | None) -> None:
        self.config = config
        self.writer = writer
        self.params: dict[str, dict[str, Any]] = {}
        self.reports: dict[str, list[pytest.TestReport]] = {}
        self.done: set[str] = set()
        #: Outcome word of every case that finished in this run.
        self.outcomes: dict[str, str] = {}

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            callspec = getattr(item, "callspec", None)
            self.params[item.nodeid] = dict(callspec.params) if callspec is not None else {}
        if self.writer is not None:
            self.writer.start(session.items)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid in self.done:
            return  # a late teardown error of a finished case: its row is written
        self.reports.setdefault(report.nodeid, []).append(report)
        if report.when != "teardown":
            return
        reports = self.reports.pop(report.nodeid)
        self.done.add(report.nodeid)
        record: dict[str, Any] = {}
        for phase in reports:
            record.update(getattr(phase, "gold_record", None) or {})
        row = build_row(report.nodeid, self.params.get(report.nodeid, {}), reports, record)
        self.outcomes[report.nodeid] = row["outcome"]
        if self.writer is not None:
            self.writer.write_case(row, reports)
        self.config.hook.pytest_gold_record(config=self.config, report=report, record=row)

    def resume_done(self) -> set[str] | None:
        """Cases done according to the results being written (a dataset), if it knows."""
        return self.writer.resume_done() if self.writer is not None else None

    def pytest_sessionfinish(self) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is not None and self.outcomes:
            previous = cache.get(resume.CACHE_KEY, [])
            cache.set(resume.CACHE_KEY, resume.update_done(previous, self.outcomes))
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def make_recorder(config: pytest.Config, path: str | None) -> ResultsRecorder:
    writer = None
    if path and dataset.is_dataset_path(path):
        writer = dataset.open_writer(config, path)
    elif path:
        try:
            writer = writer_for(path)
        except ValueError as error:
            raise pytest.UsageError(str(error)) from None
    return ResultsRecorder(config, writer)
