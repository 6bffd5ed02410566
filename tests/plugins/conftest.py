"""The plugin matrix: everyday plugins, each run on a small suite plainly and with --gold.

Every inner run is a subprocess with plugin autoloading off and the plugins under test
loaded by name (``-p``), so each suite sees exactly the plugins it is about, whatever
else the environment has installed; pytest-gold forwards that setting to its workers.
The two runs must agree: outcome of every phase of every test id, exit status, JUnit XML
(compared as tests/test_fidelity.py does), and the plugin's own output.

The plugins are installed by the ``matrix`` extra (``tox -e plugins``, and a step of
.ci/run). Elsewhere these tests are skipped, unless ``PYTEST_GOLD_MATRIX`` is set, as
CI sets it: then a missing plugin is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.test_fidelity import _testcases

#: Set (to anything) where the matrix must run: a plugin that is not installed fails.
MATRIX_ENV = "PYTEST_GOLD_MATRIX"
#: Longest an inner run may take (a hang fails the test instead of CI).
RUN_TIMEOUT_SECONDS = 240

#: Prepended to every suite's conftest.py: the outcome of every report the controller
#: (or a plain run) sees, in order, for the comparison.
OUTCOMES_CONFTEST = """
import json as _json
import pytest as _pytest

_MATRIX_CONFIG = []


def pytest_addoption(parser):
    parser.addoption("--matrix-outcomes", default=None)


def pytest_configure(config):
    _MATRIX_CONFIG.append(config)


def pytest_runtest_logreport(report):
    config = _MATRIX_CONFIG[-1]
    path = config.getoption("matrix_outcomes")
    if path and not hasattr(config, "workerinput"):
        with open(path, "a") as file:
            file.write(_json.dumps([report.nodeid, report.when, report.outcome]) + "\\n")
"""


#: A run's --basetemp (``runpytest-N``), with a --gold worker's own below it (``host-eN``).
_BASETEMP = re.compile(r"runpytest-\d+(/[\w.-]+-e\d+)?")


def _without_basetemp(cases: dict[tuple[str, str], list[dict[str, Any]]]) -> dict[Any, Any]:
    """JUnit test cases with the run's temporary directory in messages replaced: it is a
    different directory in every run, plain or not (pytest-regressions names files there)."""
    return {
        key: [
            {
                **case,
                "children": [
                    (tag, _BASETEMP.sub("BASETEMP", message), kind)
                    for tag, message, kind in case["children"]
                ],
            }
            for case in entries
        ]
        for key, entries in cases.items()
    }


def require(*modules: str) -> None:
    """Skip (or, where the matrix must run, fail) unless every module is importable."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = (
        f"{', '.join(missing)} not installed: the plugin matrix runs in its own "
        "environment (pip install -e '.[test,matrix]', or tox -e plugins)"
    )
    if os.environ.get(MATRIX_ENV):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class MatrixRun:
    result: pytest.RunResult
    #: (node id, phase) -> outcomes in the order reported (a rerun adds one).
    outcomes: dict[tuple[str, str], list[str]]
    junit: dict[tuple[str, str], list[dict[str, object]]]

    @property
    def text(self) -> str:
        return self.result.stdout.str() + self.result.stderr.str()


class Matrix:
    """Runs a suite plainly and with --gold under the same plugins and compares."""

    def __init__(self, pytester: pytest.Pytester, gold_args: list[str]) -> None:
        self.pytester = pytester
        self.gold_args = gold_args
        self.runs = 0

    def suite(self, conftest: str = "", **files: str) -> None:
        self.pytester.makeconftest(OUTCOMES_CONFTEST + "\n" + conftest)
        if files:
            self.pytester.makepyfile(**files)

    def run(self, plugins: list[str], *args: str, gold: bool) -> MatrixRun:
        self.runs += 1
        label = f"{'gold' if gold else 'plain'}-{self.runs}"
        outcomes_path = self.pytester.path / f"outcomes-{label}.jsonl"
        junit_path = self.pytester.path / f"junit-{label}.xml"
        loaded = [part for name in ["gold", *plugins] for part in ("-p", name)]
        result = self.pytester.runpytest_subprocess(
            *loaded,
            f"--matrix-outcomes={outcomes_path}",
            f"--junitxml={junit_path}",
            *args,
            *(self.gold_args if gold else []),
            timeout=RUN_TIMEOUT_SECONDS,
        )
        outcomes: dict[tuple[str, str], list[str]] = defaultdict(list)
        if outcomes_path.exists():
            for line in outcomes_path.read_text().splitlines():
                nodeid, when, outcome = json.loads(line)
                outcomes[(nodeid, when)].append(outcome)
        junit = _testcases(junit_path) if junit_path.exists() else {}
        return MatrixRun(result, dict(outcomes), _without_basetemp(junit))

    def compare(
        self, plugins: list[str], *args: str, expect_ret: int | None = None
    ) -> tuple[MatrixRun, MatrixRun]:
        """Run plainly, then with --gold; both must agree (and exit ``expect_ret``)."""
        plain = self.run(plugins, *args, gold=False)
        gold = self.run(plugins, *args, gold=True)
        assert plain.outcomes, f"the plain run ran nothing:\n{plain.text}"
        assert gold.outcomes == plain.outcomes, gold.text
        assert gold.result.ret == plain.result.ret, gold.text
        if expect_ret is not None:
            assert plain.result.ret == expect_ret, plain.text
        assert gold.junit == plain.junit
        assert "INTERNALERROR" not in gold.text, gold.text
        return plain, gold


@pytest.fixture
def matrix(
    pytester: pytest.Pytester, gold_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Matrix]:
    # Only the plugins a suite names, in its runs and (forwarded) in their workers.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    yield Matrix(pytester, gold_args)


def summary_counts(run: MatrixRun) -> dict[str, int]:
    """The summary line's counts, without warnings (``-p xdist`` with autoloading off
    warns that xdist was imported before it could be rewritten)."""
    counts = run.result.parseoutcomes()
    counts.pop("warnings", None)
    return counts


def read_json(path: Path) -> object:
    return json.loads(path.read_text())
