"""Plugins that change how a case runs (fixtures, markers, time limits, async, property
based tests, snapshots, environment): they run inside the workers, unchanged."""

from __future__ import annotations

import pytest

from tests.plugins.conftest import Matrix, require, summary_counts

pytestmark = pytest.mark.cluster


def test_timeout(matrix: Matrix) -> None:
    require("pytest_timeout")
    matrix.suite(
        test_slow="""
        import time

        import pytest


        def test_quick():
            pass


        def test_hangs():
            time.sleep(30)


        @pytest.mark.timeout(60)
        def test_own_limit():
            time.sleep(0.1)
        """
    )
    _, gold = matrix.compare(["timeout"], "--timeout=2", expect_ret=1)
    assert "Timeout (>2.0s) from pytest-timeout" in gold.text


def test_mock(matrix: Matrix) -> None:
    require("pytest_mock")
    matrix.suite(
        test_mocks="""
        import os


        def test_patch(mocker):
            mocker.patch("os.getcwd", return_value="/nowhere")
            assert os.getcwd() == "/nowhere"


        def test_spy(mocker):
            spy = mocker.spy(os.path, "join")
            os.path.join("a", "b")
            spy.assert_called_once_with("a", "b")


        def test_wrong_call(mocker):
            stub = mocker.stub()
            stub(1)
            stub.assert_called_once_with(2)
        """
    )
    matrix.compare(["pytest_mock"], expect_ret=1)


ASYNC_SUITE = """
import asyncio

import pytest
import pytest_asyncio


@pytest_asyncio.fixture
async def resource():
    await asyncio.sleep(0)
    yield 42


@pytest.mark.asyncio
async def test_async(resource):
    await asyncio.sleep(0.01)
    assert resource == 42


@pytest.mark.asyncio
async def test_async_fails():
    await asyncio.sleep(0)
    assert False


async def test_unmarked():
    pass
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_asyncio(matrix: Matrix, mode: str) -> None:
    require("pytest_asyncio")
    matrix.suite(test_async=ASYNC_SUITE)
    matrix.compare(
        ["asyncio"],
        f"--asyncio-mode={mode}",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        expect_ret=1,
    )


BENCHMARK_SUITE = """
def work():
    return sum(range(1000))


def test_benchmarked(benchmark):
    assert benchmark(work) == 499500


def test_plain():
    assert work() == 499500
"""


def test_benchmark_disabled(matrix: Matrix) -> None:
    require("pytest_benchmark")
    matrix.suite(test_bench=BENCHMARK_SUITE)
    matrix.compare(["benchmark"], "--benchmark-disable", expect_ret=0)


def test_benchmark_enabled_is_a_usage_error(matrix: Matrix) -> None:
    """pytest-benchmark measures in the workers and keeps its results there: no table,
    no --benchmark-json. A run that would lose them is refused, not run."""
    require("pytest_benchmark")
    matrix.suite(test_bench=BENCHMARK_SUITE)
    gold = matrix.run(["benchmark"], gold=True)
    assert gold.result.ret == pytest.ExitCode.USAGE_ERROR, gold.text
    assert "test_bench.py::test_benchmarked uses pytest-benchmark" in gold.text
    assert "--benchmark-disable" in gold.text
    assert not gold.outcomes  # refused before anything ran
    # Enabled, with no benchmark selected: nothing to lose, the run goes on.
    matrix.compare(["benchmark"], "-k", "test_plain", expect_ret=0)
    # --benchmark-skip: benchmarks are skipped in both.
    matrix.compare(["benchmark"], "--benchmark-skip", expect_ret=0)


def test_subtests(matrix: Matrix) -> None:
    """pytest's own ``subtests`` fixture (pytest >= 9; pytest-subtests before)."""
    matrix.suite(
        test_sub="""
        def test_channels(subtests):
            for channel in (23.8, 89.0, 183.3):
                with subtests.test(msg="channel", channel=channel):
                    assert channel != 89.0


        def test_all_good(subtests):
            for i in range(3):
                with subtests.test(i=i):
                    assert i < 3
        """
    )
    plugins = [] if pytest.version_tuple >= (9,) else ["subtests"]
    if plugins:
        require("pytest_subtests")
    plain, gold = matrix.compare(plugins, "-rA", "-q", expect_ret=1)
    # "2 failed, 1 passed, 5 subtests passed": the failed subtest counts among the failed.
    assert (
        summary_counts(gold)
        == summary_counts(plain)
        == {
            "failed": 2,
            "passed": 1,
            "subtests": 5,
        }
    )
    # pytest quotes the values of a subtest that travelled (channel='89.0'), as under
    # pytest-xdist: its SubtestContext applies saferepr again when a report is rebuilt.
    assert "SUBFAILED[channel] (channel=89.0)" in plain.text
    assert "SUBFAILED[channel] (channel='89.0')" in gold.text


def test_hypothesis(matrix: Matrix) -> None:
    require("hypothesis")
    matrix.suite(
        test_props="""
        from hypothesis import given, settings, strategies as st


        @given(st.integers())
        def test_holds(x):
            assert x + 0 == x


        @settings(database=None, derandomize=True)
        @given(st.integers(min_value=0))
        def test_breaks(x):
            assert x < 1000
        """
    )
    plain, gold = matrix.compare(["hypothesispytest"], "--hypothesis-show-statistics", expect_ret=1)
    assert "Failing test case: test_breaks(" in gold.text
    assert gold.text.count("Hypothesis Statistics") == plain.text.count("Hypothesis Statistics")
    assert "test_props.py::test_holds:" in gold.text  # the statistics of each test


def test_regressions(matrix: Matrix) -> None:
    require("pytest_regressions")
    matrix.suite(
        test_data="""
        def test_table(data_regression):
            data_regression.check({"tb_k": [271.5, 260.25], "channel": "ch183"})


        def test_text(file_regression):
            file_regression.check("brightness temperatures\\n")
        """
    )
    plugins = ["regressions", "pytest-datadir"]
    first = matrix.run(plugins, gold=True)  # no expected files yet: they are written
    assert summary_counts(first) == {"failed": 2}, first.text
    assert "File not found in data directory, created" in first.text
    matrix.compare(plugins, expect_ret=0)
    (matrix.pytester.path / "test_data" / "test_table.yml").write_text("tb_k: [1.0]\n")
    _, gold = matrix.compare(plugins, expect_ret=1)
    assert "FILES DIFFER" in gold.text or "test_table.yml" in gold.text


def test_env(matrix: Matrix) -> None:
    require("pytest_env")
    matrix.pytester.makeini(
        """
        [pytest]
        env =
            SIM_MODE=fast
            D:SIM_DEFAULT=kept
        """
    )
    matrix.suite(
        test_environment="""
        import os


        def test_env_set():
            assert os.environ["SIM_MODE"] == "fast"
            assert os.environ["SIM_DEFAULT"] == "kept"
        """
    )
    matrix.compare(["env"], expect_ret=0)
