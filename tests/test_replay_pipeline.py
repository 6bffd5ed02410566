"""End-to-end: the replay path keeps what a plain run shows (-x order, shared report parts)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.cluster

#: More cases than the session cluster has engines, so that some engine gets a second batch.
CASES = 6


def test_runs_that_stop_on_failure_still_wait_for_each_result(pytester: pytest.Pytester, gold_args):
    """With -x the controller sends nothing a plain run would not reach: a case is sent
    only once the results before it are in, so -x stops where a plain run stops."""
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.parametrize("i", range({CASES}))
        def test_case(i):
            assert i != 1
        """
    )
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider", "-x")
    plain = pytester.runpytest("-p", "no:cacheprovider", "-x")
    assert result.ret == plain.ret == 1
    assert result.parseoutcomes() == plain.parseoutcomes()


def test_reports_of_a_case_share_location_and_keywords(pytester: pytest.Pytester, gold_args):
    """pytest keeps every report to the end of the run: the replayed setup, call and
    teardown reports of a case share their (equal) location and keywords instead of
    holding a copy each, and they still equal what a plain run reports."""
    out = pytester.path / "shared.txt"
    pytester.makeconftest(
        f"""
        def pytest_sessionfinish(session):
            config = session.config
            if hasattr(config, "workerinput"):
                return  # a gold worker: the controller's replayed reports are wanted
            terminal = config.pluginmanager.get_plugin("terminalreporter")
            reports = [r for r in terminal.stats.get("passed", []) if r.when]
            by_case = {{}}
            for report in terminal.stats.get("", []) + reports:
                by_case.setdefault(report.nodeid, []).append(report)
            with open({str(out)!r}, "w") as f:
                for nodeid, case in sorted(by_case.items()):
                    shared = (
                        len({{id(r.location) for r in case}}),
                        len({{id(r.keywords) for r in case}}),
                    )
                    f.write(f"{{nodeid}} {{len(case)}} {{shared}} {{sorted(case[0].keywords)}} "
                            f"{{case[0].location}}\\n")
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_case(i):
            pass
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
    plain = out.read_text().splitlines()
    pytester.runpytest(*gold_args, "-p", "no:cacheprovider").assert_outcomes(passed=3)
    gold = out.read_text().splitlines()
    assert len(gold) == 3
    for plain_line, gold_line in zip(plain, gold, strict=True):
        assert gold_line.split(" ")[:2] == plain_line.split(" ")[:2]
        assert " (1, 1) " in gold_line, gold_line
        # Same keywords and location as the plain run's reports.
        assert gold_line.split(") ", 1)[1] == plain_line.split(") ", 1)[1]


def test_pytest_ends_its_session_with_the_run_heap_still_frozen(
    pytester: pytest.Pytester, gold_args
):
    """pytest's own end of session makes full collections (for unraisable exceptions):
    they run before the heap is thawed, so they skip what the run froze, and the heap
    is thawed once pytest's cleanups are done (pytest may run again in this process)."""
    seen = pytester.path / "frozen.txt"
    pytester.makeconftest(
        f"""
        import gc

        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_unconfigure(config):
            if not hasattr(config, "workerinput"):
                with open({str(seen)!r}, "w") as f:
                    f.write(str(gc.get_freeze_count()))
        """
    )
    pytester.makepyfile("def test_one():\n    pass\n")
    result = pytester.runpytest_inprocess(*gold_args, "-p", "no:cacheprovider")
    assert result.ret == 0
    assert int(seen.read_text()) > 0  # the last pytest_unconfigure: still frozen
    import gc

    assert gc.get_freeze_count() == 0  # thawed after the cleanups
