"""Property tests of what crosses process boundaries (pure: no cluster)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_gold.protocol.messages import (
    BatchResult,
    EngineInfo,
    LogStart,
    NotRun,
    ReportEvent,
    event_from_wire,
    result_from_wire,
    to_wire,
)
from pytest_gold.protocol.serialization import (
    UnserializableValue,
    from_jsonable,
    report_data_from_wire,
    report_data_to_wire,
    report_event,
    to_jsonable,
    warning_from_event,
    warning_to_event,
)

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40
)  # no lone surrogates: they cannot be encoded as UTF-8 anywhere
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@given(json_values)
def test_jsonable_round_trip(value):
    wire = json.loads(json.dumps(to_jsonable(value)))
    assert _same(from_jsonable(wire), value)


@given(
    nodeid=text.map(lambda s: f"sims/test_rt.py::test_bt[{s}]"),
    outcome=st.sampled_from(["passed", "failed", "skipped"]),
    when=st.sampled_from(["setup", "call", "teardown"]),
    sections=st.lists(st.tuples(text, text), max_size=3),
    properties=st.lists(st.tuples(text, json_values), max_size=4),
    duration=st.floats(min_value=0, max_value=1e6),
    longrepr=st.none() | text,
)
@settings(max_examples=200, deadline=None)
def test_report_round_trip(
    pytestconfig, nodeid, outcome, when, sections, properties, duration, longrepr
):
    if outcome == "skipped":
        longrepr = ("sims/test_rt.py", 3, f"Skipped: {longrepr}")
    report = pytest.TestReport(
        nodeid=nodeid,
        location=("sims/test_rt.py", 3, "test_bt"),
        keywords={"test_bt": 1},
        outcome=outcome,
        longrepr=longrepr,
        when=when,
        sections=sections,
        duration=duration,
        user_properties=properties,
    )
    hook = pytestconfig.hook
    data = hook.pytest_report_to_serializable(config=pytestconfig, report=report)
    wire = json.loads(json.dumps(report_data_to_wire(data)))
    back = hook.pytest_report_from_serializable(
        config=pytestconfig, data=report_data_from_wire(wire)
    )
    for name in ("nodeid", "outcome", "when", "duration", "location", "sections", "longrepr"):
        assert getattr(back, name) == getattr(report, name), name
    assert _same([list(p) for p in back.user_properties], [list(p) for p in properties])


def test_numpy_values_become_plain_data():
    assert to_jsonable(np.float64(271.5)) == 271.5
    assert to_jsonable(np.arange(3)) == [0, 1, 2]
    assert to_jsonable({"tb": np.float32(2.5), "nan": float("nan")})["tb"] == 2.5


def test_unserializable_value_names_itself():
    class Opaque:
        pass

    with pytest.raises(UnserializableValue, match=r"record_property\('x', \.\.\.\) is a .*Opaque"):
        report_data_to_wire({"user_properties": [("x", Opaque())]})


def test_warning_round_trip_keeps_category():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn(DeprecationWarning("old api"), stacklevel=1)
    event = warning_to_event(caught[0], "runtest", "t.py::test")
    back = warning_from_event(event_from_wire(json.loads(json.dumps(to_wire(event)))))
    assert back.category is DeprecationWarning
    assert str(back.message) == "old api"
    assert back.lineno == caught[0].lineno


def test_unknown_warning_category_falls_back_to_user_warning():
    event = warning_to_event(
        warnings.WarningMessage(UserWarning("x"), UserWarning, "f.py", 1), "runtest", "t"
    )
    event = event.__class__(**{**vars(event), "category_module": "no_such_module_here"})
    assert warning_from_event(event).category is UserWarning


def test_batch_result_round_trip():
    engine = EngineInfo(3, "gold3", 42, "3.11.7", "/usr/bin/python3", "linux")
    result = BatchResult(
        engine=engine,
        events=[
            LogStart(nodeid="t.py::a", location=("t.py", 1, "a")),
            ReportEvent(data={"nodeid": "t.py::a"}),
            NotRun(nodeids=["t.py::b"], reason="interrupted"),
        ],
    )
    assert result_from_wire(json.loads(json.dumps(to_wire(result)))) == result
    assert engine.tag == "gold3:e3"


def test_a_report_event_is_encoded_once_as_it_would_be_sent():
    """The worker's JSON check of a report is the encoding it sends (Event.encoded)."""
    data = {"nodeid": "t.py::a", "user_properties": [("tb", np.float32(2.5))], "duration": 0.1}
    event = report_event(data)
    assert event.data == report_data_to_wire(data)
    assert event.encoded == json.dumps(to_wire(event)).encode()
    with pytest.raises(UnserializableValue):
        report_event({"nodeid": "t.py::a", "user_properties": [("x", object())]})
