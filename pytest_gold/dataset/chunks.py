"""Cells into chunks, chunks into the store: the writing core (no threads, no pytest).

Every write is a whole chunk of every variable of a group, from a buffer that holds
all that is known of that chunk: the cells that arrived in this run, and (for a store
that existed before, or a chunk written before and dropped from memory) the cells
read back from the store first. No write can therefore lose another's cells, whatever
the arrival order: this is the single-writer form of xarray's "region writes must be
aligned with chunks" rule (xarray issues #8371, #9072).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_gold.dataset.cells import (
    CELL_VARIABLES,
    GroupSchema,
    TrailingDim,
    VariableSpec,
    fill_value,
)
from pytest_gold.dataset.grid import Cell, GroupLayout
from pytest_gold.dataset.store import Block, ZarrStore

_CELL_DTYPES = {"str": np.dtype(object), "float": np.dtype(np.float64), "int": np.dtype(np.int64)}


@dataclass
class GroupState:
    """One group of the store as the writer sees it."""

    layout: GroupLayout
    schema: GroupSchema
    #: Created by this run: a chunk this run has not written holds fill values only.
    fresh: bool
    expected: Counter[Cell] = field(default_factory=Counter)
    arrived: Counter[Cell] = field(default_factory=Counter)
    buffers: dict[Cell, dict[str, np.ndarray]] = field(default_factory=dict)
    dirty: set[Cell] = field(default_factory=set)
    written: set[Cell] = field(default_factory=set)

    #: Every variable in the store: (storage dtype, fill value, trailing shape). The
    #: writer's own copy: the schema runs ahead of it with variables still queued.
    stored: dict[str, tuple[np.dtype, Any, tuple[int, ...]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for cell in self.layout.cells.values():
            self.expected[self.layout.chunk_of(cell)] += 1
        for name, kind in CELL_VARIABLES:
            dtype = _CELL_DTYPES[kind]
            self.stored[self.schema.cell_names[name]] = (dtype, fill_value(kind, dtype), ())
        for spec in self.schema.variables.values():
            self.stored[spec.name] = (spec.storage, spec.fill, spec.shape)


@dataclass
class CellWrite:
    """All variables of one cell (those not given are written as missing)."""

    group: str
    cell: Cell
    values: dict[str, Any] | None
    #: Only where the cell holds no outcome yet (marking cases that did not run).
    only_if_empty: bool = False


@dataclass
class AddVariables:
    group: str
    specs: list[VariableSpec]
    dims: list[TrailingDim]
    #: The group's schema attribute once these are added (taken when they were queued).
    schema_attrs: dict[str, Any]


class ChunkWriter:
    """Applies operations in order and writes dirty chunks on :meth:`flush`."""

    def __init__(self, store: ZarrStore, groups: dict[str, GroupState]) -> None:
        self.store = store
        self.groups = groups
        #: Cells written to the store by this writer, per group (tests check "nothing
        #: twice, nothing lost" against it).
        self.cells_written: Counter[tuple[str, Cell]] = Counter()
        self._pending_cells: list[tuple[str, Cell]] = []
        self.chunk_writes = 0
        self.last_flush_seconds = 0.0

    def apply(self, operation: CellWrite | AddVariables) -> None:
        if isinstance(operation, AddVariables):
            self._add_variables(operation)
        else:
            self._put(operation)

    def _add_variables(self, operation: AddVariables) -> None:
        state = self.groups[operation.group]
        self.store.add_variables(
            state.layout, operation.schema_attrs, operation.specs, operation.dims
        )
        for spec in operation.specs:
            state.stored[spec.name] = (spec.storage, spec.fill, spec.shape)
            for chunk, buffers in state.buffers.items():  # new: missing in every cell
                block = _block_shape(state.layout, chunk)
                buffers[spec.name] = np.full(block + spec.shape, spec.fill, dtype=spec.storage)

    def _put(self, operation: CellWrite) -> None:
        state = self.groups[operation.group]
        layout = state.layout
        chunk = layout.chunk_of(operation.cell)
        if operation.values is None:  # an arrival with nothing to write (passed before)
            state.arrived[chunk] += 1
            self._maybe_drop(state, chunk)
            return
        buffers = self._buffers(operation.group, state, chunk)
        local = tuple(
            i - c * size for i, c, size in zip(operation.cell, chunk, layout.chunks, strict=True)
        )
        outcome = state.schema.cell_names["outcome"]
        if operation.only_if_empty and buffers[outcome][local] != "":
            return
        for name, (_, fill, _) in state.stored.items():
            buffers[name][local] = operation.values.get(name, fill)
        state.dirty.add(chunk)
        if not operation.only_if_empty:
            state.arrived[chunk] += 1
        self._pending_cells.append((operation.group, operation.cell))

    def _buffers(self, name: str, state: GroupState, chunk: Cell) -> dict[str, np.ndarray]:
        buffers = state.buffers.get(chunk)
        if buffers is not None:
            return buffers
        layout = state.layout
        where = layout.chunk_slices(chunk)
        block = _block_shape(layout, chunk)
        buffers = {}
        for variable, (dtype, fill, trailing) in state.stored.items():
            if state.fresh and chunk not in state.written:
                buffers[variable] = np.full(block + trailing, fill, dtype=dtype)
            else:  # cells written earlier (this run or before): keep them
                data = self.store.read_block(name, variable, where)
                buffers[variable] = np.array(data, dtype=dtype).reshape(block + trailing)
        state.buffers[chunk] = buffers
        return buffers

    def flush(self) -> int:
        """Write every dirty chunk; returns how many chunks were written."""
        started = time.perf_counter()
        values: list[Block] = []
        outcomes: list[Block] = []
        for name, state in self.groups.items():
            outcome = state.schema.cell_names["outcome"]
            for chunk in sorted(state.dirty):
                where = state.layout.chunk_slices(chunk)
                for variable, data in state.buffers[chunk].items():
                    block = (name, variable, where, data)
                    (outcomes if variable == outcome else values).append(block)
        # The outcomes last: a cell counts as written (and done, for a resume) only
        # once all its values are, even if the run dies in the middle of this write.
        self.store.write_blocks(values)
        self.store.write_blocks(outcomes)
        for state in self.groups.values():
            dirty, state.dirty = state.dirty, set()
            state.written.update(dirty)
            for chunk in dirty:
                self._maybe_drop(state, chunk)
        for key in self._pending_cells:
            self.cells_written[key] += 1
        self._pending_cells = []
        self.chunk_writes += len(outcomes)
        self.last_flush_seconds = time.perf_counter() - started
        return len(outcomes)

    def _maybe_drop(self, state: GroupState, chunk: Cell) -> None:
        """A chunk whose cases have all arrived (and that is written) leaves memory."""
        if chunk not in state.dirty and state.arrived[chunk] >= state.expected[chunk]:
            state.buffers.pop(chunk, None)


def _block_shape(layout: GroupLayout, chunk: Cell) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in layout.chunk_slices(chunk))
