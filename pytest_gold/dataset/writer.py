"""The dataset writer of ``--gold-results=sweep.zarr`` / ``.nc``, on the controller.

The pytest hook (the controller's main thread) checks each finished case against its
group's schema and queues its cell; one writer thread applies the queue and writes
whole chunks every ``--gold-results-interval`` seconds (at once with 0). So the
controller never waits for the disk, there is exactly one writer, and a SIGKILL loses
at most the cells queued since the last write began.
"""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import pytest_gold.dataset.netcdf as netcdf
from pytest_gold.dataset.cells import NOT_RUN, GroupSchema
from pytest_gold.dataset.chunks import AddVariables, CellWrite, ChunkWriter, GroupState
from pytest_gold.dataset.grid import (
    DEFAULT_CHUNK_CELLS,
    CaseParams,
    GroupLayout,
    build_layouts,
    cases_from_items,
    fit_to_stored,
)
from pytest_gold.dataset.meta import case_layout
from pytest_gold.dataset.options import DEFAULT_INTERVAL_SECONDS, interval_seconds
from pytest_gold.dataset.store import ZarrStore, remove_store, schema_from_attrs, schema_to_attrs
from pytest_gold.dataset.summary import DatasetPlugin, cell_message
from pytest_gold.policy.resume import DONE_OUTCOMES, PASSED_BEFORE
from pytest_gold.records.results import ResultsWriter

#: A write may take at most this share of the writer thread's time: when chunks are
#: written slower than that (cells scattered over many chunks), writes space out.
WRITE_TIME_SHARE = 0.25


