"""End-to-end: faults cost the affected case only, nothing hangs, nothing is left behind.

Each test that breaks a cluster starts its own embedded one (never the session cluster)
and uses ``leak_check``, which fails the test if any process the run started survives.
"""

from __future__ import annotations

import os
import signal
import time
import xml.etree.ElementTree as ET

import psutil
import pytest

from .conftest import _cmdline, processes_with_token
from .inner import InnerPytest

pytestmark = pytest.mark.cluster


def test_time_limits_stop_hung_cases_and_show_their_stacks(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(
        # A short file name: the short summary has room for the failure's first line.
        test_h="""
        import ctypes
        import signal
        import threading
        import time

        import pytest

        def test_quick():
            pass

        @pytest.mark.gold(timeout=1)
        def test_hangs_in_python():
            threading.Thread(target=time.sleep, args=(60,), name="helper", daemon=True).start()
            time.sleep(60)
            open("python-sleep-ended", "w").close()

        def test_hangs_in_c_ignoring_signals():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
                signal.signal(sig, signal.SIG_IGN)
            # A signal with a handler (the stack dump's) may cut the sleep short: it
            # returns the seconds it did not sleep.
            if ctypes.CDLL(None).sleep(60) == 0:
                open("c-sleep-ended", "w").close()

        def test_after():
            pass
        """
    )
    result = pytester.runpytest(
        *gold_args, "-p", "no:cacheprovider", "--gold-timeout=2", "--gold-batch-seconds=60"
    )
    # Neither 60 s sleep ran to its end: both cases were stopped inside it.
    assert not (pytester.path / "python-sleep-ended").exists()
    assert not (pytester.path / "c-sleep-ended").exists()
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            # The cause first: what the short summary and the results table show.
            "FAILED test_h.py::test_hangs_in_python - exceeded its time limit of 1 s on*",
            "FAILED test_h.py::test_hangs_in_c_ignoring_signals - exceeded its time*",
            "exceeded its time limit of 1 s on *:e* (pid *) and was stopped; the stacks *",
            "*line * in test_hangs_in_python",  # the case's own stack
            "*line * in test_hangs_in_c_ignoring_signals",
            "*Thread 0x* (most recent call first):",  # every thread, not just the main one
        ]
    )


def test_lost_engine_case_is_retried_then_reported(pytester: pytest.Pytester, leak_check):
    pytester.makepyfile(
        test_k="""
        import os
        import signal
        import time

        import pytest

        def test_kills_its_engine():
            # The worker's parent is the engine: this is an engine dying mid-case.
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)

        @pytest.mark.parametrize("i", range(6))
        def test_fine(i):
            time.sleep(0.2)
        """
    )
    result = pytester.runpytest_subprocess(
        "--gold",
        "--gold-engines=3",
        "--gold-retries=1",
        "-p",
        "no:cacheprovider",
        "--junitxml=out.xml",
    )
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "gold: lost engine *:e*; 1 case sent again elsewhere",
            "*engine lost: *:e* (pid *) died while running this case (2 time(s))*",
            "FAILED test_k.py::test_kills_its_engine - engine lost: *:e* (pid *) died*",
        ]
    )
    cases = ET.parse(pytester.path / "out.xml").getroot().iter("testcase")
    assert sum(1 for _ in cases) == 7


