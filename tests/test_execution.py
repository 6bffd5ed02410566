"""End-to-end: the execution model (workers, fixtures, fresh code, cwd) on a real cluster."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.cluster


def _lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_scoped_fixtures_once_per_worker_and_torn_down(pytester: pytest.Pytester, gold_args):
    log = pytester.path / "fixture.log"
    pytester.makeconftest(
        f"""
        import os
        import pytest

        LOG = {str(log)!r}

        def note(text):
            with open(LOG, "a") as f:
                f.write(f"{{text}} {{os.getpid()}}\\n")

        @pytest.fixture(scope="session")
        def tables():
            note("session-setup")
            yield 42
            note("session-teardown")
        """
    )
    pytester.makepyfile(
        test_a="""
        import pytest

        @pytest.fixture(scope="module")
        def model(tables):
            from conftest import note
            note("module-setup")
            yield tables
            note("module-teardown")

        @pytest.mark.parametrize("i", range(10))
        def test_case(model, i):
            assert model == 42
        """,
        test_b="""
        import pytest

        @pytest.fixture(scope="module")
        def broken():
            from conftest import note
            note("broken-setup")
            yield
            raise RuntimeError("module teardown broke")

        @pytest.mark.parametrize("i", range(4))
        def test_other(broken, tables, i):
            pass
        """,
    )
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider")
    lines = _lines(log)
    # The module fixture is set up once on each worker that ran test_b's cases, and each
    # of those teardowns fails and is reported, as with one pytest session per worker.
    broken_setups = len([line for line in lines if line.startswith("broken-setup")])
    assert 1 <= broken_setups <= 2
    result.assert_outcomes(passed=14, errors=broken_setups)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_other*", "*module teardown broke*"])
    session_setups = [line for line in lines if line.startswith("session-setup")]
    worker_pids = {line.split()[1] for line in session_setups}
    # Once per worker process, never once per case; every setup has its teardown.
    assert 1 <= len(session_setups) <= 2
    assert len(worker_pids) == len(session_setups)
    assert sorted(
        line.split()[1] for line in lines if line.startswith("session-teardown")
    ) == sorted(worker_pids)
    module_setups = [line for line in lines if line.startswith("module-setup")]
    assert len(module_setups) <= 2
    assert len([line for line in lines if line.startswith("module-teardown")]) == len(module_setups)


def test_edited_code_takes_effect_and_module_state_does_not_leak(
    pytester: pytest.Pytester, gold_args
):
    pytester.makepyfile(
        simstate="COUNTER = []\n",
        test_sim="""
        import simstate

        def test_state_is_fresh():
            assert simstate.COUNTER == []
            simstate.COUNTER.append(1)

        def test_version():
            assert 1 == 1
        """,
    )
    first = pytester.runpytest(*gold_args, "-p", "no:cacheprovider")
    first.assert_outcomes(passed=2)
    pytester.makepyfile(
        test_sim="""
        import simstate

        def test_state_is_fresh():
            assert simstate.COUNTER == []
            simstate.COUNTER.append(1)

        def test_version():
            assert 1 == 2, "edited"
        """
    )
    second = pytester.runpytest(*gold_args, "-p", "no:cacheprovider")
    second.assert_outcomes(passed=1, failed=1)
    second.stdout.fnmatch_lines(["*AssertionError: edited*"])


def test_engines_run_in_invocation_dir_with_rootdir_importable(
    pytester: pytest.Pytester, gold_args
):
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(simlib="def albedo():\n    return 0.3\n")
    sims = pytester.mkpydir("sims")
    (sims / "test_where.py").write_text(
        "import os\n"
        "import simlib\n\n"
        "def test_where():\n"
        f"    assert os.getcwd() == {str(pytester.path)!r}\n"
        "    assert simlib.albedo() == 0.3\n"
    )
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider", "sims")
    result.assert_outcomes(passed=1)


def test_case_not_collected_on_engine_is_a_clear_error(
    pytester: pytest.Pytester, gold_args, monkeypatch: pytest.MonkeyPatch
):
    # The controller has the variable; the engines (started before) do not.
    monkeypatch.setenv("GOLD_TEST_CONTROLLER_ONLY", "1")
    pytester.makepyfile(
        """
        import os
        import pytest

        if "GOLD_TEST_CONTROLLER_ONLY" in os.environ:
            def test_only_on_controller():
                pass

        def test_everywhere():
            pass
        """
    )
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*test_only_on_controller was collected by the controller but not on engine*"]
    )


def test_crashing_case_costs_only_that_case(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(
        """
        import os
        import signal
        import sys

        def test_before():
            pass

        def test_exits():
            print("said on stdout", flush=True)
            print("about to exit", file=sys.stderr, flush=True)
            os._exit(3)

        def test_segfaults():
            os.kill(os.getpid(), signal.SIGSEGV)

        def test_after():
            pass
        """
    )
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider", "--gold-batch-seconds=60")
    result.assert_outcomes(passed=2, failed=2)
    text = result.stdout.str()
    assert "exited with code 3" in text
    assert "about to exit" in text
    assert "said on stdout" in text
    assert "killed by SIGSEGV" in text
    assert "Fatal Python error: Segmentation fault" in text  # faulthandler's traceback
    result.stdout.fnmatch_lines(
        ["crashed its worker: killed by SIGSEGV (Segmentation fault) on *:e* (pid *)"]
    )


def test_unsendable_recorded_value_fails_only_that_case(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(
        """
        import numpy as np

        class Opaque:
            pass

        def test_numpy(record_property):
            record_property("tb", np.float64(271.5))
            record_property("profile", np.arange(3))

        def test_opaque(record_property):
            record_property("thing", Opaque())

        def test_fine():
            pass
        """
    )
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider", "--junitxml=out.xml")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*could not send the call report*record_property('thing'*"])
    xml = (pytester.path / "out.xml").read_text()
    assert 'name="tb" value="271.5"' in xml
    assert 'name="profile" value="[0, 1, 2]"' in xml


def test_pytest_exit_in_a_case_stops_the_run(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(
        """
        import pytest

        def test_exit():
            pytest.exit("campaign aborted", returncode=7)
        """
    )
    result = pytester.runpytest_subprocess(*gold_args, "-p", "no:cacheprovider")
    assert result.ret == 7
    result.stdout.fnmatch_lines(["*Exit: campaign aborted*"])


def test_hooks_are_called(pytester: pytest.Pytester, gold_args):
    log = pytester.path / "hooks.log"
    pytester.makeconftest(
        f"""
        def pytest_gold_cluster_ready(config, client, engines):
            with open({str(log)!r}, "a") as f:
                f.write(f"ready {{len(engines)}} {{len(client.ids)}}\\n")

        def pytest_gold_case_scheduled(config, nodeid, engine):
            with open({str(log)!r}, "a") as f:
                f.write(f"scheduled {{nodeid}} {{engine.tag}}\\n")

        def pytest_gold_case_finished(config, nodeid, reports, engine):
            outcome = [r.outcome for r in reports if r.when == "call"][0]
            with open({str(log)!r}, "a") as f:
                f.write(f"finished {{nodeid}} {{outcome}} {{engine.tag}}\\n")
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_case(i):
            assert i != 1
        """
    )
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    lines = log.read_text().splitlines()
    assert lines[0] == "ready 2 2"
    scheduled = sorted(line.split()[1] for line in lines if line.startswith("scheduled"))
    assert scheduled == [f"test_hooks_are_called.py::test_case[{i}]" for i in range(3)]
    finished = {line.split()[1]: line.split()[2] for line in lines if line.startswith("finished")}
    assert finished["test_hooks_are_called.py::test_case[1]"] == "failed"
    assert finished["test_hooks_are_called.py::test_case[0]"] == "passed"


def test_worker_environment_has_no_kernel_colour(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(
        """
        import os

        def test_env():
            assert os.environ.get("FORCE_COLOR") != "1"
            assert os.environ.get("PAGER") != "cat"
        """
    )
    pytester.runpytest(*gold_args, "-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux CPU affinity")
def test_verbose_lines_and_failure_header_name_the_engine(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(
        """
        def test_ok():
            pass

        def test_bad():
            assert False
        """
    )
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider", "-v")
    result.stdout.fnmatch_lines_random(
        [
            "gold: attached to the cluster of connection file *: 2 engines on 1 host*",
            "[[]*:e[0-9]] [[]*%] PASSED *test_ok*",
            "[[]*:e[0-9]] [[]*%] FAILED *test_bad*",
            "[[]*:e[0-9]] linux host * engine * -- Python *",
        ]
    )


def test_longest_cases_go_first_once_their_durations_are_known(
    pytester: pytest.Pytester, gold_args
):
    log = pytester.path / "scheduled.log"
    pytester.makeconftest(
        f"""
        def pytest_gold_case_scheduled(config, nodeid, engine):
            with open({str(log)!r}, "a") as f:
                f.write(nodeid.split("::")[1] + "\\n")
        """
    )
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.parametrize("seconds", [0.0, 0.1, 0.6, 0.3])
        def test_case(seconds):
            time.sleep(seconds)
        """
    )
    pytester.runpytest(*gold_args).assert_outcomes(passed=4)
    assert log.read_text().split() == [f"test_case[{s}]" for s in ("0.0", "0.1", "0.6", "0.3")]
    log.unlink()
    pytester.runpytest(*gold_args).assert_outcomes(passed=4)
    assert log.read_text().split() == [f"test_case[{s}]" for s in ("0.6", "0.3", "0.1", "0.0")]
    log.unlink()
    pytester.runpytest(*gold_args, "--gold-order=collection").assert_outcomes(passed=4)
    assert log.read_text().split() == [f"test_case[{s}]" for s in ("0.0", "0.1", "0.6", "0.3")]


