"""Plugins that take part in pytest-xdist's protocol: their controller half fills
``workerinput`` (pytest_configure_node), their worker half reads it, and some send
``workeroutput`` back (pytest_testnodedown). Each with and without pytest-xdist loaded:
several register their xdist hooks only when it is."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from pytest_gold import pluginshims
from tests.plugins.conftest import Matrix, read_json, require, summary_counts

pytestmark = pytest.mark.cluster  # (the unit tests here need no cluster, but the plugins)

WITH_AND_WITHOUT_XDIST = pytest.mark.parametrize(
    "xdist", [[], ["xdist"]], ids=["without-xdist", "with-xdist"]
)

RANDOM_SUITE = """
import random

import pytest


@pytest.mark.parametrize("i", range(6))
def test_draw(i, request):
    with open(f"draws-{request.config.getoption('matrix_outcomes').split('-')[-1]}", "a") as f:
        f.write(f"{request.node.nodeid} {request.config.getoption('randomly_seed')} "
                f"{random.random()!r}\\n")
"""


def _draws(matrix: Matrix) -> dict[str, list[dict[str, tuple[str, str]]]]:
    draws: dict[str, dict[str, tuple[str, str]]] = {}
    for path in sorted(matrix.pytester.path.glob("draws-*")):
        run = path.name.removeprefix("draws-")
        for line in path.read_text().splitlines():
            nodeid, seed, value = line.split()
            draws.setdefault(run, {})[nodeid] = (seed, value)
    return draws


@WITH_AND_WITHOUT_XDIST
def test_randomly_gives_workers_the_controllers_seed(matrix: Matrix, xdist: list[str]) -> None:
    require("pytest_randomly", *(["xdist"] if xdist else []))
    matrix.suite(test_draws=RANDOM_SUITE)
    plugins = ["randomly", *xdist]
    # A fixed seed: the same numbers as a plain run, test by test.
    matrix.compare(plugins, "-p", "no:cacheprovider", "--randomly-seed=1234", expect_ret=0)
    # The controller's own seed (none given): every case ran with it.
    gold = matrix.run(plugins, "-p", "no:cacheprovider", gold=True)
    assert gold.result.ret == 0, gold.text
    seed = re.search(r"Using --randomly-seed=(\d+)", gold.text)
    assert seed is not None, gold.text
    runs = _draws(matrix)
    plain_draws, fixed_gold_draws, own_seed_draws = (runs[key] for key in sorted(runs))
    assert fixed_gold_draws == plain_draws
    assert len(own_seed_draws) == 6
    assert {case_seed for case_seed, _ in own_seed_draws.values()} == {seed.group(1)}


RERUN_SUITE = """
import pytest

ATTEMPTS = {}


def attempt(name):
    ATTEMPTS[name] = ATTEMPTS.get(name, 0) + 1
    return ATTEMPTS[name]


def test_flaky():
    assert attempt("flaky") > 1


def test_always_fails():
    assert False


@pytest.mark.flaky(reruns=3)
def test_marked_flaky():
    assert attempt("marked") > 2


def test_passes():
    pass
"""


CASE_FINISHED_CONFTEST = """
def pytest_gold_case_finished(config, nodeid, reports, engine):
    with open("finished.log", "a") as file:
        file.write(nodeid + "\\n")
"""


@WITH_AND_WITHOUT_XDIST
def test_rerunfailures_reruns_failures(matrix: Matrix, xdist: list[str]) -> None:
    require("pytest_rerunfailures", *(["xdist"] if xdist else []))
    matrix.suite(CASE_FINISHED_CONFTEST, test_reruns=RERUN_SUITE)
    plugins = ["rerunfailures", *xdist]
    # The --gold run replaces the plain run's table (results are never overwritten
    # silently): the rows checked below are the --gold run's.
    plain, gold = matrix.compare(
        plugins, "--reruns", "1", "--gold-results=rows.jsonl", "--gold-results-overwrite"
    )
    counts = {"failed": 1, "passed": 3, "rerun": 4}
    assert summary_counts(plain) == counts
    assert summary_counts(gold) == counts
    # A case is finished by its last attempt: in the results table, in what
    # --gold-resume remembers, and for pytest_gold_case_finished (once per case).
    rows_file = matrix.pytester.path / "rows.jsonl"
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    outcomes = {row["nodeid"].split("::")[1]: row["outcome"] for row in rows}
    assert len(rows) == 4
    assert outcomes == {
        "test_flaky": "passed",
        "test_always_fails": "failed",
        "test_marked_flaky": "passed",
        "test_passes": "passed",
    }
    done = read_json(matrix.pytester.path / ".pytest_cache" / "v" / "gold" / "passed")
    passed = [name for name, outcome in outcomes.items() if outcome == "passed"]
    assert done == sorted(f"test_reruns.py::{name}" for name in passed)
    finished = (matrix.pytester.path / "finished.log").read_text().split()
    assert sorted(finished) == sorted(f"test_reruns.py::{name}" for name in outcomes)


COVERED_MODULE = """
def classify(x):
    if x > 2:
        return "big"
    if x > 1:
        return "middle"
    return "small"


def helper():
    return 1


def never_called():
    return 2
"""

COVERAGE_SUITE = """
import pytest

import simcode


@pytest.mark.parametrize("x", [0, 2, 3])
def test_classify(x):
    assert simcode.classify(x)


def test_helper():
    assert simcode.helper() == 1
