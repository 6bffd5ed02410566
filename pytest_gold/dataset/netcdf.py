"""``--gold-results=sweep.nc``: a netCDF file written once, at the end, from the zarr journal.

Why not cell by cell: an HDF5 file (netCDF-4) that is open for writing is left
corrupt when its process is killed before it closes the file, losing every cell and
not only the last ones; xarray cannot append along a dimension of a netCDF file
(xarray issue #1672) nor write a region of one; and HDF5 has no safe concurrent
writing. So while the run goes on, cells go to a zarr store beside the file
(``sweep.nc.partial.zarr``), written chunk by chunk as for ``.zarr``; at the end the
netCDF file is written from it, under a temporary name renamed into place, and the
journal is removed. A killed run leaves the journal, which ``--gold-resume`` picks up.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

#: Suffix of the zarr journal beside a .nc target.
JOURNAL_SUFFIX = ".partial.zarr"
#: Attributes that hold JSON data (netCDF attributes cannot be dicts).
_JSON_ATTRS = ("runs", "pytest_gold_schema", "pytest_gold_notes")
#: First bytes of a netCDF-3 or netCDF-4 (HDF5) file.
_MAGIC = (b"CDF", b"\x89HDF")


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + JOURNAL_SUFFIX)


def engine() -> str:
    """h5netcdf if it can be imported, else netCDF4."""
    import importlib.util

    return "h5netcdf" if importlib.util.find_spec("h5netcdf") else "netcdf4"


def remove_netcdf(path: Path) -> None:
    """Delete a netCDF file; refuses anything else."""
    with open(path, "rb") as file:
        head = file.read(4)
    if path.is_symlink() or not path.is_file() or not head.startswith(_MAGIC):
        raise ValueError(f"{path} exists and is not a netCDF file: pytest-gold will not remove it")
    path.unlink()


def _to_netcdf_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        key: json.dumps(value) if key in _JSON_ATTRS or isinstance(value, dict) else value
        for key, value in attrs.items()
    }


def _from_netcdf_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    # netCDF gives numbers back as numpy values, which zarr's JSON attributes refuse.
    out = {
        key: value.tolist() if hasattr(value, "tolist") else value for key, value in attrs.items()
    }
    for key in _JSON_ATTRS:
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def export(store: Path, target: Path) -> None:
    """Write the netCDF file from the journal, then remove the journal."""
    import xarray as xr

    from pytest_gold.dataset.store import ZarrStore

    zarr_store = ZarrStore(store)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    backend = engine()
    root = xr.Dataset(attrs=_to_netcdf_attrs(zarr_store.root_attrs()))
    # engine() names an installed backend (a str, not the Literal xarray is typed with).
    root.to_netcdf(partial, mode="w", engine=backend)  # type: ignore[call-overload]
    for name in zarr_store.read_groups():
        with xr.open_zarr(store, group=name) as dataset:
            dataset = dataset.load()
        for variable in dataset.variables.values():
            kept = {
                k: variable.encoding[k] for k in ("dtype", "_FillValue") if k in variable.encoding
            }
            if variable.dtype.kind in "OUT":
                kept = {}  # variable-length strings: no fill value in netCDF
            variable.encoding = kept
        dataset.attrs = _to_netcdf_attrs(dataset.attrs)
        dataset.to_netcdf(partial, group=name, mode="a", engine=backend)
    os.replace(partial, target)
    shutil.rmtree(store)


def seed_journal(source: Path, store: Path) -> None:
    """A journal made from a finished netCDF file, for ``--gold-resume``."""
    import xarray as xr

    from pytest_gold.dataset.grid import chunk_shape
    from pytest_gold.dataset.store import ZARR_FORMAT, ZarrStore

    backend = engine()
    tree = xr.open_datatree(source, engine=backend)
    ZarrStore(store).create({})
    root_attrs = _from_netcdf_attrs({str(key): value for key, value in tree.attrs.items()})
    for name, node in tree.children.items():
        dataset = node.to_dataset().load()
        dataset.attrs = _from_netcdf_attrs(dict(dataset.attrs))
        schema = dataset.attrs.get("pytest_gold_schema") or {}
        outcome = (schema.get("cell_names") or {}).get("outcome", "outcome")
        grid_dims = dataset[outcome].dims
        chunks = chunk_shape([dataset.sizes[dim] for dim in grid_dims])
        encoding: dict[str, dict[str, Any]] = {}
        for key, variable in dataset.variables.items():
            if key in dataset.coords and variable.dims == (key,):
                continue
            trailing = tuple(variable.shape[len(grid_dims) :])
            encoding[key] = {"chunks": chunks + trailing} if variable.ndim else {}
            if "_FillValue" in variable.encoding and variable.dtype.kind not in "OUT":
                encoding[key]["_FillValue"] = variable.encoding["_FillValue"]
                encoding[key]["dtype"] = variable.encoding.get("dtype", variable.dtype)
            if variable.dtype.kind in "UT":
                variable.values = variable.values.astype(object)
            variable.encoding = {}
        dataset.to_zarr(
            store, group=name, mode="a", zarr_format=ZARR_FORMAT, consolidated=True,
            encoding=encoding,
        )  # fmt: skip
    tree.close()
    ZarrStore(store).update_root_attrs(root_attrs)
