"""Differential tests: the same suite run plainly and with --gold gives the same outcomes.

Every outcome kind pytest has is in ``OUTCOMES_SUITE``; outcomes are compared per node id
and phase, and the JUnit XML test cases are compared element by element.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

OUTCOMES_SUITE = {
    "conftest.py": """
        import pytest

        @pytest.fixture
        def broken_setup():
            raise RuntimeError("setup broke")

        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("teardown broke")
    """,
    "test_outcomes.py": """
        import logging
        import sys
        import unittest
        import warnings

        import pytest

        def test_pass():
            pass

        def test_fail():
            assert 1 + 1 == 3, "arithmetic"

        def test_error_in_setup(broken_setup):
            pass

        def test_error_in_teardown(broken_teardown):
            pass

        def test_fail_and_error_in_teardown(broken_teardown):
            assert False

        @pytest.mark.skip(reason="marker skip")
        def test_skip_marker():
            pass

        def test_skip_imperative():
            pytest.skip("imperative skip")

        @pytest.mark.xfail(reason="known bug")
        def test_xfail():
            assert False

        @pytest.mark.xfail(reason="fixed?")
        def test_xpass():
            pass

        @pytest.mark.xfail(reason="strict", strict=True)
        def test_xpass_strict():
            pass

        def test_pytest_fail():
            pytest.fail("explicit failure")

        def test_output():
            print("to stdout")
            print("to stderr", file=sys.stderr)
            logging.getLogger("sim").warning("a log line")
            assert False, "show the sections"

        def test_record(record_property, record_xml_attribute, record_testsuite_property):
            record_property("tb_k", 271.3)
            record_property("channel", "ch183")
            record_xml_attribute("assertions", "3")
            record_testsuite_property("campaign", "gold-test")

        def test_warns():
            warnings.warn(UserWarning("a user warning from a case"))

        @pytest.mark.parametrize("name", ["ascii", "ünïcödé", "sp ace", "a/b", "ключ", "x[1]"])
        def test_ids(name):
            assert name != "ключ"

        class TestGroup:
            def test_method_pass(self):
                pass

            def test_method_fail(self):
                assert [1, 2] == [1, 3]

        class TestUnittest(unittest.TestCase):
            def test_ok(self):
                self.assertEqual(1, 1)

            def test_bad(self):
                self.assertEqual(1, 2)

            @unittest.skip("unittest skip")
            def test_skipped(self):
                pass

        def add(a, b):
            '''
            >>> add(1, 2)
            3
            >>> add(1, 1)
            3
            '''
            return a + b
    """,
    "test_second.py": """
        import pytest

        @pytest.mark.parametrize("i", range(12))
        def test_many(i):
            assert i % 5 != 4
    """,
}


def _outcomes(reprec: pytest.HookRecorder) -> dict[tuple[str, str], str]:
    return {
        (rep.nodeid, rep.when): rep.outcome
        for rep in reprec.getreports("pytest_runtest_logreport")
        if not (rep.when == "teardown" and rep.passed)
    }


def _testcases(path: Path) -> dict[tuple[str, str], dict[str, object]]:
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = (case.get("classname", ""), case.get("name", ""))
        children = sorted(
            (child.tag, child.get("message", ""), child.get("type", ""))
            for child in case
            if child.tag in ("failure", "error", "skipped")
        )
        properties = sorted(
            (prop.get("name"), prop.get("value"))
            for prop in case.iter("property")
            if not prop.get("name", "").startswith("gold_")
        )
        attributes = {k: v for k, v in case.attrib.items() if k != "time"}
        cases.setdefault(key, []).append(
            {"children": children, "properties": properties, "attributes": attributes}
        )
    return cases


def test_outcomes_and_junit_match_a_plain_run(pytester: pytest.Pytester, gold_args) -> None:
    pytester.makepyfile(**OUTCOMES_SUITE)
    common = ["--doctest-modules", "-p", "no:cacheprovider"]
    plain = pytester.inline_run(*common, "--junitxml=plain.xml")
    gold = pytester.inline_run(*common, *gold_args, "--junitxml=gold.xml")

    plain_outcomes = _outcomes(plain)
    assert len({nodeid for nodeid, _ in plain_outcomes}) >= 35  # the suite really ran
    assert _outcomes(gold) == plain_outcomes
    assert gold.ret == plain.ret

    plain_cases, gold_cases = (
        _testcases(pytester.path / "plain.xml"),
        _testcases(pytester.path / "gold.xml"),
    )
    assert gold_cases == plain_cases
    gold_root = ET.parse(pytester.path / "gold.xml").getroot()
    suite_props = {p.get("name"): p.get("value") for p in gold_root.iter("property")}
    assert suite_props["campaign"] == "gold-test"
    hosts = {p.get("value") for p in gold_root.iter("property") if p.get("name") == "gold_engine"}
    assert hosts, "every case names its engine in the JUnit XML"


def test_terminal_summary_matches(pytester: pytest.Pytester, gold_args) -> None:
    pytester.makepyfile(**OUTCOMES_SUITE)
    common = ["--doctest-modules", "-p", "no:cacheprovider", "-rA"]
    plain = pytester.runpytest(*common)
    gold = pytester.runpytest(*common, *gold_args)
    assert gold.parseoutcomes() == plain.parseoutcomes()
    text = gold.stdout.str()
    for fragment in (
        "to stdout",
        "to stderr",
        "a log line",
        "a user warning from a case",
        "XPASS(strict)",
        "explicit failure",
        "teardown broke",
        "setup broke",
    ):
        assert fragment in text, fragment
