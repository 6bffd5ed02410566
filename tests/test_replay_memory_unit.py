"""What replayed reports keep alive on the controller: no more than pytest's own (pure)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from _pytest.junitxml import LogXML

from pytest_gold.controller.reporting import ENGINE_PROPERTY, HOST_PROPERTY
from pytest_gold.protocol.junitxml import SharedProperties
from pytest_gold.protocol.serialization import report_data_from_wire


def wire_reports(nodeid: str) -> list[dict]:
    """A case's three reports as they come out of a batch's JSON: new strings each."""
    reports = [
        {
            "$report_type": "TestReport",
            "nodeid": nodeid,
            "location": ["test_a.py", 3, "test_x[0]"],
            "keywords": {"test_x[0]": 1, "test_a.py": 1},
            "outcome": "passed",
            "longrepr": None,
            "when": when,
            "user_properties": [],
            "sections": [],
            "duration": 0.1,
            "start": 1.0,
            "stop": 1.1,
        }
        for when in ("setup", "call", "teardown")
    ]
    return json.loads(json.dumps(reports))


def test_reports_of_a_case_share_their_node_id_and_words(pytestconfig):
    last: dict = {}
    first, second = (wire_reports(f"test_a.py::test_x[{i}]") for i in (0, 1))
    decoded = [report_data_from_wire(data, last) for data in [*first, *second]]
    assert decoded[0]["nodeid"] is decoded[1]["nodeid"] is decoded[2]["nodeid"]
    assert decoded[3]["nodeid"] == "test_a.py::test_x[1]"
    assert decoded[3]["nodeid"] is not decoded[0]["nodeid"]
    assert len({id(data["outcome"]) for data in decoded}) == 1
    assert decoded[0]["when"] is decoded[3]["when"]
    reports = [
        pytestconfig.hook.pytest_report_from_serializable(config=pytestconfig, data=data)
        for data in decoded
    ]
    assert [report.nodeid for report in reports[:3]] == ["test_a.py::test_x[0]"] * 3


def test_replayer_shares_a_case_parsed_node_id(pytestconfig):
    from pytest_gold.controller.reporting import Replayer

    reports = [
        pytestconfig.hook.pytest_report_from_serializable(
            config=pytestconfig, data=report_data_from_wire(data)
        )
        for data in [*wire_reports("test_a.py::test_x[0]"), *wire_reports("test_a.py::test_y")]
    ]
    if "_id" not in vars(reports[0]):
        pytest.skip("this pytest keeps the node id string only")
    replayer = Replayer(pytestconfig)
    for report in reports:
        replayer.share_node_id(report)
    assert vars(reports[0])["_id"] is vars(reports[1])["_id"] is vars(reports[2])["_id"]
    assert vars(reports[3])["_id"] is not vars(reports[0])["_id"]
    assert [report.nodeid for report in reports] == ["test_a.py::test_x[0]"] * 3 + [
        "test_a.py::test_y"
    ] * 3


def case_xml(xml: LogXML, nodeid: str, properties: list[tuple[str, object]], shared) -> bytes:
    reporter = xml.node_reporter(nodeid)
    if shared is not None:
        shared.adopt(reporter)
    for name, value in properties:
        reporter.add_property(name, value)
    element = reporter.to_xml()
    return ET.tostring(element), element


def test_placement_properties_are_one_element_per_engine_and_the_same_xml(tmp_path):
    placement = [(HOST_PROPERTY, "vm"), (ENGINE_PROPERTY, 1), ("value", "7")]
    shared = SharedProperties((HOST_PROPERTY, ENGINE_PROPERTY))
    xml = LogXML(str(tmp_path / "a.xml"), None)
    plain, _ = case_xml(xml, "t.py::a", placement, None)
    gold_a, element_a = case_xml(xml, "t.py::b", placement, shared)
    gold_b, element_b = case_xml(xml, "t.py::c", placement, shared)
    assert gold_a == plain.replace(b"t.py::a", b"t.py::b")
    assert gold_b == plain.replace(b"t.py::a", b"t.py::c")
    properties_a, properties_b = element_a.find("properties"), element_b.find("properties")
    assert properties_a is not properties_b
    assert properties_a[0] is properties_b[0] and properties_a[1] is properties_b[1]
    assert properties_a[2] is not properties_b[2]  # a case's own property stays its own
    assert len(shared.elements) == 2
    other_engine = [(HOST_PROPERTY, "vm"), (ENGINE_PROPERTY, 2)]
    _, element_c = case_xml(xml, "t.py::d", other_engine, shared)
    assert element_c.find("properties")[1].get("value") == "2"
    assert len(shared.elements) == 3


def test_a_case_without_properties_has_no_properties_element(tmp_path):
    xml = LogXML(str(tmp_path / "a.xml"), None)
    _, element = case_xml(xml, "t.py::a", [], SharedProperties((HOST_PROPERTY,)))
    assert element.find("properties") is None


def test_a_report_takes_its_items_parsed_node_id(pytestconfig, request):
    from pytest_gold.controller.reporting import Replayer

    item = request.node
    if getattr(item, "_id", None) is None:
        pytest.skip("this pytest keeps the node id string only")
    wire = [dict(data, nodeid=item.nodeid) for data in wire_reports("x")]
    reports = [
        pytestconfig.hook.pytest_report_from_serializable(
            config=pytestconfig, data=report_data_from_wire(data)
        )
        for data in json.loads(json.dumps(wire))
    ]
    replayer = Replayer(pytestconfig, items=[item])
    for report in reports:
        replayer.share_node_id(report)
    assert all(vars(report)["_id"] is item._id for report in reports)
    assert all(report.nodeid is item.nodeid for report in reports)


class FakeItem:
    """What ``Replayer.release`` touches of a collected ``Function``."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid
        self._request = object()
        self.funcargs: dict | None = {"x": 1}