def test_losing_every_engine_stops_with_the_rest_not_run(pytester: pytest.Pytester, leak_check):
    pytester.makepyfile(
        """
        import os
        import signal
        import time

        import pytest

        @pytest.mark.parametrize("i", range(2))
        def test_kills_its_engine(i):
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)

        @pytest.mark.parametrize("i", range(5))
        def test_never_reached(i):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--gold",
        "--gold-engines=2",
        "--gold-retries=0",
        "-p",
        "no:cacheprovider",
        "--gold-batch-seconds=60",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["gold: 5 selected cases did not run (every engine was lost)."])


def test_dead_controller_is_noticed_and_reported(pytester: pytest.Pytester, leak_check):
    pytester.makepyfile(
        """
        import time

        import pytest

        @pytest.mark.parametrize("i", range(30))
        def test_slow(i):
            time.sleep(0.5)
            open(f"done-{i}", "w").close()
        """
    )
    # --gold-wait is also how long the controller may stay silent: short, but long enough
    # for the embedded cluster's first engine to register on a busy machine.
    with InnerPytest(
        pytester.path, "--gold", "--gold-engines=2", "--gold-wait=10", "--junitxml=out.xml"
    ) as run:
        run.wait_for_files(*(pytester.path / f"done-{i}" for i in range(2)))  # cases finish
        controllers = [
            p
            for p in processes_with_token(leak_check)
            if "ipyparallel.controller" in " ".join(p.cmdline())
        ]
        assert controllers
        os.killpg(os.getpgid(controllers[0].pid), signal.SIGKILL)  # the controller's host dies
        # Noticed, not waited out: finish() fails the test if the run does not end.
        returncode, output = run.finish(), run.output
    assert returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "the ipyparallel controller stopped answering" in output
    root = ET.parse(pytester.path / "out.xml").getroot()
    cases = list(root.iter("testcase"))
    assert len(cases) == 30  # every case: finished ones and the ones that never finished
    assert any(case.find("error") is not None for case in cases)


def test_killed_pytest_leaves_no_cluster_behind(pytester: pytest.Pytester, leak_check):
    pytester.makepyfile(
        """
        import time

        def test_long():
            open("long-started", "w").close()
            time.sleep(600)
        """
    )
    with InnerPytest(pytester.path, "--gold", "--gold-engines=2") as run:
        run.wait_for_files(pytester.path / "long-started")  # its worker too is to be ended
        assert any("ipyparallel" in " ".join(p.cmdline()) for p in processes_with_token(leak_check))
        run.process.kill()  # SIGKILL: no finally, no atexit in pytest
        run.process.wait()
        deadline = time.monotonic() + 30
        left = processes_with_token(leak_check)
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = processes_with_token(leak_check)
        assert not left, [" ".join(p.cmdline()) for p in left]


def test_worker_dies_with_its_engine(pytester: pytest.Pytester, leak_check):
    """No orphaned case keeps running when its engine is gone."""
    pytester.makepyfile(
        """
        import os
        import signal
        import time

        def test_kills_engine_then_sleeps():
            with open("worker.pid", "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(600)
        """
    )
    result = pytester.runpytest_subprocess(
        "--gold", "--gold-engines=1", "--gold-retries=0", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(failed=1)
    worker_pid = int((pytester.path / "worker.pid").read_text())
    assert not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == "zombie"


def test_lost_host_engine_and_nanny_gone(pytester: pytest.Pytester, leak_check):
    """A host that disappears takes its engine and (where there is one, as in a
    profile's cluster) the engine's nanny at once."""
    pytester.makepyfile(
        """
        import os
        import signal
        import time

        import psutil
        import pytest

        def test_takes_its_host_down():
            if not os.path.exists("host-down"):
                open("host-down", "w").close()
                engine = psutil.Process(os.getppid())
                for child in engine.children():  # the engine's nanny
                    if "nanny" in " ".join(child.cmdline()):
                        os.kill(child.pid, signal.SIGKILL)
                os.kill(engine.pid, signal.SIGKILL)
                time.sleep(60)

        @pytest.mark.parametrize("i", range(4))
        def test_fine(i):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--gold", "--gold-engines=2", "-p", "no:cacheprovider", "--gold-batch-seconds=60"
    )
    # The lost case ran again on the other engine, where it passed.
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["gold: lost engine *:e*; * sent again elsewhere"])


def test_second_ctrl_c_exits_at_once_and_stops_the_cluster(pytester: pytest.Pytester, leak_check):
    pytester.makepyfile(
        """
        import signal
        import time

        import pytest

        @pytest.fixture
        def slow_teardown():
            yield
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            time.sleep(600)
            open("teardown-ended", "w").close()

        def test_done():
            pass

        def test_forever(slow_teardown):
            # The case ignores the first Ctrl-C, and says it got it.
            signal.signal(signal.SIGINT, lambda *_: open("interrupted", "w").close())
            open("forever-started", "w").close()
            while True:
                time.sleep(600)
        """
    )
    with InnerPytest(pytester.path, "--gold", "--gold-engines=2", "--junitxml=out.xml") as run:
        run.wait_for_files(pytester.path / "forever-started")
        run.send_signal(signal.SIGINT)
        # The run is handling the first Ctrl-C: it reached the case. Now the second.
        run.wait_for_files(pytester.path / "interrupted")
        run.send_signal(signal.SIGINT)
        # Nothing waits for the hung case (its teardown sleeps 600 s): finish() fails the
        # test if the run does not end.
        returncode, output = run.finish(), run.output
    assert returncode == pytest.ExitCode.INTERRUPTED, output
    assert not (pytester.path / "teardown-ended").exists()
    # leak_check: the controller, engines, nannies and the hung worker are all gone.


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interruption_keeps_finished_results(
    pytester: pytest.Pytester, leak_check, stop_signal: signal.Signals
):
    pytester.makepyfile(
        """
        import time

        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_quick(i):
            open(f"quick-{i}", "w").close()

        def test_forever():
            open("forever-started", "w").close()
            time.sleep(600)
        """
    )
    with InnerPytest(
        pytester.path, "--gold", "--gold-engines=2", "--junitxml=out.xml", "-rA"
    ) as run:
        run.wait_for_files(
            pytester.path / "forever-started", *(pytester.path / f"quick-{i}" for i in range(3))
        )
        run.send_signal(stop_signal)
        returncode, output = run.finish(), run.output
    assert returncode == pytest.ExitCode.INTERRUPTED, output
    assert "3 passed" in output
    assert "PASSED test_interruption_keeps_finished_results.py::test_quick[2]" in output
    names = [c.get("name") for c in ET.parse(pytester.path / "out.xml").getroot().iter("testcase")]
    assert sorted(names) == ["test_quick[0]", "test_quick[1]", "test_quick[2]"]


def test_sigterm_while_the_cluster_starts_stops_what_started(
    pytester: pytest.Pytester, leak_check: str
):
    """A scheduler's SIGTERM can come before the first engine registered: the controller
    and the engines that started are stopped all the same (leak_check)."""
    pytester.makepyfile("def test_x():\n    pass\n")
    with InnerPytest(pytester.path, "--gold", "--gold-engines=2", "--gold-wait=120") as run:
        deadline = time.monotonic() + 60
        while not any(
            "ipyparallel.controller" in " ".join(_cmdline(p))
            for p in processes_with_token(leak_check)
        ):
            assert run.process.poll() is None and time.monotonic() < deadline, run.output
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        returncode, output = run.finish(), run.output
    assert returncode == pytest.ExitCode.INTERRUPTED, output
    assert "Traceback" not in output
