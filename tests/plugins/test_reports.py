"""Plugins that write a report of the run from what the controller sees: each writes
its file on the controller only (they leave it to the controller on a worker, as under
pytest-xdist), with every test in it, as a plain run does."""

from __future__ import annotations

import html
import json
import re

import pytest

from tests.plugins.conftest import Matrix, read_json, require

pytestmark = pytest.mark.cluster

REPORTED_SUITE = """
import pytest


def test_passes():
    print("some output")


def test_fails():
    assert 1 == 2


@pytest.mark.skip(reason="not today")
def test_skipped():
    pass


@pytest.mark.xfail(reason="known")
def test_xfails():
    assert False


@pytest.mark.parametrize("i", range(3))
def test_many(i):
    assert i != 2
"""


def _html_results(matrix: Matrix, name: str) -> dict[str, list[str]]:
    """Test id -> results, from the JSON pytest-html embeds in its report."""
    text = (matrix.pytester.path / name).read_text()
    blob = re.search(r'data-jsonblob="([^"]*)"', text)
    assert blob is not None, "no data in the HTML report"
    tests = json.loads(html.unescape(blob.group(1)))["tests"]
    return {testid: sorted(entry["result"] for entry in runs) for testid, runs in tests.items()}


def test_html_report(matrix: Matrix) -> None:
    require("pytest_html")
    matrix.suite(test_reported=REPORTED_SUITE)
    plugins = ["html", "html_fixtures", "metadata"]
    plain = matrix.run(plugins, "--html=plain.html", "--self-contained-html", gold=False)
    gold = matrix.run(plugins, "--html=gold.html", "--self-contained-html", gold=True)
    assert gold.outcomes == plain.outcomes and gold.result.ret == plain.result.ret == 1
    plain_results, gold_results = (
        _html_results(matrix, "plain.html"),
        _html_results(matrix, "gold.html"),
    )
    assert len(plain_results) == 7
    assert gold_results == plain_results


def _json_report(matrix: Matrix, name: str) -> dict[str, object]:
    data = read_json(matrix.pytester.path / name)
    assert isinstance(data, dict)
    summary = {key: value for key, value in data["summary"].items()}
    tests = {
        test["nodeid"]: {
            "outcome": test["outcome"],
            "phases": {
                when: (test[when]["outcome"], test[when].get("stdout"), test[when].get("crash"))
                for when in ("setup", "call", "teardown")
                if when in test
            },
        }
        for test in data["tests"]
    }
    return {"summary": summary, "tests": tests, "exitcode": data["exitcode"]}


def test_json_report(matrix: Matrix) -> None:
    require("pytest_jsonreport")
    matrix.suite(test_reported=REPORTED_SUITE)
    plugins = ["pytest_jsonreport"]
    plain = matrix.run(plugins, "--json-report", "--json-report-file=plain.json", gold=False)
    gold = matrix.run(plugins, "--json-report", "--json-report-file=gold.json", gold=True)
    assert gold.outcomes == plain.outcomes and gold.result.ret == plain.result.ret == 1
    plain_report, gold_report = (
        _json_report(matrix, "plain.json"),
        _json_report(matrix, "gold.json"),
    )
    assert len(plain_report["tests"]) == 7  # type: ignore[arg-type]
    assert gold_report == plain_report
