"""``--gold-results=sweep.zarr`` (or ``.nc``): the parametrize grid as an xarray dataset.

This package's top level imports nothing heavy: the worker side (:mod:`.meta`) runs in
every worker, and xarray/zarr are an optional extra, imported only when a dataset is
asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Suffixes of --gold-results that make a dataset.
DATASET_SUFFIXES = (".zarr", ".nc")
#: What to install for them.
EXTRA = "pytest-gold[xarray]"


def is_dataset_path(path: str) -> bool:
    return Path(path).suffix.lower() in DATASET_SUFFIXES


def missing_packages(suffix: str) -> list[str]:
    """The packages a dataset with this suffix needs and that cannot be imported."""
    import importlib.util

    needed = ["xarray", "zarr", "numpy"]
    missing = [name for name in needed if _absent(name, importlib.util)]
    if (
        suffix == ".nc"
        and _absent("h5netcdf", importlib.util)
        and _absent("netCDF4", importlib.util)
    ):
        missing.append("h5netcdf (or netCDF4)")
    return missing


def _absent(name: str, util: Any) -> bool:
    import sys

    if name in sys.modules:
        return sys.modules[name] is None  # blocked on purpose (a test, an embedding app)
    return util.find_spec(name) is None


def open_writer(config: Any, path: str) -> Any:
    """The dataset writer for ``--gold-results=path``; a pytest.UsageError when the
    extra is not installed or the path cannot be used."""
    import pytest

    suffix = Path(path).suffix.lower()
    missing = missing_packages(suffix)
    if missing:
        raise pytest.UsageError(
            f"--gold-results {path}: writing a {suffix} dataset needs the optional "
            f"packages of {EXTRA} ({', '.join(missing)} cannot be imported here): "
            f"pip install '{EXTRA}'. The tables .csv, .jsonl and .parquet need none of them."
        )
    from pytest_gold.dataset.writer import DatasetWriter

    return DatasetWriter.from_config(config, Path(path).expanduser())
