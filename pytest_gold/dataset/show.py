"""``python -m pytest_gold results show sweep.zarr``: what a sweep's dataset holds.

Per group (test function): its dimensions, its variables, and how many cells have
each outcome along each dimension (which channel fails most); ``--failed`` lists the
failed cells with their message.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_gold.dataset import EXTRA, is_dataset_path, missing_packages

#: The per-cell variables (pytest_gold.dataset.cells.CELL_VARIABLES, without numpy).
CELL_VARIABLE_NAMES = (
    "outcome",
    "duration",
    "host",
    "engine",
    "message",
    "run_id",
    "nodeid",
    "record_error",
)

#: Column heading for cells no case wrote.
MISSING = "(missing)"
#: Outcomes listed by --failed.
FAILED_OUTCOMES = ("failed", "error")
#: Outcome columns in this order; others follow as found.
OUTCOME_ORDER = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "not run")
#: Coordinate values shown per dimension in the header line.
SHOWN_VALUES = 6


class ShowError(Exception):
    """A dataset that cannot be shown; the message says why."""


def add_parser(commands: Any) -> None:
    results = commands.add_parser("results", help="read a --gold-results dataset")
    actions = results.add_subparsers(dest="action", required=True)
    show = actions.add_parser(
        "show",
        help="dimensions, variables and outcome counts of a .zarr or .nc dataset",
        description="Print each group (test function) of a dataset written by "
        "'pytest --gold-results=PATH.zarr' (or .nc): its dimensions, its variables, and "
        "how many cells have each outcome along each dimension.",
    )
    show.add_argument("path", help="the dataset, e.g. sweep.zarr or sweep.nc")
    show.add_argument(
        "--failed", action="store_true", help="list the failed cells with their message"
    )
    show.add_argument("--group", help="show only this group (test function)")


def run(args: argparse.Namespace) -> int:
    try:
        for line in show_lines(Path(args.path), failed=args.failed, only=args.group):
            print(line)
    except ShowError as error:
        print(f"python -m pytest_gold results show: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # piped into head: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _open(path: Path) -> Any:
    if not is_dataset_path(str(path)):
        raise ShowError(f"{path}: expected a .zarr store or a .nc file")
    missing = missing_packages(path.suffix.lower())
    if missing:
        raise ShowError(f"reading {path} needs {', '.join(missing)}: pip install '{EXTRA}'")
    if not path.exists():
        raise ShowError(f"{path} does not exist")
    import xarray as xr

    try:
        if path.suffix.lower() == ".nc":
            from pytest_gold.dataset.netcdf import engine

            return xr.open_datatree(path, engine=engine())
        return xr.open_datatree(path, engine="zarr", consolidated=None)
    except Exception as error:
        raise ShowError(f"{path} cannot be opened: {error}") from None


def show_lines(path: Path, failed: bool = False, only: str | None = None) -> list[str]:
    tree = _open(path)
    try:
        groups = {name: node.to_dataset() for name, node in tree.children.items()}
        if only is not None:
            if only not in groups:
                raise ShowError(f"{path} has no group {only!r}; it has {', '.join(groups)}")
            groups = {only: groups[only]}
        runs = tree.attrs.get("runs") or []
        lines = [f"{path}: {len(groups)} group{'s' if len(groups) != 1 else ''}" + _runs(runs)]
        for name, dataset in groups.items():
            lines.append("")
            lines.extend(_group_lines(name, dataset, failed))
        return lines
    finally:
        tree.close()


def _runs(runs: Any) -> str:
    if isinstance(runs, str):  # netCDF keeps it as JSON text
        import json

        runs = json.loads(runs)
    if not runs:
        return ""
    last = runs[-1]
    return f", written by {len(runs)} run(s); last: {last.get('run_id')} at {last.get('started')}"


def _cell_name(dataset: Any, name: str) -> str:
    """A per-cell variable's name in this group (``gold_host`` where ``host`` is a
    parametrize argument)."""
    schema = dataset.attrs.get("pytest_gold_schema") or {}
    if isinstance(schema, str):  # netCDF keeps it as JSON text
        import json

        schema = json.loads(schema)
    return (schema.get("cell_names") or {}).get(name, name)


def _group_lines(name: str, dataset: Any, failed: bool) -> list[str]:
    outcome_name = _cell_name(dataset, "outcome")
    if outcome_name not in dataset:
        return [f"{name}: not a pytest-gold group (no {outcome_name!r} variable)"]
    outcome = dataset[outcome_name].load()
    grid = list(outcome.dims)
    lines = [f"{name}  ({dataset.attrs.get('pytest_function', '')})"]
    sizes = ", ".join(f"{dim} {size}" for dim, size in dataset.sizes.items()) or "none (one cell)"
    lines.append(f"  dimensions: {sizes}")
    for dim in grid:
        values = [str(v) for v in dataset[dim].values.tolist()]
        shown = ", ".join(values[:SHOWN_VALUES]) + (", ..." if len(values) > SHOWN_VALUES else "")
        lines.append(f"    {dim}: {shown}")
    per_cell = [_cell_name(dataset, name) for name in CELL_VARIABLE_NAMES]
    recorded = list(dataset.data_vars)
    lines.append(f"  recorded: {len(recorded) or 'nothing'}")
    for key in recorded:
        variable = dataset[key]
        units = variable.attrs.get("units")
        suffix = f" [{units}]" if units else ""
        dtype = "str" if variable.dtype.kind in "OUT" else str(variable.dtype)
        lines.append(f"    {key} ({', '.join(map(str, variable.dims))}) {dtype}{suffix}")
    lines.append("  per cell: " + ", ".join(name for name in per_cell if name in dataset))
    words = outcome.values.astype(object)
    counts = Counter(_word(w) for w in words.ravel().tolist())
    lines.append("  cells: " + _counts(counts))
    for axis, dim in enumerate(grid):
        lines.extend(_by_dim(dim, dataset[dim].values.tolist(), words, axis))
    if failed:
        lines.extend(_failed_lines(dataset, grid, words))
    return lines


def _word(value: Any) -> str:
    return str(value) if value else MISSING


def _columns(counts: Counter[str]) -> list[str]:
    present = [o for o in OUTCOME_ORDER if counts.get(o)]
    others = sorted(o for o in counts if o not in OUTCOME_ORDER and o != MISSING)
    return present + others + ([MISSING] if counts.get(MISSING) else [])


def _counts(counts: Counter[str]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{counts[o]} {o}" for o in _columns(counts))
    return f"{total} ({parts})" if parts else str(total)


def _by_dim(dim: str, values: Sequence[Any], words: Any, axis: int) -> list[str]:
    import numpy as np

    per_value = []
    total: Counter[str] = Counter()
    for index in range(len(values)):
        counts = Counter(_word(w) for w in np.take(words, [index], axis=axis).ravel().tolist())
        per_value.append(counts)
        total.update(counts)
    columns = _columns(total)
    header = [f"outcome by {dim}", *columns]
    rows = [
        [str(v), *(str(c.get(o, 0)) for o in columns)]
        for v, c in zip(values, per_value, strict=True)
    ]
    return ["  " + line for line in _table([header, *rows])]


def _table(rows: Iterable[Sequence[str]]) -> list[str]:
    rows = list(rows)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _failed_lines(dataset: Any, grid: list[str], words: Any) -> list[str]:
    import numpy as np

    message = dataset.get(_cell_name(dataset, "message"))
    messages = message.values.astype(object) if message is not None else None
    cells = [tuple(int(i) for i in index) for index in np.argwhere(np.isin(words, FAILED_OUTCOMES))]
    lines = [f"  failed cells: {len(cells)}"]
    for cell in cells:
        where = " ".join(
            f"{dim}={dataset[dim].values[i]!s}" for dim, i in zip(grid, cell, strict=True)
        )
        text = str(messages[cell]) if messages is not None else ""
        lines.append(f"    {where or '(the one cell)'}: {words[cell]}: {text}")
    return lines
