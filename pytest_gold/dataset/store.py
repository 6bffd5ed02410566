"""The zarr store of a sweep (I/O): created and extended with xarray, written with zarr.

Layout: one zarr group per test function, Zarr format 2 with consolidated metadata
(format 3's consolidated metadata is not in its specification yet, and zarr-python
warns about it on every write and read). Variables are created with xarray, so that
``xr.open_zarr`` reads them back with their dimensions, fill values and attributes;
cells are written with zarr, a whole chunk at a time (see :mod:`.writer`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import xarray as xr
import zarr
import zarr.api.asynchronous

from pytest_gold.dataset.cells import (
    CELL_VARIABLES,
    GroupSchema,
    TrailingDim,
    VariableSpec,
    fill_value,
)
from pytest_gold.dataset.grid import GroupLayout

ZARR_FORMAT: Final = 2
#: Root attribute that marks a store written by pytest-gold, and its layout version.
MARKER = "pytest_gold_dataset"
LAYOUT_VERSION = 1
#: Group attributes: the test function, the schema of recorded variables, remarks.
FUNCTION_ATTR = "pytest_function"
SCHEMA_ATTR = "pytest_gold_schema"
NOTES_ATTR = "pytest_gold_notes"
#: Attributes of the per-cell variables, for whoever opens the store.
CELL_ATTRS: dict[str, dict[str, str]] = {
    "outcome": {
        "long_name": "outcome of the case: passed, failed, error, skipped, xfailed, xpassed, "
        "or 'not run' (selected, but the run ended first); '' where no case ran"
    },
    "duration": {"long_name": "seconds the case took: setup, call and teardown"},
    "host": {"long_name": "host the case ran on ('' without --gold)"},
    "engine": {"long_name": "ipyparallel engine id the case ran on (missing without --gold)"},
    "message": {"long_name": "first line of the reason of a failure, error, skip or xfail"},
    "run_id": {"long_name": "the pytest run that wrote the cell"},
    "nodeid": {"long_name": "the case's pytest node id"},
    "record_error": {"long_name": "why recorded values of the case are not in its cell"},
}


def is_store(path: Path) -> bool:
    """Whether ``path`` is a zarr store (of any format), as opposed to some other file."""
    return path.is_dir() and any((path / name).exists() for name in (".zgroup", "zarr.json"))


def remove_store(path: Path) -> None:
    """Delete a store; refuses anything that is not one (never a user's directory)."""
    if path.is_symlink() or not is_store(path):
        raise ValueError(f"{path} exists and is not a zarr store: pytest-gold will not remove it")
    shutil.rmtree(path)


@dataclass
class StoredGroup:
    """A group as found in an existing store."""

    name: str
    function: str
    #: The grid's dimensions; ``coords`` also holds those of recorded arrays.
    dims: tuple[str, ...]
    coords: dict[str, np.ndarray]
    chunks: tuple[int, ...]
    schema_data: dict[str, Any] = field(default_factory=dict)


def _group_dataset(layout: GroupLayout, schema: GroupSchema) -> tuple[xr.Dataset, dict]:
    """A new group: the grid's coordinates and the per-cell variables, all missing.

    The per-cell variables are (non-index) coordinates: they describe each cell, travel
    with every recorded variable, and ``ds.where(ds.outcome == "passed")`` masks only the
    recorded values (xarray cannot put NaN into numpy's string arrays).
    """
    shape = layout.shape
    coords: dict[str, Any] = {dim: (dim, layout.coords[dim]) for dim in layout.dims}
    encoding: dict[str, dict[str, Any]] = {}
    for name, kind in CELL_VARIABLES:
        dtype = {"str": object, "float": np.float64, "int": np.int64}[kind]
        fill = fill_value(kind, np.dtype(dtype))
        variable = schema.cell_names[name]
        coords[variable] = (layout.dims, np.full(shape, fill, dtype=dtype), CELL_ATTRS[name])
        encoding[variable] = {"chunks": layout.chunks} if layout.dims else {}
        if kind == "int":
            encoding[variable]["_FillValue"] = fill
    return xr.Dataset(coords=coords), encoding


def group_attrs(
    layout: GroupLayout, cell_names: Mapping[str, str], schema_attrs: Mapping[str, Any]
) -> dict[str, Any]:
    """All attributes of a group (xarray replaces them all whenever it writes to it)."""
    return {
        FUNCTION_ATTR: layout.function,
        NOTES_ATTR: list(layout.notes),
        SCHEMA_ATTR: dict(schema_attrs),
        # Which variables are coordinates, as xarray writes it for a dataset whose
        # coordinates no data variable names (the per-cell variables, before any record).
        "coordinates": " ".join(cell_names[name] for name, _ in CELL_VARIABLES),
    }


def schema_to_attrs(schema: GroupSchema) -> dict[str, Any]:
    """The group's schema as JSON-compatible attributes (how a resumed run learns it)."""
    return {
        "cell_names": schema.cell_names,
        "variables": {
            name: {
                "kind": spec.kind,
                "dtype": spec.dtype.str,
                "dims": list(spec.dims),
                "shape": list(spec.shape),
                "first_case": spec.first_case,
            }
            for name, spec in schema.variables.items()
        },
        "trailing": {
            name: {"size": dim.size, "first_case": dim.first_case}
            for name, dim in schema.trailing.items()
        },
    }


def schema_from_attrs(
    grid_dims: tuple[str, ...], data: Mapping[str, Any], coords: Mapping[str, np.ndarray]
) -> GroupSchema:
    schema = GroupSchema(grid_dims, cell_names=dict(data.get("cell_names") or {}))
    for name, entry in (data.get("trailing") or {}).items():
        schema.trailing[name] = TrailingDim(
            name, int(entry["size"]), coords.get(name), entry.get("first_case", "")
        )
    for name, entry in (data.get("variables") or {}).items():
        schema.variables[name] = VariableSpec(
            name=name,
            kind=entry["kind"],
            dtype=np.dtype(entry["dtype"]),
            dims=tuple(entry["dims"]),
            shape=tuple(entry["shape"]),
            first_case=entry.get("first_case", ""),
        )
    return schema


class ZarrStore:
    """One sweep's store on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._arrays: dict[tuple[str, str], Any] = {}
        self._async_arrays: dict[tuple[str, str], Any] = {}

    # -- creating and opening -------------------------------------------------------------

    def create(self, root_attrs: Mapping[str, Any]) -> None:
        """An empty store (the groups follow): built beside the path and renamed into
        place, so a reader never finds half a store."""
        partial = self.path.with_name(f".{self.path.name}.creating-{os.getpid()}")
        if partial.exists():
            shutil.rmtree(partial)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(str(partial), mode="w", zarr_format=ZARR_FORMAT)
        root.attrs.update({MARKER: LAYOUT_VERSION, **root_attrs})
        zarr.consolidate_metadata(str(partial), zarr_format=ZARR_FORMAT)
        os.replace(partial, self.path)

    def read_groups(self) -> dict[str, StoredGroup]:
        """The groups of an existing store; ValueError when pytest-gold did not write it."""
        try:
            root = zarr.open_group(str(self.path), mode="r", zarr_format=ZARR_FORMAT)
            version = root.attrs.get(MARKER)
        except Exception as error:  # zarr raises a variety of errors for foreign stores
            raise ValueError(f"it cannot be opened as a Zarr format 2 store ({error})") from None
        if version != LAYOUT_VERSION:
            raise ValueError("it was not written by pytest-gold (or by an incompatible version)")
        groups = {}
        for name, group in root.groups():
            # zarr types attribute values as any JSON; their shape is checked as they are used.
            attrs: dict[str, Any] = group.attrs.asdict()
            function = attrs.get(FUNCTION_ATTR)
            if not isinstance(function, str):
                continue
            schema_data = attrs.get(SCHEMA_ATTR) or {}
            outcome_name = (schema_data.get("cell_names") or {}).get("outcome", "outcome")
            outcome: Any = group[outcome_name]  # an array, by the layout the writer keeps
            dims = tuple(outcome.attrs.get("_ARRAY_DIMENSIONS", []))
            coords = {}
            for array_name, array in group.arrays():
                array_dims: Any = array.attrs.get("_ARRAY_DIMENSIONS", [])
                if tuple(array_dims) == (array_name,):
                    coords[array_name] = _values(array[...])
            groups[name] = StoredGroup(
                name=name,
                function=function,
                dims=dims,
                coords=coords,
                chunks=tuple(outcome.chunks),
                schema_data=schema_data,
            )
        return groups

    def root_attrs(self) -> dict[str, Any]:
        return zarr.open_group(str(self.path), mode="r", zarr_format=ZARR_FORMAT).attrs.asdict()

    def update_root_attrs(self, attrs: Mapping[str, Any]) -> None:
        root = zarr.open_group(str(self.path), mode="r+", zarr_format=ZARR_FORMAT)
        root.attrs.update(dict(attrs))
        self._consolidate()

    def add_group(self, layout: GroupLayout, schema: GroupSchema) -> None:
        dataset, encoding = _group_dataset(layout, schema)
        dataset.attrs = group_attrs(layout, schema.cell_names, schema_to_attrs(schema))
        del dataset.attrs["coordinates"]  # xarray writes it itself here (and warns if given)
        self._to_zarr(dataset, layout.name, encoding)

    def add_variables(
        self,
        layout: GroupLayout,
        schema_attrs: Mapping[str, Any],
        specs: Iterable[VariableSpec],
        dims: Iterable[TrailingDim],
    ) -> None:
        """New recorded variables (all cells missing) and the coordinates of new dims."""
        data_vars = {}
        encoding: dict[str, dict[str, Any]] = {}
        for spec in specs:
            shape = layout.shape + spec.shape
            data = np.full(shape, spec.fill, dtype=spec.storage)
            data_vars[spec.name] = (layout.dims + spec.dims, data, dict(spec.attrs))
            encoding[spec.name] = {"chunks": layout.chunks + spec.shape} if shape else {}
            if spec.kind in ("int", "bool"):
                encoding[spec.name]["_FillValue"] = spec.fill
        coords = {
            dim.name: (dim.name, dim.coord, dict(dim.attrs))
            for dim in dims
            if dim.coord is not None
        }
        dataset = xr.Dataset(data_vars, coords=coords)
        # xarray replaces a group's attributes with the dataset's: give them all.
        dataset.attrs = group_attrs(layout, schema_attrs["cell_names"], schema_attrs)
        self._to_zarr(dataset, layout.name, encoding)

    def _to_zarr(self, dataset: xr.Dataset, group: str, encoding: dict) -> None:
        dataset.to_zarr(
            str(self.path),
            group=group,
            mode="a",
            zarr_format=ZARR_FORMAT,
            consolidated=True,
            encoding=encoding,
        )

    def _consolidate(self) -> None:
        zarr.consolidate_metadata(str(self.path), zarr_format=ZARR_FORMAT)

    # -- cells ----------------------------------------------------------------------------

    def _array(self, group: str, variable: str) -> Any:
        key = (group, variable)
        array = self._arrays.get(key)
        if array is None:
            array = zarr.open_array(
                str(self.path), path=f"{group}/{variable}", mode="r+", zarr_format=ZARR_FORMAT
            )
            self._arrays[key] = array
        return array

    def read_block(self, group: str, variable: str, where: tuple[slice, ...]) -> np.ndarray:
        return _values(self._array(group, variable)[where])

    def write_blocks(self, blocks: Sequence[Block]) -> None:
        """Write blocks of several arrays at once (zarr writes them concurrently: a
        chunk of ten variables costs about one round trip instead of ten)."""
        if _sync is None:  # a zarr without the asynchronous API: one after the other
            for group, variable, where, data in blocks:
                self._array(group, variable)[where] = data
            return

        async def write_all() -> None:
            arrays = [await self._async_array(group, variable) for group, variable, _, _ in blocks]
            await asyncio.gather(
                *(
                    array.setitem(block[2], block[3])
                    for array, block in zip(arrays, blocks, strict=True)
                )
            )

        _sync(write_all())

    async def _async_array(self, group: str, variable: str) -> Any:
        key = (group, variable)
        array = self._async_arrays.get(key)
        if array is None:
            array = await zarr.api.asynchronous.open_array(
                store=str(self.path), path=f"{group}/{variable}", mode="r+", zarr_format=ZARR_FORMAT
            )
            self._async_arrays[key] = array
        return array


#: (group, variable, region, data) of one block write.
Block = tuple[str, str, tuple[slice, ...], np.ndarray]

try:  # zarr 3 runs its coroutines on its own I/O thread; xarray uses the same
    from zarr.core.sync import sync as _sync
except ImportError:  # pragma: no cover - zarr 2
    _sync = None  # type: ignore[assignment]  # (zarr 2 has no I/O thread)


def _values(data: Any) -> np.ndarray:
    """Raw values as numpy; zarr returns strings as numpy's StringDType: object here."""
    array = np.asarray(data)
    if array.dtype.kind == "T":
        return array.astype(object)
    return array


def describe_store(path: Path) -> str:
    """A short description of what a store holds, for messages."""
    try:
        attrs = ZarrStore(path).root_attrs()
    except Exception:
        return "a zarr store"
    runs = attrs.get("runs") or []
    return f"a pytest-gold dataset of {len(runs)} run(s): " + json.dumps(runs[-1:])
