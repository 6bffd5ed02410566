"""Differential tests: the same suite run plainly and with --gold gives the same outcomes.

Every outcome kind pytest has is in ``OUTCOMES_SUITE``; outcomes are compared per node id
and phase, and the JUnit XML test cases are compared element by element.
"""

from __future__ import annotations

import base64
import re
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


#: A suite whose reports carry what plugins put on them: hypothesis's statistics (a
#: testsuite property per test in the JUnit XML, and a report attribute the terminal
#: summary reads), and a conftest's own JSON-able report attribute.
PLUGIN_DATA_SUITE = {
    "conftest.py": """
        import pytest

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_makereport(item, call):
            report = yield
            report.sim_info = {"phase": report.when, "grid": [1, 2.5, None], "ok": True}
            return report
    """,
    "test_props.py": """
        from hypothesis import given, settings, strategies as st

        @settings(derandomize=True, database=None, max_examples=20)
        @given(st.integers())
        def test_integers(x):
            assert isinstance(x, int)

        @settings(derandomize=True, database=None, max_examples=20)
        @given(st.text())
        def test_text(s):
            assert isinstance(s, str)

        @settings(derandomize=True, database=None, max_examples=20)
        @given(st.integers(min_value=0))
        def test_breaks(n):
            assert n < 10

        def test_plain(record_property):
            record_property("channel", "ch7")
    """,
}


def _suite_properties(path: Path) -> dict[str, str]:
    """The testsuite's properties, hypothesis's statistics decoded and without timings."""
    properties = {}
    for prop in ET.parse(path).getroot().iter("testsuite"):
        for item in prop.iterfind("properties/property"):
            name, value = item.get("name", ""), item.get("value", "")
            if name.startswith("hypothesis-statistics-"):
                value = _without_timings(base64.b64decode(value).decode())
            properties[name] = value
    return properties


def _without_timings(statistics: str) -> str:
    lines = [line for line in statistics.splitlines() if "Typical runtimes" not in line]
    return re.sub(r"\([\d.]+ seconds\)", "(... seconds)", "\n".join(lines))


def _case_warnings(reprec: pytest.HookRecorder) -> list[tuple[str, str]]:
    return sorted(
        (call.nodeid, str(call.warning_message.message).split(" (")[0])
        for call in reprec.getcalls("pytest_warning_recorded")
        if call.when == "runtest"
    )


def _report_attribute(reprec: pytest.HookRecorder, name: str) -> dict[tuple[str, str], object]:
    return {
        (rep.nodeid, rep.when): rep.__dict__.get(name)
        for rep in reprec.getreports("pytest_runtest_logreport")
    }


def test_what_plugins_put_on_reports_arrives(pytester: pytest.Pytester, gold_args) -> None:
    pytester.makepyfile(**PLUGIN_DATA_SUITE)
    common = ["-p", "no:cacheprovider"]
    plain = pytester.inline_run(*common, "--junitxml=plain.xml")
    gold = pytester.inline_run(*common, *gold_args, "--junitxml=gold.xml")

    assert _outcomes(gold) == _outcomes(plain)
    assert gold.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    # record_property warns under the default junit_family (xunit2), as a plain run does.
    assert (
        _case_warnings(gold)
        == _case_warnings(plain)
        == [
            (
                "test_props.py::test_plain",
                "record_property is incompatible with junit_family 'xunit2'",
            )
        ]
    )
    plain_properties = _suite_properties(pytester.path / "plain.xml")
    assert sorted(plain_properties) == [
        f"hypothesis-statistics-test_props.py::{name}"
        for name in ("test_breaks", "test_integers", "test_text")
    ]
    assert all("passing" in value for value in plain_properties.values())
    assert _suite_properties(pytester.path / "gold.xml") == plain_properties
    assert _testcases(pytester.path / "gold.xml") == _testcases(pytester.path / "plain.xml")

    plain_info = _report_attribute(plain, "sim_info")
    assert len(plain_info) == 12 and all(plain_info.values())
    assert _report_attribute(gold, "sim_info") == plain_info
    # What hypothesis's terminal summary reads from the reports.
    plain_statistics = _report_attribute(plain, "_hypothesis_stats")
    assert sum(1 for value in plain_statistics.values() if value) == 3
    assert {
        key: value and _without_timings(value)
        for key, value in _report_attribute(gold, "_hypothesis_stats").items()
    } == {key: value and _without_timings(value) for key, value in plain_statistics.items()}