def test_a_done_item_lets_go_of_its_request_as_after_pytests_own_run(pytestconfig):
    from pytest_gold.controller.reporting import Replayer

    done, other = FakeItem("t.py::a"), FakeItem("t.py::b")
    replayer = Replayer(pytestconfig, items=[done, other])  # type: ignore[list-item]
    replayer.release("t.py::a")
    assert done._request is False and done.funcargs is None
    assert other._request and other.funcargs == {"x": 1}
    assert "t.py::a" not in replayer.items


def test_keyword_names_are_shared_without_a_table_entry_per_case(monkeypatch):
    import pytest_gold.protocol.serialization as serialization

    monkeypatch.setattr(serialization, "_names", {})
    monkeypatch.setattr(serialization, "_NAMES_LIMIT", 8)
    decoded = [
        report_data_from_wire(data)
        for i in range(20)
        for data in json.loads(
            json.dumps([{"keywords": {f"test_x[{i}]": 1, "test_a.py": 1}, "location": None}])
        )
    ]
    firsts = [next(name for name in data["keywords"] if name == "test_a.py") for data in decoded]
    assert firsts[1] is firsts[2] is firsts[3]
    assert len(serialization._names) <= 8  # the cases' own names do not pile up


def test_the_heap_is_frozen_for_a_run_and_thawed_after_it(monkeypatch):
    import gc

    import pytest_gold.controller.heap as heap

    registered = []
    monkeypatch.setattr(heap.atexit, "register", registered.append)
    monkeypatch.setattr(heap, "_state", {"frozen": False, "exit_registered": False})
    try:
        heap.freeze_run()
        assert gc.get_freeze_count() > 0
        heap.thaw_and_freeze_at_exit()
        assert gc.get_freeze_count() == 0
        heap.freeze_run()
        heap.thaw_and_freeze_at_exit()
        assert registered == [heap.freeze_survivors]  # once per process
    finally:
        gc.unfreeze()
