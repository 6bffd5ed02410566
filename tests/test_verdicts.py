"""End-to-end: options whose verdict depends on the order cases finish in (--sw, --sw-skip,
-x, --maxfail, --lf, --ff) give a --gold run the verdict of a plain run, run after run;
--ff and --nf cases are dispatched first; -x stops the failing engine at once; and
pytest.exit() in one case never fails another.

The verdict test runs the same suite in two directories, plainly in one and with --gold in
the other, several rounds in a row: each directory keeps its own pytest cache, so
stepwise's and --lf's state evolve as they would for a user. Which cases fail changes from
round to round (``round.txt``), and the case that fails first in collection order is slow,
so under --gold later cases finish before it.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

#: Cases that fail in each round (by parameter); the others pass.
FAILING_BY_ROUND = [{2, 7}, {2}, {1, 4, 6}, set()]

SUITE = """
    import pathlib
    import time

    import pytest

    ROUND = int(pathlib.Path("round.txt").read_text())
    FAILING = {failing}[ROUND]

    @pytest.mark.parametrize("i", range(8))
    def test_case(i):
        if i in (1, 2):
            # Slow, so that under --gold the cases after it finish first.
            time.sleep(0.3)
        assert i not in FAILING
"""


def case_outcomes(reprec: pytest.HookRecorder) -> dict[str, str]:
    """Each case's outcome as the terminal counts it (deselected ones included)."""
    outcomes: dict[str, str] = {}
    for call in reprec.getcalls("pytest_deselected"):
        for item in call.items:
            outcomes[item.nodeid] = "deselected"
    for report in reprec.getreports("pytest_runtest_logreport"):
        if report.failed:
            outcome = "failed" if report.when == "call" else "error"
        elif report.skipped:
            outcome = "skipped"
        elif report.when == "call":
            outcome = "passed"
        else:
            continue
        if outcomes.get(report.nodeid) not in ("failed", "error"):
            outcomes[report.nodeid] = outcome
    return outcomes


@pytest.fixture
def twin_suites(pytester: pytest.Pytester) -> tuple[Path, Path]:
    """The same suite in ``plain/`` and ``gold/``, each its own rootdir (and cache)."""
    pytester.makepyfile(test_suite=SUITE.format(failing=FAILING_BY_ROUND))
    pytester.makeini("[pytest]\n")
    dirs = []
    for name in ("plain", "gold"):
        target = pytester.path / name
        target.mkdir()
        for file in ("test_suite.py", "tox.ini"):
            shutil.copy(pytester.path / file, target / file)
        dirs.append(target)
    return dirs[0], dirs[1]


def run_in(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: Path, *args: str
) -> pytest.HookRecorder:
    monkeypatch.chdir(where)
    return pytester.inline_run(*args)


@pytest.mark.parametrize(
    "options",
    [["--sw"], ["--sw-skip"], ["--maxfail=2"], ["--lf"], ["--ff", "-x"]],
    ids=" ".join,
)
def test_verdict_matches_a_plain_run_round_after_round(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, twin_suites, gold_args, options
):
    plain_dir, gold_dir = twin_suites
    for round_number in range(len(FAILING_BY_ROUND)):
        for where in (plain_dir, gold_dir):
            (where / "round.txt").write_text(str(round_number))
        plain = run_in(pytester, monkeypatch, plain_dir, *options)
        gold = run_in(pytester, monkeypatch, gold_dir, *options, *gold_args)
        plain_outcomes = case_outcomes(plain)
        assert plain_outcomes, "the plain run ran nothing"
        assert (round_number, case_outcomes(gold), gold.ret) == (
            round_number,
            plain_outcomes,
            plain.ret,
        )


EXIT_SUITE = """
    import pytest

    @pytest.mark.parametrize("i", range(12))
    def test_case(i):
        if i == 3:
            pytest.exit("campaign aborted", returncode=7)
"""
#: Runs of the pytest.exit() suite: the stop races with the other engine's worker.
EXIT_RUNS = 12


def junit_cases(path: Path) -> list[tuple[str, list[str]]]:
    """(name, tags of its failure/error/skipped children) per <testcase>, in file order."""
    return [
        (case.get("name", ""), [child.tag for child in case if child.tag != "properties"])
        for case in ET.parse(path).getroot().iter("testcase")
    ]


