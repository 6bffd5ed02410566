"""The outcome over the parameter grid of a sweep: what the page's heatmap is drawn from.

Pure: the page's script aggregates the cases into cells for the two arguments picked in
the browser (the worst kind of each cell's cases), from the compact form made here.
"""

from __future__ import annotations

from typing import Any

from pytest_gold.report.model import FAILED_OUTCOMES, KINDS_BY_SEVERITY, Campaign, function_of

#: Values of a parametrize argument that still make a readable heatmap axis.
MAX_AXIS_VALUES = 60


def grid(campaign: Campaign) -> dict[str, Any]:
    """Per parametrized test function: its arguments, their values (collection order),
    and each finished case as value indices plus the index of its kind in ``kinds``.

    The page draws a heatmap over two arguments from this (picked in the browser);
    ``default`` holds the two shown first (:func:`default_axes`).
    """
    kinds = {kind: index for index, kind in enumerate(KINDS_BY_SEVERITY)}
    axes: dict[str, dict[str, dict[str, int]]] = {
        name: {arg: {value: i for i, value in enumerate(values)} for arg, values in args.items()}
        for name, args in campaign.axes.items()
    }
    cases: dict[str, list[list[int]]] = {name: [] for name in axes}
    for case in campaign.cases:
        params = case.params
        if not params:
            continue
        name = function_of(case.nodeid)
        arguments = axes.get(name)
        if arguments is None:
            arguments = axes[name] = {arg: {} for arg in params}
            cases[name] = []
        row = []
        for arg, values in arguments.items():
            value = params.get(arg)
            if value is None:
                break
            index = values.get(value)
            if index is None:
                index = values[value] = len(values)
            row.append(index)
        else:
            kind = kinds.get(case.kind)
            if kind is None:  # an outcome word of a plugin's making
                kind = kinds["failed" if case.outcome in FAILED_OUTCOMES else "passed"]
            row.append(kind)
            cases[name].append(row)
    listed = []
    for name, arguments in axes.items():
        if not arguments:
            continue
        ranked = default_axes([len(values) for values in arguments.values()])
        listed.append(
            {
                "name": name,
                "args": list(arguments),
                "values": [list(values) for values in arguments.values()],
                "cases": cases.get(name, []),
                "default": sorted(ranked),
            }
        )
    return {"kinds": KINDS_BY_SEVERITY, "functions": listed}


def default_axes(sizes: list[int]) -> list[int]:
    """The two arguments a heatmap shows first: those with the most values that still
    make a readable axis; with fewer such, those with the fewest values."""
    readable = [i for i, size in enumerate(sizes) if 1 < size <= MAX_AXIS_VALUES]
    ranked = sorted(readable, key=lambda i: (-sizes[i], i))
    rest = sorted((i for i in range(len(sizes)) if i not in readable), key=lambda i: sizes[i])
    return (ranked + rest)[:2]
