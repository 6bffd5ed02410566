"""What goes into one cell, checked against what the group already holds (pure).

The first case that records a name fixes its variable: kind (bool, int, float, str),
dtype, trailing dimensions and their coordinates. A later case must agree; where it
does not, that value is left out of its cell with a message that names the case and
the variable, and the rest of the cell is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Variables every cell has, as (name, kind). ``outcome`` of a cell never run is "".
CELL_VARIABLES: tuple[tuple[str, str], ...] = (
    ("outcome", "str"),
    ("duration", "float"),
    ("host", "str"),
    ("engine", "int"),
    ("message", "str"),
    ("run_id", "str"),
    ("nodeid", "str"),
    ("record_error", "str"),
)
RESERVED_ORDER = tuple(name for name, _ in CELL_VARIABLES)
RESERVED = frozenset(RESERVED_ORDER)
#: Outcome of a case that was selected but did not run (the run ended first).
NOT_RUN = "not run"
#: numpy dtype kinds a variable can have, by our kind name.
_KINDS = {"b": "bool", "i": "int", "u": "int", "f": "float", "U": "str", "O": "str"}


def storage_dtype(kind: str, dtype: np.dtype) -> np.dtype:
    """How a kind is stored: booleans as int8 (so a missing cell can be -1), strings as
    variable-length strings."""
    if kind == "bool":
        return np.dtype(np.int8)
    if kind == "str":
        return np.dtype(object)
    return dtype


def fill_value(kind: str, dtype: np.dtype) -> Any:
    """What a missing cell holds: NaN, the smallest int (largest unsigned), -1 for a
    boolean, "" for a string. Never 0: xarray reads the int ones back as NaN."""
    if kind == "float":
        return np.nan
    if kind == "bool":
        return -1
    if kind == "int":
        info = np.iinfo(dtype)
        return int(info.max if dtype.kind == "u" else info.min)
    return ""


@dataclass
class VariableSpec:
    """A recorded variable of a group, fixed by the first case that recorded it."""

    name: str
    kind: str
    dtype: np.dtype
    dims: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    first_case: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def storage(self) -> np.dtype:
        return storage_dtype(self.kind, self.dtype)

    @property
    def fill(self) -> Any:
        return fill_value(self.kind, self.dtype)


@dataclass
class TrailingDim:
    """A dimension of recorded arrays (``layer``), with its coordinate when given."""

    name: str
    size: int
    coord: np.ndarray | None
    first_case: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedCell:
    """A case's recorded values as stored arrays, and what it added to the group."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    new_variables: list[VariableSpec] = field(default_factory=list)
    new_dims: list[TrailingDim] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def as_array(value: Any, type_info: Sequence[Any] | None = None) -> np.ndarray:
    """A recorded value as an array; ``type_info`` is the (dtype, shape) it had before
    it crossed a process boundary as plain lists. ValueError says why it cannot be."""
    if type_info is not None:
        dtype, shape = type_info
        return np.asarray(value, dtype=np.dtype(dtype)).reshape(tuple(shape))
    if isinstance(value, Mapping):
        raise ValueError("a dict cannot be a variable; record its entries under their own names")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # a ragged list
        raise ValueError(f"it is not a regular array ({error})") from None
    if array.dtype.kind == "O" and not all(isinstance(v, str) for v in array.flat):
        raise ValueError(
            f"a {type(value).__module__}.{type(value).__qualname__} is not a number, a "
            "boolean, a string or a regular array of them"
        )
    return array


def kind_of(array: np.ndarray) -> str:
    kind = _KINDS.get(array.dtype.kind)
    if kind is None:
        raise ValueError(
            f"its dtype {array.dtype} cannot be stored; record numbers, booleans or strings"
        )
    return kind


def accepts(spec: VariableSpec, kind: str, dtype: np.dtype) -> bool:
    """Whether a value of ``dtype`` fits the variable without loss: the same kind, or an
    integer into a float variable, no wider than the variable's dtype."""
    if kind == "str" or spec.kind == "str":
        return kind == spec.kind
    if kind == "bool" or spec.kind == "bool":
        return kind == spec.kind
    if kind != spec.kind and not (kind == "int" and spec.kind == "float"):
        return False
    return bool(np.can_cast(dtype, spec.dtype, casting="safe"))


def _describe(kind: str, dtype: np.dtype) -> str:
    return kind if kind in ("str", "bool") else str(dtype)