def test_pytest_exit_never_fails_another_case(pytester: pytest.Pytester, gold_args):
    """pytest.exit() in one case stops the run; a case running elsewhere at that moment is
    cut short or finishes, never fails (it did: the stop's SIGINT ended the other worker's
    session before it read its batch, and its supervisor failed with ConnectionResetError)."""
    pytester.makepyfile(test_exit=EXIT_SUITE)
    plain = pytester.runpytest("-p", "no:cacheprovider", "--junitxml=plain.xml")
    assert plain.ret == 7
    plain_cases = junit_cases(pytester.path / "plain.xml")
    # pytest's own JUnit XML names no case for the one that called pytest.exit() (no
    # teardown report ever closes it): an empty <testcase/>, which --gold reproduces.
    assert plain_cases == [*((f"test_case[{i}]", []) for i in range(3)), ("", [])]
    for run in range(EXIT_RUNS):
        gold = pytester.runpytest("-p", "no:cacheprovider", *gold_args, "--junitxml=gold.xml")
        text = gold.stdout.str()
        assert gold.ret == 7, (run, text)
        assert "Exit: campaign aborted" in text
        assert "bug in pytest-gold" not in text, (run, text)
        assert set(gold.parseoutcomes()) == {"passed"}, (run, text)
        gold_cases = junit_cases(pytester.path / "gold.xml")
        # Every case reported passed (cases on the other engine may have finished first),
        # and the exiting case is the nameless element, as in the plain run.
        assert [case for case in gold_cases if case[0] == ""] == [("", [])], (run, gold_cases)
        assert all(children == [] for _, children in gold_cases), (run, gold_cases)


ORDER_SUITE = """
    import time

    import pytest

    @pytest.mark.parametrize("i", range(8))
    def test_case(i):
        assert i not in (5, 6)  # quick failures
        time.sleep(0.2)
"""
ORDER_CONFTEST = """
    def pytest_gold_case_scheduled(nodeid):
        with open("scheduled.txt", "a") as log:
            log.write(nodeid + "\\n")
"""


def scheduled(pytester: pytest.Pytester) -> list[str]:
    log = pytester.path / "scheduled.txt"
    order = log.read_text().split()
    log.unlink()
    return order


def test_failed_first_and_new_first_lead_the_dispatch(pytester: pytest.Pytester, gold_args):
    """--ff: the previous failures are sent first, although they are the shortest cases
    (longest-first ordering used to send them last); --nf: new cases first."""
    pytester.makepyfile(test_order=ORDER_SUITE)
    pytester.makeconftest(ORDER_CONFTEST)
    pytester.runpytest(*gold_args).assert_outcomes(passed=6, failed=2)
    scheduled(pytester)
    failed_first = pytester.runpytest(*gold_args, "--ff")
    failed_first.assert_outcomes(passed=6, failed=2)
    failures = {"test_order.py::test_case[5]", "test_order.py::test_case[6]"}
    assert set(scheduled(pytester)[:2]) == failures
    pytester.makepyfile(test_new="def test_new():\n    pass\n")
    new_first = pytester.runpytest(*gold_args, "--nf")
    new_first.assert_outcomes(passed=7, failed=2)
    assert scheduled(pytester)[0] == "test_new.py::test_new"


STOP_SUITE = """
    import os

    import pytest

    @pytest.mark.parametrize("i", range(40))
    def test_case(i):
        with open("started.txt", "a") as log:
            log.write(f"{i} {os.getpid()}\\n")
        assert i != 5
"""


def test_exitfirst_stops_the_failing_engine_at_once(pytester: pytest.Pytester, gold_args):
    """-x stopped only once the whole batch holding the failure came back: every case after
    it in the batch ran first. Now the engine that ran the failing case runs nothing after
    it (other engines at most what they started while the failure was on its way)."""
    pytester.makepyfile(test_stop=STOP_SUITE)
    plain = pytester.runpytest("-p", "no:cacheprovider", "-x")
    (pytester.path / "started.txt").unlink()
    gold = pytester.runpytest("-p", "no:cacheprovider", *gold_args, "-x")
    assert gold.parseoutcomes() == plain.parseoutcomes() == {"passed": 5, "failed": 1}
    started = [line.split() for line in (pytester.path / "started.txt").read_text().splitlines()]
    failing_worker = next(pid for i, pid in started if i == "5")
    after_it = [int(i) for i, pid in started if pid == failing_worker and int(i) > 5]
    assert after_it == [], started
