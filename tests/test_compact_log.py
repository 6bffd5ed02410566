"""End-to-end: --gold-log=compact and the failures grouped by kind at the end."""

from __future__ import annotations

import pytest

# Tests that need a cluster are marked one by one: the others run in the fast lane.

#: Three files whose results come back interleaved, with failures of three kinds.
FILES = {
    "test_rt": """
        import ctypes
        import pytest

        @pytest.mark.parametrize("i", range(30))
        def test_rt(i):
            if i == 7:
                ctypes.string_at(0)  # a segfault
            assert i not in (11, 23), "too warm"
    """,
    "test_heat": """
        import pytest

        @pytest.mark.parametrize("i", range(30))
        def test_heat(i):
            pass
    """,
    "test_slow": """
        import time
        import pytest

        @pytest.mark.gold(timeout=0.5)
        def test_hangs():
            time.sleep(60)
    """,
}


@pytest.mark.cluster
def test_compact_log_has_no_line_per_case_and_groups_failures(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(**FILES)
    args = [*gold_args, "-p", "no:cacheprovider", "--gold-log=compact"]
    # -q: a long campaign's log; a status line at every loop, at least one
    result = pytester.runpytest(*args, "-q", "--gold-status-interval=0.01")
    outcomes = result.parseoutcomes()
    assert (outcomes["failed"], outcomes["passed"]) == (4, 57)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = result.stdout.lines
    # no progress line per file (pytest's "test_rt.py ..F.") and no [NN%]
    progress = [line for line in lines if line.startswith(("test_rt.py ", "test_heat.py "))]
    assert not progress
    assert not [line for line in lines if line.rstrip().endswith("%]")]
    assert any(line.startswith("gold: ") and " cases done (" in line for line in lines)
    result.stdout.fnmatch_lines_random(
        [
            "[[]*:e*[]] FAILED test_rt.py::test_rt[[]7[]] - *SIGSEGV*",
            "[[]*:e*[]] FAILED test_rt.py::test_rt[[]11[]] - AssertionError: too warm",
            "[[]*:e*[]] FAILED test_slow.py::test_hangs - *time limit*",
        ]
    )
    # pytest's own summary is whole: failure sections, short summary, counts
    result.stdout.fnmatch_lines(
        [
            "*= FAILURES =*",
            "*- gold: failures by kind -*",
            "2 AssertionError in test_rt: too warm",
            "*short test summary info*",
            "*4 failed, 57 passed*",
        ]
    )
    result.stdout.fnmatch_lines_random(
        [
            "1 SIGSEGV in test_rt",
            "1 time limit in test_hangs",
            "FAILED test_rt.py::test_rt[[]23[]] - AssertionError: too warm",
        ]
    )


@pytest.mark.cluster
def test_compact_log_with_v_has_no_case_lines(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(test_heat=FILES["test_heat"])
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider", "-v", "--gold-log=compact")
    result.assert_outcomes(passed=30)
    assert " PASSED " not in result.stdout.str()
    assert "gold: failures by kind" not in result.stdout.str()


@pytest.mark.cluster
def test_failures_by_kind_also_without_compact_log(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(test_rt=FILES["test_rt"])
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider")
    result.assert_outcomes(failed=3, passed=27)
    result.stdout.fnmatch_lines(["test_rt.py *", "*- gold: failures by kind -*"])
    result.stdout.fnmatch_lines_random(["2 AssertionError in test_rt: too warm", "1 SIGSEGV*"])


def test_bad_log_mode_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile(test_heat=FILES["test_heat"])
    result = pytester.runpytest("--gold", "--gold-log=terse")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --gold-log (ini gold_log) must be one of pytest, compact, not 'terse'."]
    )