"""


def _coverage(matrix: Matrix, name: str) -> dict[str, object]:
    data = read_json(matrix.pytester.path / name)
    assert isinstance(data, dict)
    files = data["files"]
    return {
        "totals": data["totals"],
        "files": {path: sorted(info["executed_lines"]) for path, info in files.items()},
    }


@WITH_AND_WITHOUT_XDIST
def test_cov_combines_coverage_from_every_engine(matrix: Matrix, xdist: list[str]) -> None:
    require("pytest_cov", *(["xdist"] if xdist else []))
    matrix.suite(simcode=COVERED_MODULE, test_cov=COVERAGE_SUITE)
    plugins = ["pytest_cov", *xdist]
    args = ["--cov=simcode", "--cov-branch", "--cov-report=term"]
    plain = matrix.run(plugins, *args, "--cov-report=json:plain.json", gold=False)
    gold = matrix.run(plugins, *args, "--cov-report=json:gold.json", gold=True)
    assert plain.result.ret == gold.result.ret == 0, gold.text
    assert gold.outcomes == plain.outcomes
    plain_cov, gold_cov = _coverage(matrix, "plain.json"), _coverage(matrix, "gold.json")
    assert gold_cov == plain_cov
    # The function bodies ran on the engines only: their lines came back from there.
    assert plain_cov["totals"]["covered_lines"] == 9  # type: ignore[index]
    total = re.compile(r"^TOTAL\s+.*$", re.MULTILINE)
    assert total.findall(gold.text) == total.findall(plain.text)
    assert "failed workers" not in gold.text


def test_xdist_installed_but_not_used(matrix: Matrix) -> None:
    require("xdist")
    matrix.suite(
        test_ids="""
        import os

        import pytest


        @pytest.mark.parametrize("i", range(4))
        def test_worker_id(i, worker_id, testrun_uid, request):
            workerinput = getattr(request.config, "workerinput", None)
            if workerinput is None:
                assert worker_id == "master"
            else:  # a --gold worker, as an xdist worker sees itself
                assert worker_id == workerinput["workerid"] == os.environ["PYTEST_XDIST_WORKER"]
                assert testrun_uid == os.environ["PYTEST_XDIST_TESTRUNUID"]
        """
    )
    matrix.compare(["xdist"], "-rA", expect_ret=0)


SNAPSHOT_SUITE = """
def test_numbers(snapshot):
    assert [1, 2, 3] == snapshot


def test_text(snapshot):
    assert "radiance" == snapshot


def test_dict(snapshot):
    assert {"tb_k": 271.5} == snapshot
"""


@WITH_AND_WITHOUT_XDIST
def test_syrupy_snapshots_and_unused_detection(matrix: Matrix, xdist: list[str]) -> None:
    require("syrupy", *(["xdist"] if xdist else []))
    plugins = ["syrupy", *xdist]
    matrix.suite(test_snapshots=SNAPSHOT_SUITE)
    created = matrix.run(plugins, "--snapshot-update", gold=True)
    assert created.result.ret == 0, created.text
    assert "3 snapshots generated" in created.text
    plain, gold = matrix.compare(plugins, expect_ret=0)
    assert "3 snapshots passed" in gold.text
    # A snapshot no test uses any more: both runs notice (and fail) alike.
    matrix.pytester.makepyfile(test_snapshots=SNAPSHOT_SUITE.split("\n\n\ndef test_dict")[0])
    plain, gold = matrix.compare(plugins, expect_ret=1)
    assert "1 snapshot unused" in gold.text and "1 snapshot unused" in plain.text
    # --snapshot-update removes that one only.
    matrix.run(plugins, "--snapshot-update", gold=True)
    plain, gold = matrix.compare(plugins, expect_ret=0)
    assert "2 snapshots passed" in gold.text


def test_rerunfailures_status_server_where_the_controllers_is_out_of_reach() -> None:
    """Its workers connect to 127.0.0.1: a worker on another machine than the controller
    gets a status server of its own (the controller's listens on loopback only)."""
    require("pytest_rerunfailures")
    from pytest_rerunfailures import ClientStatusDB, ServerStatusDB

    controller = ServerStatusDB()
    workerinput = {"sock_port": controller.sock_port, "statusdb_token": controller.token}
    config = SimpleNamespace(workerinput=workerinput)
    pluginshims.configure_worker(config, shares_loopback=True)  # type: ignore[arg-type]
    assert workerinput == {"sock_port": controller.sock_port, "statusdb_token": controller.token}
    pluginshims.configure_worker(config, shares_loopback=False)  # type: ignore[arg-type]
    assert workerinput["sock_port"] != controller.sock_port
    client = ClientStatusDB(workerinput["sock_port"], workerinput["statusdb_token"])
    client.add_test_failure("test_x.py::test_x")
    assert client.get_test_failures("test_x.py::test_x") == 1
    assert controller.get_test_failures("test_x.py::test_x") == 0


def test_rerunfailures_on_engines_of_other_machines(
    pytester: pytest.Pytester, gold_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same reruns when the controller takes its engines for remote ones (an
    in-process run, so the controller's idea of its machine can be changed)."""
    require("pytest_rerunfailures", "xdist")
    from pytest_gold.engine import remote

    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setattr(remote, "this_machine", lambda: "another-machine")
    pytester.makepyfile(test_reruns=RERUN_SUITE)
    plugins = ["-p", "gold", "-p", "rerunfailures", "-p", "xdist"]
    result = pytester.runpytest(*plugins, "--reruns", "1", *gold_args)
    counts = result.parseoutcomes()
    counts.pop("warnings", None)
    assert counts == {"failed": 1, "passed": 3, "rerun": 4}
