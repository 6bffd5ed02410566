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
import warnings
from collections.abc import Mapping
from typing import Any

from pytest_gold.protocol.messages import ReportEvent, WarningEvent, to_wire
from pytest_gold.protocol.synthetic import plain_report

_JSON_SCALARS = (str, int, float, bool, type(None))

#: Report words every report repeats (outcome, phase, type): JSON decodes a new string for
#: each, pytest's own reports share one; kept to the end of the run, 3 reports a case.
_REPORT_WORDS = {
    word: word
    for word in ("passed", "failed", "skipped", "setup", "call", "teardown", "TestReport")
}


#: Keyword names and location parts decoded lately, each shared by the reports that have
#: it (module, function and marker names repeat from case to case). Not ``sys.intern``:
#: a case's own name (``test_x[17]``) would hold an entry of the interpreter's table to
#: the end of the run; this one is emptied when it grows past :data:`_NAMES_LIMIT`.
_names: dict[str, str] = {}
_NAMES_LIMIT = 4096


def _shared_name(name: str) -> str:
    shared = _names.get(name)
    if shared is not None:
        return shared
    if len(_names) >= _NAMES_LIMIT:
        _names.clear()
    _names[name] = name
    return name


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


def report_data_to_wire(data: dict[str, Any], *, check: bool = True) -> dict[str, Any]:
    """Check and convert one serialized report.

    ``user_properties`` keep their ``(name, value)`` pairs with converted values; every
    other field must already be plain data (pytest guarantees that for its own fields).
    ``check=False``: the caller encodes the result as JSON itself, which checks it.
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
    if check:
        # The result must survive a real JSON round trip (e.g. no surrogate-only strings).
        json.dumps(out)
    return out


def report_event(data: dict[str, Any]) -> ReportEvent:
    """The event of one serialized report (see :func:`report_data_to_wire`), encoded once:
    the JSON that checks the report is what the worker sends (``Event.encoded``)."""
    out = report_data_to_wire(data, check=False)
    event = ReportEvent(data=out)
    object.__setattr__(event, "encoded", json.dumps(to_wire(event)).encode())
    return event


#: Report fields that the reports of one case share when they are equal (see
#: :func:`report_data_from_wire`).
SHARED_REPORT_FIELDS = ("location", "keywords")


def report_data_from_wire(
    data: dict[str, Any], last: dict[str, tuple[Any, Any]] | None = None
) -> dict[str, Any]:
    """The report dict for ``pytest_report_from_serializable``.

    ``last``, kept by the caller from report to report: a shared field
    (:data:`SHARED_REPORT_FIELDS`) equal on the wire to the last report's is given the
    object made for that one, not rebuilt (a case's setup, call and teardown reports).
    pytest keeps every report to the end of the run, and these are most of a passed
    report's memory; pytest's own reports share ``location`` too, and ``keywords`` is a
    read-only mapping to pytest.
    """
    # Called for every report of a run: scalars, most of a report, are taken as they are.
    # pytest keeps every report until the end of the run; strings shared by many reports
    # (report words, keyword names, paths) are shared so a campaign's reports stay small.
    out: dict[str, Any] = {}
    for key, value in data.items():
        kind = type(value)
        if kind is str:
            out[key] = _REPORT_WORDS.get(value, value)
        elif kind in _JSON_SCALARS:
            out[key] = value
        elif kind is list and not value:  # no sections, no user properties
            out[key] = []
        elif last is not None and key in SHARED_REPORT_FIELDS:
            before = last.get(key)
            if before is not None and before[0] == value:
                out[key] = before[1]
            else:
                out[key] = _field_from_wire(key, value)
                last[key] = (value, out[key])
        else:
            out[key] = _field_from_wire(key, value)
    nodeid = out.get("nodeid")
    if last is not None and isinstance(nodeid, str):
        # The reports of a case share their node id, as pytest's own do (the item's); not
        # interned: a table entry per case for the whole run, for nothing after the case.
        before = last.get("nodeid")
        if before is not None and before[0] == nodeid:
            out["nodeid"] = before[1]
        else:
            last["nodeid"] = (nodeid, nodeid)
    if isinstance(out.get("longrepr"), list):  # a skip's (path, lineno, reason)
        out["longrepr"] = tuple(out["longrepr"])
    return out


def _field_from_wire(key: str, value: Any) -> Any:
    if key == "keywords" and type(value) is dict:  # {name: 1}, by pytest
        return {
            _shared_name(name): flag if type(flag) is int else from_jsonable(flag)
            for name, flag in value.items()
        }
    if key == "location" and value is not None:
        return tuple(_shared_name(part) if isinstance(part, str) else part for part in value)
    if key == "sections":
        return [tuple(section) for section in from_jsonable(value)]
    if key == "user_properties":
        return [(name, item) for name, item in from_jsonable(value)]
    return from_jsonable(value)


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
