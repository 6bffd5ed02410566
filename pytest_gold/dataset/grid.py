"""The grid of a sweep, from the collected cases (pure: no xarray, no I/O).

One group per test function; one dimension per ``parametrize`` argument name (stacked
decorators, indirect parameters and parametrized fixtures alike), its coordinate the
distinct values in collection order. A case is one cell. Cases that are not
parametrized make a 0-d group of their own.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Cells per chunk the writer aims at (all variables of a group share the grid chunking).
#: See benchmarks/bench_dataset.py: whole-chunk writes of ~1,000 cells cost about as
#: much as one cell written alone, and a 10^5-cell store opens with ~100 chunk files
#: per variable.
DEFAULT_CHUNK_CELLS = 1024
#: Characters allowed in a group name (zarr keys are paths; ':' is not portable).
_GROUP_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")

Cell = tuple[int, ...]


@dataclass(frozen=True)
class CaseParams:
    """What the grid needs of one collected case."""

    nodeid: str
    #: The test function the case belongs to: its node id without the parameters.
    function: str
    #: Its short name (``test_bt``), the preferred group name.
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    #: Index of each value in its ``parametrize`` list (pytest's ``callspec.indices``).
    indices: Mapping[str, int] = field(default_factory=dict)


def cases_from_items(items: Iterable[Any]) -> list[CaseParams]:
    """The grid's view of pytest items (``pytest.Function`` or any other item)."""
    cases = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = getattr(item, "originalname", None) or item.name
        parent = getattr(item.parent, "nodeid", "")
        function = f"{parent}::{name}" if callspec is not None and parent else item.nodeid
        cases.append(
            CaseParams(
                nodeid=item.nodeid,
                function=function,
                name=name if callspec is not None else item.name,
                params=dict(callspec.params) if callspec is not None else {},
                indices=dict(callspec.indices) if callspec is not None else {},
            )
        )
    return cases


# -- coordinates ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar it holds; anything else unchanged."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if -(2**63) <= value < 2**63 else "object"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "object"


def object_label(value: Any, argname: str, index: int) -> str:
    """The id pytest gives a parameter value that is not a scalar by default: an enum's
    str(), a class's or function's name, else the argument name and the value's index."""
    if value is None:
        return "None"
    if isinstance(value, enum.Enum):
        return str(value)
    name = getattr(value, "__name__", None)
    if isinstance(name, str) and (isinstance(value, type) or callable(value)):
        return name
    return f"{argname}{index}"


@dataclass(frozen=True)
class Coordinate:
    """One dimension: its values and how each case's value maps onto them."""

    values: np.ndarray
    #: Cell index along the dimension, per case node id.
    index: dict[str, int]
    #: Why values were turned into labels, when they were ("" otherwise).
    note: str = ""


def _nan_safe(key: Any) -> Any:
    # NaN != NaN: every NaN parameter is the same coordinate value.
    return "$nan" if isinstance(key, float) and math.isnan(key) else key


def build_coordinate(argname: str, values: Sequence[tuple[str, Any, int]]) -> Coordinate:
    """Distinct values of one argument in collection order, from (nodeid, value, index).

    All booleans, all integers, all numbers (floats), or all strings keep their type;
    any other mix, and values that are none of these, become strings: a scalar its
    ``str()``, other objects the id pytest gives them (:func:`object_label`).
    """
    plain = [(nodeid, _plain(value), index) for nodeid, value, index in values]
    kinds = {_kind(value) for _, value, _ in plain}
    note = ""
    if kinds == {"bool"} or kinds == {"int"} or kinds == {"str"}:
        keys = [value for _, value, _ in plain]
        dtype: Any = {"bool": bool, "int": np.int64, "str": object}[kinds.pop()]
    elif kinds <= {"int", "float"}:
        keys = [float(value) for _, value, _ in plain]
        dtype = np.float64
    else:
        keys = _labels(argname, plain)
        dtype = object
        note = (
            f"the values of {argname!r} are not all numbers, all booleans or all strings: "
            "its coordinate holds labels (str() of scalars, pytest's default id of objects)"
        )
    order: dict[Any, int] = {}
    distinct: list[Any] = []
    index: dict[str, int] = {}
    for (nodeid, _, _), key in zip(plain, keys, strict=True):
        safe = _nan_safe(key)
        if safe not in order:
            order[safe] = len(distinct)
            distinct.append(key)
        index[nodeid] = order[safe]
    return Coordinate(values=np.array(distinct, dtype=dtype), index=index, note=note)


