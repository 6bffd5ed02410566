"""End-to-end: pytest's selection and reporting options behave as in a plain run."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.cluster

SWEEP = """
    import pytest

    @pytest.mark.parametrize("i", range(8))
    def test_sweep(i):
        assert i not in (2, 5)

    @pytest.mark.slow
    def test_marked():
        pass
"""


@pytest.fixture
def sweep(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\nmarkers =\n    slow: a slow case\n")
    pytester.makepyfile(test_sweep=SWEEP)
    return pytester


@pytest.mark.parametrize(
    "options",
    [
        ["-k", "sweep and not 3"],
        ["-m", "slow"],
        ["-m", "not slow", "-q"],
        ["--deselect", "test_sweep.py::test_sweep[0]"],
        ["test_sweep.py::test_sweep[5]", "test_sweep.py::test_marked"],
    ],
)
def test_selection_matches_plain(sweep: pytest.Pytester, gold_args, options):
    plain = sweep.runpytest("-p", "no:cacheprovider", *options)
    gold = sweep.runpytest("-p", "no:cacheprovider", *gold_args, *options)
    assert gold.parseoutcomes() == plain.parseoutcomes()
    assert gold.ret == plain.ret


def test_last_failed_and_failed_first(sweep: pytest.Pytester, gold_args):
    sweep.runpytest(*gold_args).assert_outcomes(passed=7, failed=2)
    rerun = sweep.runpytest(*gold_args, "--lf")
    rerun.assert_outcomes(failed=2, passed=0)
    rerun.stdout.fnmatch_lines(["*run-last-failure: rerun previous 2 failures*"])
    ordered = sweep.runpytest(*gold_args, "--ff", "-v")
    ordered.assert_outcomes(passed=7, failed=2)
    ordered.stdout.fnmatch_lines(["*run-last-failure: rerun previous 2 failures first*"])


def test_durations(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(
        """
        import time
        import pytest

        def test_slow():
            time.sleep(0.3)

        @pytest.mark.parametrize("i", range(5))
        def test_fast(i):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", *gold_args, "--durations=2")
    lines = result.stdout.lines
    header = next(i for i, line in enumerate(lines) if "slowest 2 durations" in line)
    # The slowest first: test_slow's call, which slept 0.3 s (or longer on a busy machine).
    seconds, when, nodeid = lines[header + 1].split()
    assert (when, nodeid.split("::")[-1]) == ("call", "test_slow")
    assert float(seconds.removesuffix("s")) >= 0.3


def test_exitfirst_stops_dispatch_and_interrupts(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(
        """
        import time
        import pytest

        def test_fails_first():
            time.sleep(0.5)
            assert False

        def test_long_running():
            time.sleep(30)

        @pytest.mark.parametrize("i", range(20))
        def test_queued(i):
            time.sleep(0.2)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", *gold_args, "-x", "-v")
    assert result.ret == 1
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1
    assert outcomes.get("passed", 0) < 20
    text = result.stdout.str()
    assert "PASSED test_exitfirst_stops_dispatch_and_interrupts.py::test_long_running" not in text
    result.stdout.fnmatch_lines(
        [
            "gold: 21 selected cases did not run (stopping after 1 failures).",
            "gold: cut short while running: *::test_long_running (on *:e*)",
            "*stopping after 1 failures*",
        ]
    )


def test_maxfail(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(40))
        def test_fail(i):
            assert False
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", *gold_args, "--maxfail=3", "--gold-batch-seconds=0.001"
    )
    outcomes = result.parseoutcomes()
    # Cases already running on the other engine may still finish, never many more.
    assert 3 <= outcomes["failed"] <= 4
    result.stdout.fnmatch_lines(["*stopping after 3 failures*"])


def test_late_interrupt_request_is_harmless(pytester: pytest.Pytester, gold_args, gold_cluster):
    """An interruption request that reaches an engine after its batch (or between runs)
    neither kills the engine nor cuts short a case of the next run."""
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_case(i):
            time.sleep(0.2)
        """
    )
    first = pytester.runpytest("-p", "no:cacheprovider", *gold_args)
    first.assert_outcomes(passed=4)
    from pytest_gold.engine.supervisor import INTERRUPT_SIGNAL

    client = gold_cluster.client
    pids = client[:].apply_async(os.getpid).get(timeout=30)
    for pid in pids:  # as the run does for local engines (they have no nanny)
        os.kill(pid, INTERRUPT_SIGNAL)
    # Every engine survived it (the signal's default action would have ended them).
    assert client[:].apply_async(os.getpid).get(timeout=30) == pids
    second = pytester.runpytest("-p", "no:cacheprovider", *gold_args)
    second.assert_outcomes(passed=4)
