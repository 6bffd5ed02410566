"""What travels with a case's report besides its recorded values (numpy-free: this runs
in every worker, where numpy need not be imported).

Recorded numpy values cross the process boundary as plain numbers and lists; their
dtype and shape travel beside them, so that the controller rebuilds the same array
(a float32 array stays float32, an empty (0, 40) array keeps its shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Report attribute carrying :func:`record_layout`.
REPORT_ATTRIBUTE = "gold_record_layout"


def numpy_type(value: Any) -> list[Any] | None:
    """[dtype string, shape] of a numpy array or scalar, else None."""
    if type(value).__module__ != "numpy":
        return None
    dtype = getattr(value, "dtype", None)
    shape = getattr(value, "shape", None)
    if dtype is None or shape is None:
        return None
    return [dtype.str, list(shape)]


def record_layout(
    values: Mapping[str, Any],
    dims: Mapping[str, Any],
    coords: Mapping[str, Any],
    attrs: Mapping[str, Any],
) -> dict[str, Any]:
    """The dims, coords and attrs a case set on ``gold_record``, plus the numpy type of
    each value and coordinate; {} when there is nothing to say."""
    layout: dict[str, Any] = {}
    types = {key: info for key, value in values.items() if (info := numpy_type(value))}
    if types:
        layout["types"] = types
    if dims:
        layout["dims"] = {
            key: [value] if isinstance(value, str) else list(value) for key, value in dims.items()
        }
    if coords:
        layout["coords"] = dict(coords)
        coord_types = {key: info for key, value in coords.items() if (info := numpy_type(value))}
        if coord_types:
            layout["coord_types"] = coord_types
    if attrs:
        layout["attrs"] = {key: dict(value) for key, value in attrs.items()}
    return layout


def case_layout(reports: Any) -> dict[str, Any]:
    """The merged layout of a case's phase reports (later phases win, as for values)."""
    merged: dict[str, Any] = {}
    for report in reports:
        layout = getattr(report, REPORT_ATTRIBUTE, None)
        if not layout:
            continue
        for part, entries in layout.items():
            merged.setdefault(part, {}).update(entries)
    return merged