@dataclass
class GroupSchema:
    """The variables of one group and the checks every new cell goes through."""

    grid_dims: tuple[str, ...]
    #: Name of each per-cell variable in this group (``gold_<name>`` where a
    #: parametrize argument already has the name).
    cell_names: dict[str, str] = field(default_factory=dict)
    variables: dict[str, VariableSpec] = field(default_factory=dict)
    trailing: dict[str, TrailingDim] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.cell_names:
            self.cell_names = {
                name: f"gold_{name}" if name in self.grid_dims else name
                for name, _ in CELL_VARIABLES
            }

    def taken(self) -> set[str]:
        return {*self.grid_dims, *self.cell_names.values(), *self.trailing}

    def prepare(
        self, nodeid: str, record: Mapping[str, Any], layout: Mapping[str, Any] | None
    ) -> PreparedCell:
        """Check and convert a case's record; new variables and dimensions are added to
        the schema at once, so that the next case is checked against them."""
        layout = layout or {}
        dims_given = layout.get("dims") or {}
        coords_given = layout.get("coords") or {}
        attrs_given = layout.get("attrs") or {}
        types = layout.get("types") or {}
        coord_types = layout.get("coord_types") or {}
        prepared = PreparedCell()
        for key, value in record.items():
            try:
                if value is None:
                    continue  # nothing recorded: the cell stays missing
                array = as_array(value, types.get(key))
                self._place(
                    prepared,
                    nodeid,
                    key,
                    array,
                    dims_given.get(key),
                    coords_given,
                    coord_types,
                    attrs_given,
                )
            except ValueError as error:
                prepared.errors.append(f"gold_record[{key!r}]: {error}")
        return prepared

    def _place(
        self,
        prepared: PreparedCell,
        nodeid: str,
        key: str,
        array: np.ndarray,
        dims: Any,
        coords: Mapping[str, Any],
        coord_types: Mapping[str, Any],
        attrs: Mapping[str, Any],
    ) -> None:
        if key in self.grid_dims:
            raise ValueError("the name is a parametrize argument (a dimension of the grid)")
        if key in self.cell_names.values() or key in RESERVED:
            raise ValueError(
                f"the name is reserved for a per-cell variable ({', '.join(RESERVED_ORDER)})"
            )
        if key in self.trailing:
            raise ValueError("the name is a dimension of another recorded array")
        kind = kind_of(array)
        dim_names = self._dim_names(key, array, dims)
        spec = self.variables.get(key)
        if spec is not None:
            if not accepts(spec, kind, array.dtype):
                raise ValueError(
                    f"it is {_describe(kind, array.dtype)} here, but the variable is "
                    f"{_describe(spec.kind, spec.dtype)} (first recorded by {spec.first_case})"
                )
            if array.shape != spec.shape:
                raise ValueError(
                    f"its shape is {array.shape} here, but {spec.shape} in "
                    f"{spec.first_case}, which first recorded it"
                )
            if dim_names != spec.dims:
                raise ValueError(
                    f"its dimensions are {dim_names} here, but {spec.dims} in {spec.first_case}"
                )
            self._check_coords(nodeid, spec.dims, coords, coord_types)
        else:
            new_dims = self._new_dims(nodeid, key, array, dim_names, coords, coord_types, attrs)
            spec = VariableSpec(
                name=key,
                kind=kind,
                dtype=array.dtype
                if kind in ("int", "float")
                else np.dtype(bool if kind == "bool" else object),
                dims=dim_names,
                shape=array.shape,
                first_case=nodeid,
                attrs=_attrs(attrs.get(key), key),
            )
            for dim in new_dims:
                self.trailing[dim.name] = dim
            prepared.new_dims.extend(new_dims)
            self.variables[key] = spec
            prepared.new_variables.append(spec)
        prepared.values[key] = _stored(array, spec)

    def _dim_names(self, key: str, array: np.ndarray, dims: Any) -> tuple[str, ...]:
        if dims is None:
            return tuple(f"{key}_dim{axis}" for axis in range(array.ndim))
        if isinstance(dims, str) or not all(isinstance(d, str) and d for d in dims):
            raise ValueError(f"gold_record.dims[{key!r}] must be a tuple of names, not {dims!r}")
        names = tuple(dims)
        if len(names) != array.ndim:
            raise ValueError(
                f"gold_record.dims[{key!r}] names {len(names)} dimensions, but the value "
                f"has {array.ndim} (shape {array.shape})"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"gold_record.dims[{key!r}] repeats a name: {names}")
        return names

    def _new_dims(
        self,
        nodeid: str,
        key: str,
        array: np.ndarray,
        names: tuple[str, ...],
        coords: Mapping[str, Any],
        coord_types: Mapping[str, Any],
        attrs: Mapping[str, Any],
    ) -> list[TrailingDim]:
        new: list[TrailingDim] = []
        for name, size in zip(names, array.shape, strict=True):
            if name in self.grid_dims or name in self.cell_names.values():
                raise ValueError(f"its dimension {name!r} is a parametrize argument or reserved")
            if name in self.variables or name == key:
                raise ValueError(f"its dimension {name!r} is also a recorded variable")
            existing = self.trailing.get(name)
            if existing is not None:
                if existing.size != size:
                    raise ValueError(
                        f"its dimension {name!r} has {size} elements here, but {existing.size} "
                        f"in {existing.first_case}"
                    )
                continue
            coord = None
            if name in coords:
                coord = _coordinate(coords[name], coord_types.get(name), name)
                if coord.shape != (size,):
                    raise ValueError(
                        f"gold_record.coords[{name!r}] has shape {coord.shape}, but the "
                        f"dimension has {size} elements"
                    )
            new.append(TrailingDim(name, size, coord, nodeid, _attrs(attrs.get(name), name)))
        self._check_coords(
            nodeid, tuple(n for n in names if n in self.trailing), coords, coord_types
        )
        return new

    def _check_coords(
        self,
        nodeid: str,
        dims: Sequence[str],
        coords: Mapping[str, Any],
        coord_types: Mapping[str, Any],
    ) -> None:
        for name in dims:
            if name not in coords:
                continue  # the case relies on the coordinate given first
            stored = self.trailing[name].coord
            given = _coordinate(coords[name], coord_types.get(name), name)
            if stored is None or not _same(stored, given):
                first = self.trailing[name].first_case
                raise ValueError(
                    f"gold_record.coords[{name!r}] differs from the coordinate set by {first}"
                )


def _coordinate(value: Any, type_info: Any, name: str) -> np.ndarray:
    try:
        array = as_array(value, type_info)
        kind_of(array)
    except ValueError as error:
        raise ValueError(f"gold_record.coords[{name!r}]: {error}") from None
    return array.astype(object) if array.dtype.kind == "U" else array


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _attrs(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"gold_record.attrs[{name!r}] must be a dict with string keys")
    return dict(value)


def _stored(array: np.ndarray, spec: VariableSpec) -> np.ndarray:
    if spec.kind == "str":
        return np.asarray(array, dtype=object)
    if spec.kind == "bool":
        return array.astype(np.int8)
    return array.astype(spec.dtype, copy=False)