def _labels(argname: str, plain: Sequence[tuple[str, Any, int]]) -> list[str]:
    labels = []
    objects: dict[str, set[int]] = {}
    for _, value, index in plain:
        if _kind(value) == "object":
            label = object_label(value, argname, index)
            objects.setdefault(label, set()).add(index)
        else:
            label = str(value)
        labels.append(label)
    if any(len(indices) > 1 for indices in objects.values()):
        # Two different objects share a name (two lambdas): number them all instead.
        return [
            f"{argname}{index}" if _kind(value) == "object" else str(value)
            for _, value, index in plain
        ]
    return labels


# -- groups ---------------------------------------------------------------------------------


def chunk_shape(shape: Sequence[int], target_cells: int = DEFAULT_CHUNK_CELLS) -> tuple[int, ...]:
    """Chunks of about ``target_cells`` cells that are contiguous in C order: whole
    trailing dimensions while they fit, then part of the next one, then 1s."""
    chunks = [1] * len(shape)
    cells = 1
    for axis in range(len(shape) - 1, -1, -1):
        size = max(shape[axis], 1)
        if cells * size <= target_cells:
            chunks[axis] = size
            cells *= size
            continue
        chunks[axis] = max(1, target_cells // cells)
        break
    return tuple(chunks)


@dataclass
class GroupLayout:
    """The grid of one test function."""

    name: str
    function: str
    dims: tuple[str, ...]
    coords: dict[str, np.ndarray]
    #: Cell of every case placed on the grid.
    cells: dict[str, Cell]
    chunks: tuple[int, ...]
    #: Cases that could not be placed, with the reason.
    unplaced: dict[str, str] = field(default_factory=dict)
    #: Remarks about the grid (labels instead of values, ...).
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(self.coords[dim]) for dim in self.dims)

    def chunk_of(self, cell: Cell) -> Cell:
        return tuple(i // c for i, c in zip(cell, self.chunks, strict=True))

    def chunk_slices(self, chunk: Cell) -> tuple[slice, ...]:
        return tuple(
            slice(i * c, min((i + 1) * c, n))
            for i, c, n in zip(chunk, self.chunks, self.shape, strict=True)
        )


def _group_names(functions: Sequence[tuple[str, str]]) -> dict[str, str]:
    """A short, unique, path-safe name per function: its own name, qualified by its
    class and module only where two functions share a name."""

    def parts(function: str, name: str) -> list[str]:
        path, *rest = function.split("::")
        stem = path.rsplit("/", 1)[-1].removesuffix(".py")
        return [*path.removesuffix(".py").split("/")[:-1], stem, *rest[:-1], name]

    names: dict[str, str] = {}
    split = {function: parts(function, name) for function, name in functions}
    depth = dict.fromkeys(split, 1)
    while True:
        candidates = {
            function: _GROUP_NAME_UNSAFE.sub("_", ".".join(pieces[-depth[function] :]))
            for function, pieces in split.items()
        }
        counts: dict[str, int] = {}
        for candidate in candidates.values():
            counts[candidate] = counts.get(candidate, 0) + 1
        clashing = [f for f, c in candidates.items() if counts[c] > 1 and depth[f] < len(split[f])]
        if not clashing:
            break
        for function in clashing:
            depth[function] += 1
    seen: dict[str, int] = {}
    for function, candidate in candidates.items():
        count = seen.get(candidate, 0)
        seen[candidate] = count + 1
        names[function] = candidate if count == 0 else f"{candidate}_{count}"
    return names


def build_layouts(
    cases: Sequence[CaseParams],
    target_cells: int = DEFAULT_CHUNK_CELLS,
    selected: Collection[str] | None = None,
) -> dict[str, GroupLayout]:
    """The grid of every test function with a selected case, by group name, in
    collection order. ``cases`` are all collected cases: deselected ones (``-k``,
    ``--deselect``, ``--lf``) give their values to the coordinates but get no cell, so the
    grid is the sweep's whatever the selection. ``selected`` None: every case is."""
    chosen = set(selected) if selected is not None else {case.nodeid for case in cases}
    by_function: dict[str, list[CaseParams]] = {}
    for case in cases:
        by_function.setdefault(case.function, []).append(case)
    by_function = {
        function: group
        for function, group in by_function.items()
        if any(case.nodeid in chosen for case in group)
    }
    names = _group_names([(function, group[0].name) for function, group in by_function.items()])
    layouts = {}
    for function, group in by_function.items():
        layout = _layout(names[function], function, group, target_cells, chosen)
        layouts[layout.name] = layout
    return layouts


def _layout(
    name: str,
    function: str,
    cases: Sequence[CaseParams],
    target_cells: int,
    chosen: Collection[str],
) -> GroupLayout:
    dims = tuple(dict.fromkeys(arg for case in cases for arg in case.params))
    unplaced: dict[str, str] = {}
    placeable = []
    for case in cases:
        missing = [dim for dim in dims if dim not in case.params]
        if not missing:
            placeable.append(case)
        elif case.nodeid in chosen:
            unplaced[case.nodeid] = (
                f"it has no value for {', '.join(map(repr, missing))}, which other cases "
                f"of {function} are parametrized over"
            )
    coords: dict[str, np.ndarray] = {}
    notes: list[str] = []
    axis_index: dict[str, dict[str, int]] = {}
    for dim in dims:
        coordinate = build_coordinate(
            dim, [(c.nodeid, c.params[dim], c.indices.get(dim, 0)) for c in placeable]
        )
        coords[dim] = coordinate.values
        axis_index[dim] = coordinate.index
        if coordinate.note:
            notes.append(coordinate.note)
    cells: dict[str, Cell] = {}
    owner: dict[Cell, str] = {}
    for case in placeable:
        if case.nodeid not in chosen:
            continue
        cell = tuple(axis_index[dim][case.nodeid] for dim in dims)
        if cell in owner:
            unplaced[case.nodeid] = (
                f"its parameters are the same as those of {owner[cell]} (one cell for both); "
                "the first case keeps the cell"
            )
            continue
        owner[cell] = case.nodeid
        cells[case.nodeid] = cell
    shape = tuple(len(coords[dim]) for dim in dims)
    return GroupLayout(
        name=name,
        function=function,
        dims=dims,
        coords=coords,
        cells=cells,
        chunks=chunk_shape(shape, target_cells),
        unplaced=unplaced,
        notes=notes,
    )


def fit_to_stored(
    layout: GroupLayout, stored: Mapping[str, np.ndarray], chunks: tuple[int, ...]
) -> GroupLayout:
    """This run's grid placed on a grid already in a store (``--gold-resume``).

    The stored grid must have the same dimensions and hold every value of this run;
    ValueError says what differs. Cells are then indices into the stored coordinates.
    """
    if tuple(stored) != layout.dims:
        raise ValueError(
            f"its dimensions are ({', '.join(stored)}) in the store but "
            f"({', '.join(layout.dims)}) in this run"
        )
    position: dict[str, dict[Any, int]] = {}
    for dim in layout.dims:
        stored_values = stored[dim].tolist()
        lookup = {_nan_safe(value): i for i, value in enumerate(stored_values)}
        extra = [value for value in layout.coords[dim].tolist() if _nan_safe(value) not in lookup]
        if extra:
            shown = ", ".join(map(repr, extra[:5])) + (", ..." if len(extra) > 5 else "")
            raise ValueError(f"{dim!r} has values that the store has no cells for: {shown}")
        position[dim] = lookup
    remap = [
        [position[dim][_nan_safe(value)] for value in layout.coords[dim].tolist()]
        for dim in layout.dims
    ]
    cells = {
        nodeid: tuple(remap[axis][i] for axis, i in enumerate(cell))
        for nodeid, cell in layout.cells.items()
    }
    return GroupLayout(
        name=layout.name,
        function=layout.function,
        dims=layout.dims,
        coords={dim: np.asarray(stored[dim]) for dim in layout.dims},
        cells=cells,
        chunks=chunks,
        unplaced=layout.unplaced,
        notes=layout.notes,
    )
