"""Turning reports, recorded values and warnings into JSON-compatible data and back.

pytest's own ``pytest_report_to_serializable`` hook produces the report dicts (as it does
for pytest-xdist); this module makes sure what comes out is really JSON-compatible, so
that a value a case records can never crash the run: numpy scalars and arrays become
numbers and lists, anything else that cannot be sent turns into a clear error for that
case only.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from pytest_gold.protocol.messages import WarningEvent
from pytest_gold.protocol.synthetic import plain_report

_JSON_SCALARS = (str, int, float, bool, type(None))


class UnserializableValue(TypeError):
    """A value a case recorded (or a plugin attached to its report) cannot be sent back."""


def to_jsonable(value: Any, where: str = "value") -> Any:
    """Return ``value`` as JSON-compatible data, converting numpy values to plain ones.

    Raises :class:`UnserializableValue` naming ``where`` for anything else.
    """
    if isinstance(value, _JSON_SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            # JSON has no NaN/inf; keep them distinguishable from strings on the way back.
            return {"$float": repr(float(value))}
        return value
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnserializableValue(f"{where} has a non-string key {key!r}")
            out[key] = to_jsonable(item, f"{where}[{key!r}]")
        return out
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, without importing numpy
    if callable(tolist) and type(value).__module__ == "numpy":
        return to_jsonable(tolist(), where)
    raise UnserializableValue(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which pytest-gold "
        "cannot send from the engine back to the controller"
    )


def from_jsonable(value: Any) -> Any:
    """Undo the one non-plain encoding of :func:`to_jsonable` (non-finite floats)."""
    kind = type(value)
    if kind is list:
        return [from_jsonable(v) for v in value]
    if kind is dict:
        if len(value) == 1 and "$float" in value:
            return float(value["$float"])
        return {key: from_jsonable(item) for key, item in value.items()}
    return value


def report_data_to_wire(data: dict[str, Any]) -> dict[str, Any]:
    """Check and convert one serialized report.

    ``user_properties`` keep their ``(name, value)`` pairs with converted values; every
    other field must already be plain data (pytest guarantees that for its own fields).
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "user_properties":
            out[key] = [
                [str(name), to_jsonable(prop, f"record_property({name!r}, ...)")]
                for name, prop in value
            ]
        else:
            out[key] = to_jsonable(value, f"report attribute {key!r}")
    # The result must survive a real JSON round trip (e.g. no surrogate-only strings).
    json.dumps(out)
    return out


def report_data_from_wire(data: dict[str, Any]) -> dict[str, Any]:
    # Called for every report of a run: scalars, most of a report, are taken as they are.
    # pytest keeps every report until the end of the run; strings shared by many reports
    # (node ids, keyword names, paths) are interned so a campaign's reports stay small.
    out: dict[str, Any] = {}
    for key, value in data.items():
        if type(value) in _JSON_SCALARS:
            out[key] = value
        elif key == "keywords" and type(value) is dict:  # {name: 1}, by pytest
            out[key] = {
                sys.intern(name): flag if type(flag) is int else from_jsonable(flag)
                for name, flag in value.items()
            }
        else:
            out[key] = from_jsonable(value)
    if isinstance(out.get("nodeid"), str):
        out["nodeid"] = sys.intern(out["nodeid"])
    if out.get("location") is not None:
        out["location"] = tuple(
            sys.intern(part) if isinstance(part, str) else part for part in out["location"]
        )
    if isinstance(out.get("longrepr"), list):  # a skip's (path, lineno, reason)
        out["longrepr"] = tuple(out["longrepr"])
    if "sections" in out:
        out["sections"] = [tuple(section) for section in out["sections"]]
    if "user_properties" in out:
        out["user_properties"] = [(name, value) for name, value in out["user_properties"]]
    return out


def warning_to_event(message: warnings.WarningMessage, when: str, nodeid: str) -> WarningEvent:
    category = message.category
    return WarningEvent(
        nodeid=nodeid,
        when=when,
        message=str(message.message),
        category_module=category.__module__,
        category_name=category.__qualname__,
        filename=str(message.filename),
        lineno=int(message.lineno),
    )


def warning_from_event(event: WarningEvent) -> warnings.WarningMessage:
    """Rebuild the warning; a category that cannot be imported here becomes UserWarning."""
    category: type[Warning] = UserWarning
    try:
        candidate = getattr(importlib.import_module(event.category_module), event.category_name)
    except (ImportError, AttributeError):
        pass
    else:
        if isinstance(candidate, type) and issubclass(candidate, Warning):
            category = candidate
    try:
        instance = category(event.message)
    except Exception:  # a category whose constructor wants more than a message
        instance = UserWarning(event.message)
    return warnings.WarningMessage(
        message=instance,
        category=category,
        filename=event.filename,
        lineno=event.lineno,
    )


def unsendable_report(data: dict[str, Any], error: Exception) -> dict[str, Any]:
    """Replace a report that cannot be sent by a failure that says why."""
    location = tuple(data.get("location") or (data["nodeid"], None, data["nodeid"]))
    message = (
        f"pytest-gold could not send the {data.get('when')} report of this case "
        f"(outcome: {data.get('outcome')}) from the engine to the controller: {error}. "
        "Record numbers, strings, lists, dicts or numpy values, or convert the value "
        "before recording it."
    )
    report = plain_report(data["nodeid"], location, data.get("when", "call"), "failed", message)
    report["duration"] = data.get("duration", 0.0)
    return report


def with_values_as_text(data: dict[str, Any]) -> dict[str, Any]:
    """The report with recorded values as their repr and unknown attributes dropped."""
    out = {}
    for key, value in data.items():
        if key == "user_properties":
            out[key] = [(name, _sendable_or_repr(prop)) for name, prop in value]
        elif _sendable_or_repr(value) is value:
            out[key] = value
    return out


def _sendable_or_repr(value: Any) -> Any:
    try:
        to_jsonable(value)
    except (UnserializableValue, TypeError, ValueError):
        return repr(value)
    return value
