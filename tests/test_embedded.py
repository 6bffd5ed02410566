"""End-to-end: the embedded default cluster, its start, stop and clean-up, and bad input."""

from __future__ import annotations

import signal
import time
import xml.etree.ElementTree as ET

import pytest

import pytest_gold.launch.cluster

from .inner import InnerPytest

# Tests that need a cluster are marked one by one: the others run in the fast lane.

SWEEP = """
    import pytest

    @pytest.mark.parametrize("i", range(6))
    def test_sweep(i):
        assert i >= 0
"""


@pytest.mark.cluster
def test_embedded_cluster_runs_and_leaves_nothing_behind(
    pytester: pytest.Pytester, leak_check: str
):
    pytester.makepyfile(test_sweep=SWEEP)
    result = pytester.runpytest_subprocess("--gold", "--gold-engines=2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        [
            "gold: embedded cluster, 2 engines on 127.0.0.1",
            "gold: embedded cluster on 127.0.0.1, started in *: * on 1 host*",
        ]
    )
    # leak_check fails the test if a controller, engine, nanny or worker survives.


@pytest.mark.cluster
def test_embedded_cluster_is_stopped_after_ctrl_c(pytester: pytest.Pytester, leak_check: str):
    pytester.makepyfile(
        """
        import time

        def test_quick():
            open("quick-done", "w").close()

        def test_forever():
            open("forever-started", "w").close()
            time.sleep(600)
        """
    )
    with InnerPytest(pytester.path, "--gold", "--gold-engines=2", "--junitxml=out.xml") as run:
        run.wait_for_files(pytester.path / "forever-started", pytester.path / "quick-done")
        run.send_signal(signal.SIGINT)
        returncode, output = run.finish(), run.output
    assert returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    # The JUnit XML is written, with the finished case only (the interrupted one is not).
    cases = list(ET.parse(pytester.path / "out.xml").getroot().iter("testcase"))
    assert [case.get("name") for case in cases] == ["test_quick"]
    assert not [child.tag for child in cases[0] if child.tag in ("failure", "error", "skipped")]


def test_collect_only_and_empty_selection_start_no_cluster(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(pytest_gold.launch.cluster, "start_embedded", no_cluster)
    monkeypatch.setattr("pytest_gold.controller.session.start_embedded", no_cluster)
    pytester.makepyfile(test_sweep=SWEEP)
    collected = pytester.runpytest("--gold", "--collect-only", "-q")
    collected.stdout.fnmatch_lines(["6 tests collected*"])
    assert collected.ret == 0
    empty = pytester.runpytest("--gold", "-k", "nothing_matches")
    assert empty.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--gold-engines=0"], "*--gold-engines (ini gold_engines) must be a whole number*"),
        (["--gold-engines=-2"], "*--gold-engines*at least 1, not '-2'*"),
        (["--gold-engines=four"], "*--gold-engines*not 'four'*"),
        (["--gold-wait=-1"], "*--gold-wait (ini gold_wait) must be a positive number*"),
        (["--gold-wait=soon"], "*--gold-wait*not 'soon'*"),
        (["--gold-retries=-1"], "*--gold-retries*whole number, 0 or more*"),
        (["--gold-timeout=0"], "*--gold-timeout (ini gold_timeout) must be a positive number*"),
        (["--gold-timeout=inf"], "*--gold-timeout*not 'inf'*"),
        (["--gold-batch-seconds=0"], "*--gold-batch-seconds*positive number*"),
        (
            ["--gold-profile=gold", "--gold-connection-file=x.json"],
            "*give only one of them*",
        ),
        (["--gold-cluster-id=abc"], "*give --gold-profile too*"),
        (["--gold-profile=gold", "--gold-engines=4"], "*cannot change a cluster the run attaches*"),
        (
            ["--gold-connection-file=missing.json"],
            "*--gold-connection-file missing.json: no such file*",
        ),
    ],
)
def test_bad_options_are_one_clear_error(pytester: pytest.Pytester, options, message):
    pytester.makepyfile(test_sweep=SWEEP)
    # In-process, where starting a cluster fails the test (the no-cluster guard), unless
    # the error comes from attaching itself (a connection file that is not there).
    attaches = any(option.startswith("--gold-connection-file") for option in options)
    run = pytester.runpytest_subprocess if attaches else pytester.runpytest
    result = run("--gold", "-p", "no:cacheprovider", *options)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_bad_timeout_marker_is_one_clear_error(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.gold(timeout="soon")
        def test_case():
            pass
        """
    )
    result = pytester.runpytest("--gold", "--strict-markers")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: *::test_case: @pytest.mark.gold(timeout=...) must be a positive number*"]
    )


def test_stale_connection_file_is_a_clear_error(pytester: pytest.Pytester):
    pytester.makepyfile(test_sweep=SWEEP)
    stale = pytester.path / "ipcontroller-client.json"
    stale.write_text(
        '{"key": "x", "signature_scheme": "hmac-sha256", "location": "127.0.0.1",'
        ' "registration": 1, "interface": "tcp://127.0.0.1", "ssh": "", "task_scheme": "leastload"}'
    )
    result = pytester.runpytest_subprocess(
        "--gold", f"--gold-connection-file={stale}", "--gold-wait=3", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-gold could not attach to the cluster*"])


def test_unknown_profile(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(pytester.path / "ipython"))
    pytester.makepyfile(test_sweep=SWEEP)
    unknown = pytester.runpytest_subprocess("--gold", "--gold-profile=nosuch")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(["ERROR: --gold-profile nosuch: there is no IPython profile*"])


@pytest.mark.cluster
def test_cluster_without_engines_is_a_clear_error_not_a_hang(pytester: pytest.Pytester, leak_check):
    import ipyparallel as ipp

    pytester.makepyfile(test_sweep=SWEEP)
    cluster = ipp.Cluster(
        n=0,
        profile_dir=str(pytester.path / "profile"),
        load_profile=False,
        controller_ip="127.0.0.1",
        log_level=40,
    )
    cluster.start_controller_sync()
    try:
        connection = (
            pytester.path
            / "profile"
            / "security"
            / (f"ipcontroller-{cluster.cluster_id}-client.json")
        )
        deadline = time.monotonic() + 30
        while not connection.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        result = pytester.runpytest_subprocess(
            "--gold", f"--gold-connection-file={connection}", "--gold-wait=2"
        )
    finally:
        cluster.stop_cluster_sync()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: pytest-gold: waited 2 s (--gold-wait) for 1 usable engine (--gold-min-engines)*"]
    )
    assert "0 registered" in result.stderr.str()