def test_worker_environment_from_gold_env(pytester: pytest.Pytester, gold_args):
    pytester.makeini("[pytest]\ngold_env =\n    SIM_SCENARIO=ssp245\n    OPENBLAS_NUM_THREADS=2\n")
    pytester.makepyfile(
        """
        import os

        def test_env():
            assert os.environ["OMP_NUM_THREADS"] == "1"  # default
            assert os.environ["MKL_NUM_THREADS"] == "1"
            assert os.environ["OPENBLAS_NUM_THREADS"] == "2"  # ini overrides the default
            assert os.environ["SIM_SCENARIO"] == "ssp126"  # the option overrides the ini
        """
    )
    result = pytester.runpytest(
        *gold_args, "-p", "no:cacheprovider", "--gold-env", "SIM_SCENARIO=ssp126"
    )
    result.assert_outcomes(passed=1)


def test_crash_in_module_teardown_is_that_cases_error(pytester: pytest.Pytester, gold_args):
    """A crash while tearing down a module's fixtures is reported on the case whose
    teardown ran them, as a plain run reports teardown errors; no other case is lost."""
    pytester.makepyfile(
        test_a="""
        import os
        import signal

        import pytest

        @pytest.fixture(scope="module")
        def crashes_at_teardown():
            yield
            os.kill(os.getpid(), signal.SIGSEGV)

        def test_one(crashes_at_teardown):
            pass
        """,
        test_b="""
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_after(i):
            pass
        """,
    )
    result = pytester.runpytest(
        *gold_args,
        "-p",
        "no:cacheprovider",
        "--gold-engines" if False else "-q",
        "--gold-batch-seconds=60",
        "--gold-order=collection",
    )
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_one*", "crashed its worker: killed by SIGSEGV*"]
    )