class DatasetWriter(ResultsWriter):
    """Writes the grid of a run into a zarr store (and a netCDF file at the end)."""

    keeps_earlier_values = True

    def __init__(
        self,
        path: Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        interval: float | None = DEFAULT_INTERVAL_SECONDS,
        run_id: str | None = None,
        chunk_cells: int = DEFAULT_CHUNK_CELLS,
    ) -> None:
        self.path = path  # ResultsWriter's __init__ would create the directory already
        self.netcdf = path.suffix.lower() == ".nc"
        self.store_path = netcdf.journal_path(path) if self.netcdf else path
        self.resume = resume
        self.overwrite = overwrite
        self.interval = interval
        self.run_id = run_id or f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.chunk_cells = chunk_cells
        self.groups: dict[str, GroupState] = {}
        self.where: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.done: set[str] = set()
        self.arrived: set[str] = set()
        self.core: ChunkWriter | None = None
        self.failure: BaseException | None = None
        self._queue: list[CellWrite | AddVariables] = []
        self._first_queued = 0.0
        self._last_write_end = 0.0
        self._closing = False
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self.finished = False
        #: --collect-only: lay nothing out, write nothing.
        self.collect_only = False
        #: Every collected item, before deselection (set by DatasetPlugin).
        self.collected: list[Any] | None = None

    @classmethod
    def from_config(cls, config: pytest.Config, path: Path) -> DatasetWriter:
        resume = bool(config.getoption("gold_resume", False))
        overwrite = bool(config.getoption("gold_results_overwrite", False))
        if resume and overwrite:
            raise pytest.UsageError(
                f"--gold-results {path}: --gold-resume fills in the dataset's missing cells, "
                "--gold-results-overwrite replaces it: give only one of them."
            )
        controller = config.pluginmanager.get_plugin("gold-controller")
        writer = cls(
            path,
            resume=resume,
            overwrite=overwrite,
            interval=interval_seconds(config),
            run_id=getattr(controller, "run_id", None),
        )
        writer.collect_only = bool(config.option.collectonly)
        config.pluginmanager.register(DatasetPlugin(writer), "gold-dataset")
        return writer

    # -- start: the grid, the store ---------------------------------------------------------

    def start(self, items: Sequence[Any]) -> None:
        """The selected items; the grid also takes the values of deselected ones."""
        collected = self.collected if self.collected is not None else items
        selected = {item.nodeid for item in items}
        known = {item.nodeid for item in collected}  # a plugin may add items later
        every = [*collected, *(item for item in items if item.nodeid not in known)]
        self.start_cases(cases_from_items(every), selected)

    def start_cases(
        self, cases: Sequence[CaseParams], selected: Collection[str] | None = None
    ) -> None:
        """Lay out the grid and create (or reopen, for --gold-resume) the store; with
        nothing selected (or --collect-only), nothing is created."""
        layouts = build_layouts(cases, self.chunk_cells, selected)
        if not layouts or self.collect_only:
            return
        try:
            self._open_store(layouts)
        except ValueError as error:
            raise pytest.UsageError(f"--gold-results {self.path}: {error}") from None
        for state in self.groups.values():
            layout = state.layout
            for nodeid, cell in layout.cells.items():
                self.where[nodeid] = (layout.name, cell)
            for nodeid, reason in layout.unplaced.items():
                self.problems.append(f"{nodeid}: not in the dataset: {reason}")
            self.notes.extend(f"{layout.name}: {note}" for note in layout.notes)
        if self.interval is not None and self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="gold-dataset", daemon=True)
            self._thread.start()

    def _open_store(self, layouts: dict[str, GroupLayout]) -> None:
        store = ZarrStore(self.store_path)
        existing = [p for p in {self.path, self.store_path} if p.exists() or p.is_symlink()]
        if existing and not (self.resume or self.overwrite):
            raise ValueError(
                f"{existing[0]} exists. --gold-resume fills in its missing cells, "
                "--gold-results-overwrite replaces it; or give another path."
            )
        if existing and self.overwrite:
            for path in existing:
                if path == self.path and self.netcdf:
                    netcdf.remove_netcdf(path)
                else:
                    remove_store(path)
            existing = []
        if self.resume and self.netcdf and not self.store_path.exists() and self.path.exists():
            netcdf.seed_journal(self.path, self.store_path)
        run = {"run_id": self.run_id, "started": _now(), "resumed": bool(existing)}
        if not self.store_path.exists():
            store.create({"runs": [run]})
            stored = {}
        else:
            stored = store.read_groups()
            store.update_root_attrs({"runs": [*store.root_attrs().get("runs", []), run]})
        by_function = {group.function: group for group in stored.values()}
        taken = set(stored)
        for layout in layouts.values():
            found = by_function.get(layout.function)
            if found is None:
                layout.name = _free_name(layout.name, taken)
                taken.add(layout.name)
                schema = GroupSchema(layout.dims)
                store.add_group(layout, schema)
                self.groups[layout.name] = GroupState(layout, schema, fresh=True)
                continue
            try:
                grid = {dim: found.coords[dim] for dim in found.dims}
                fitted = fit_to_stored(layout, grid, found.chunks)
            except ValueError as error:
                raise ValueError(
                    f"the store was written by another sweep: group {found.name!r} "
                    f"({layout.function}): {error}. Write to another path, or replace it "
                    "with --gold-results-overwrite."
                ) from None
            fitted.name = found.name
            schema = schema_from_attrs(fitted.dims, found.schema_data, found.coords)
            state = GroupState(fitted, schema, fresh=False)
            self.groups[found.name] = state
            self.done.update(self._done_cells(store, state))
        self.core = ChunkWriter(store, self.groups)

    def _done_cells(self, store: ZarrStore, state: GroupState) -> set[str]:
        outcome = state.schema.cell_names["outcome"]
        layout = state.layout
        every = tuple(slice(0, n) for n in layout.shape)
        outcomes = store.read_block(layout.name, outcome, every)
        return {nodeid for nodeid, cell in layout.cells.items() if outcomes[cell] in DONE_OUTCOMES}

    def resume_done(self) -> set[str]:
        """Cases whose cells hold a passing outcome already (--gold-resume runs the rest)."""
        return set(self.done)

    # -- cases ------------------------------------------------------------------------------

    def write(self, row: Mapping[str, Any]) -> None:
        self.write_case(row, ())

    def write_case(self, row: Mapping[str, Any], reports: Sequence[Any]) -> None:
        record: dict[str, Any] = {}
        for report in reports:
            record.update(getattr(report, "gold_record", None) or {})
        self.record_case(row, record, case_layout(reports), cell_message(row, reports))

    def record_case(
        self,
        row: Mapping[str, Any],
        record: Mapping[str, Any],
        layout: Mapping[str, Any] | None = None,
        message: str | None = None,
    ) -> None:
        """Queue one finished case's cell (its recorded values checked first)."""
        nodeid = row["nodeid"]
        where = self.where.get(nodeid)
        if where is None or nodeid in self.arrived:
            return  # not on the grid (reported at start), or a second report of it
        self.arrived.add(nodeid)
        name, cell = where
        if row.get("outcome") == PASSED_BEFORE:
            self._enqueue([CellWrite(name, cell, None)])
            return
        state = self.groups[name]
        prepared = state.schema.prepare(nodeid, record, layout)
        self.problems.extend(f"{nodeid}: {error}" for error in prepared.errors)
        operations: list[CellWrite | AddVariables] = []
        if prepared.new_variables:
            attrs = schema_to_attrs(state.schema)  # now, before the next case adds more
            operations.append(AddVariables(name, prepared.new_variables, prepared.new_dims, attrs))
        names = state.schema.cell_names
        values: dict[str, Any] = dict(prepared.values)
        engine = row.get("engine")
        values.update(
            {
                names["outcome"]: row.get("outcome") or "",
                names["duration"]: float(row.get("duration") or 0.0),
                names["host"]: str(row.get("host") or ""),
                names["message"]: message if message is not None else row.get("message") or "",
                names["run_id"]: self.run_id,
                names["nodeid"]: nodeid,
                names["record_error"]: "; ".join(prepared.errors),
            }
        )
        if isinstance(engine, int) and not isinstance(engine, bool):
            values[names["engine"]] = engine
        operations.append(CellWrite(name, cell, values))
        self._enqueue(operations)

    def _enqueue(self, operations: list[CellWrite | AddVariables]) -> None:
        if self.interval == 0:  # write now
            self._apply_and_flush(operations)
            return
        with self._lock:
            if not self._queue:
                self._first_queued = time.monotonic()
            self._queue.extend(operations)
            self._lock.notify()

    def _apply_and_flush(self, operations: list[CellWrite | AddVariables]) -> None:
        self._apply(operations)
        self._flush()

    def _apply(self, operations: list[CellWrite | AddVariables]) -> None:
        if self.failure is not None or self.core is None:
            return
        try:
            for operation in operations:
                self.core.apply(operation)
        except Exception as error:  # the store was removed, ...
            self.failure = error

    def _flush(self) -> None:
        if self.failure is not None or self.core is None:
            return
        try:
            self.core.flush()
        except Exception as error:  # the disk is full, ...
            self.failure = error
        self._last_write_end = time.monotonic()

    def _write_due(self, unwritten_since: float) -> float:
        """When the next write is due: ``interval`` after the oldest unwritten cell
        arrived, but not before the writes so far took at most WRITE_TIME_SHARE of the
        time (cells scattered over many chunks make each write longer)."""
        spent = self.core.last_flush_seconds if self.core else 0.0
        rest = spent * (1 / WRITE_TIME_SHARE - 1)
        return max(unwritten_since + (self.interval or 0.0), self._last_write_end + rest)

    def _run(self) -> None:
        """The writer thread: put cells into their chunks as they come (the queue stays
        short), and write the chunks when a write is due (:meth:`_write_due`)."""
        unwritten_since: float | None = None
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    if unwritten_since is None:
                        self._lock.wait()
                        continue
                    left = self._write_due(unwritten_since) - time.monotonic()
                    if left <= 0:
                        break
                    self._lock.wait(left)
                operations, self._queue = self._queue, []
                if operations and unwritten_since is None:
                    unwritten_since = self._first_queued
                closing = self._closing
            self._apply(operations)
            due = unwritten_since is not None and time.monotonic() >= self._write_due(
                unwritten_since
            )
            if closing or due:
                self._flush()
                unwritten_since = None
            if closing:
                return

    # -- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        """Mark the selected cases that never ran, write everything, export netCDF."""
        if self.finished:
            return
        self.finished = True
        if self.core is None:  # nothing was laid out
            return
        marks: list[CellWrite | AddVariables] = []
        for nodeid, (name, cell) in self.where.items():
            if nodeid in self.arrived:
                continue
            names = self.groups[name].schema.cell_names
            values = {names["outcome"]: NOT_RUN, names["nodeid"]: nodeid}
            values[names["run_id"]] = self.run_id
            marks.append(CellWrite(name, cell, values, only_if_empty=True))
        self._stop(marks)
        if self.failure is None and self.netcdf:
            try:
                netcdf.export(self.store_path, self.path)
            except Exception as error:
                self.failure = error

    def flush(self) -> None:
        """Write what is queued now (without a writer thread: interval None)."""
        assert self._thread is None, "the writer thread writes on its own"
        with self._lock:
            operations, self._queue = self._queue, []
        self._apply_and_flush(operations)

    def _stop(self, last: list[CellWrite | AddVariables]) -> None:
        if self._thread is None:
            with self._lock:
                operations, self._queue = [*self._queue, *last], []
            self._apply_and_flush(operations)
            return
        with self._lock:
            self._queue.extend(last)
            self._closing = True
            self._lock.notify()
        self._thread.join()

    def abandon(self) -> None:
        """Stop without writing what is queued: what a SIGKILL leaves (for tests)."""
        self.finished = True
        with self._lock:
            self._queue = []
            self._closing = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join()


def _free_name(name: str, taken: set[str]) -> str:
    candidate, count = name, 1
    while candidate in taken:
        candidate = f"{name}_{count}"
        count += 1
    return candidate


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
