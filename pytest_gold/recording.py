"""Recording values per case: the ``gold_record`` fixture and the ``--gold-results`` table.

The fixture and the report hook run wherever a case runs (a worker, or a plain pytest
process); the recorder runs on the controller only and sees every finished case through
``pytest_runtest_logreport``, whether the reports were made there or replayed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from . import carryforward, resume
from .results import ResultsWriter, build_row, check_format, writer_for


class GoldRecord(MutableMapping[str, Any]):
    """What a case records: ``gold_record["tb_k"] = 271.3``. Numbers, strings, lists,
    dicts, numpy scalars and (small) arrays; each key becomes a results-table column."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

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
    return report


class ResultsRecorder:
    """Builds one row per finished case on the controller; writes it and calls the hook."""

    def __init__(
        self,
        config: pytest.Config,
        writer: ResultsWriter | None,
        earlier: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.writer = writer
        self.params: dict[str, dict[str, Any]] = {}
        self.reports: dict[str, list[pytest.TestReport]] = {}
        self.done: set[str] = set()
        #: Outcome word of every case that finished in this run.
        self.outcomes: dict[str, str] = {}
        #: Node ids of the rows carried forward from the same table of an earlier run.
        self.earlier: set[str] = set(earlier or ())
        #: Passed-before cases whose values are not in this run's table.
        self.without_values = 0
        self.closed = False

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            callspec = getattr(item, "callspec", None)
            self.params[item.nodeid] = dict(callspec.params) if callspec is not None else {}

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
            if row["outcome"] != resume.PASSED_BEFORE:
                self.writer.write(row)
            elif report.nodeid not in self.earlier:
                self.writer.write(row)
                self.without_values += 1
            # else: the row of the run that ran it is in the table already
        self.config.hook.pytest_gold_record(config=self.config, report=report, record=row)

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
            previous = cache.get(resume.CACHE_KEY, [])
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


def make_recorder(config: pytest.Config, path: str | None) -> ResultsRecorder:
    """The recorder, with a writer for ``--gold-results``: an existing table is carried
    forward (--gold-resume), replaced (--gold-results-overwrite) or refused."""
    if not path:
        return ResultsRecorder(config, None)
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
