"""pytest options that cannot do under --gold what they do in a plain run are a usage error
that says why; the ones that need no cluster print exactly what a plain run prints; a
connection file with the wrong key says so."""

from __future__ import annotations

import difflib
import json
import re
import socket
from pathlib import Path

import pytest

import pytest_gold.launch.cluster
from pytest_gold.settings import MAX_ENGINES_PER_CPU, usable_cpus

SUITE = """
    import pytest

    @pytest.fixture(scope="session")
    def tables():
        yield "tables"

    @pytest.fixture(scope="module")
    def model(tables):
        yield "model"

    @pytest.fixture
    def state(model):
        yield "state"

    @pytest.mark.parametrize("i", range(3))
    def test_case(state, i):
        assert i != 1

    def test_other(tables):
        pass
"""


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(pytest_gold.launch.cluster, "start_embedded", refuse)
    monkeypatch.setattr("pytest_gold.controller.session.start_embedded", refuse)


def usage_error(result: pytest.RunResult, message: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-n", "2"], "*--gold and pytest-xdist's -n / --dist both distribute the run's cases*"),
        (["--pdb"], "*--pdb: an interactive debugger stops in the process that runs a case*"),
        (["--trace"], "*--trace: *with --gold cases run on cluster engines*pytest --lf --pdb*"),
        (["--setup-show"], "*--setup-show prints fixture setups*Use --setup-plan*"),
        (
            ["--gold-engines=100000"],
            f"*--gold-engines 100000 would start 100000 engine processes*limit of "
            f"{MAX_ENGINES_PER_CPU * usable_cpus()} *--gold-max-engines*",
        ),
        (
            ["--gold-engines=3", "--gold-max-engines=2"],
            "*--gold-engines 3 would start 3 engine processes*limit of 2 *",
        ),
        (["--gold-max-engines=0"], "*--gold-max-engines (ini gold_max_engines) must be a whole*"),
    ],
)
def test_options_that_cannot_work_are_one_clear_error(pytester: pytest.Pytester, options, message):
    pytester.makepyfile(test_suite=SUITE)
    # In-process: the usage error comes before any cluster (which would fail this test).
    result = pytester.runpytest("--gold", "-p", "no:cacheprovider", *options)
    usage_error(result, message)


def test_the_engine_limit_can_be_raised(pytester: pytest.Pytester, no_cluster):
    limit = MAX_ENGINES_PER_CPU * usable_cpus()
    pytester.makeini(f"[pytest]\ngold_max_engines = {limit + 1}\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--gold", f"--gold-engines={limit + 1}", "--collect-only", "-q")
    assert result.ret == 0, result.stderr.str()


def _without_timing(text: str) -> str:
    return re.sub(r" in \d+\.\d+s( \(\d+:\d\d:\d\d\))?", " in Xs", text)


@pytest.mark.parametrize("option", ["--setup-plan", "--setup-only", "--collect-only"])
def test_setup_plan_and_setup_only_print_what_a_plain_run_prints(pytester: pytest.Pytester, option):
    """They call no test function: the controller runs them without a cluster (whose
    start would show in the output)."""
    pytester.makepyfile(test_suite=SUITE)
    plain = pytester.runpytest("-p", "no:cacheprovider", option)
    gold = pytester.runpytest("-p", "no:cacheprovider", "--gold", option)
    assert "SETUP" in plain.stdout.str() or option == "--collect-only"
    gold_lines = _without_timing(gold.stdout.str()).splitlines()
    plain_lines = _without_timing(plain.stdout.str()).splitlines()
    assert gold_lines == plain_lines, "\n".join(difflib.unified_diff(plain_lines, gold_lines))
    assert gold.ret == plain.ret


def _copy_connection_file(source: Path, target: Path, **changes: object) -> Path:
    info = json.loads(source.read_text())
    info.update(changes)
    target.write_text(json.dumps(info))
    target.chmod(0o600)
    return target


@pytest.mark.cluster
def test_connection_file_with_a_wrong_key_says_so(pytester: pytest.Pytester, connection_file):
    """The controller ignores messages signed with another key: the run fails after
    --gold-wait, saying the key may not match, rather than only 'timed out'."""
    key = json.loads(connection_file.read_text())["key"]
    wrong = _copy_connection_file(
        connection_file, pytester.path / "wrong-key.json", key=key[::-1].swapcase() + "x"
    )
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(
        "--gold", f"--gold-connection-file={wrong}", "--gold-wait=3", "-p", "no:cacheprovider"
    )
    usage_error(
        result,
        "*no answer within 3 s (--gold-wait). The controller at 127.0.0.1:* accepts connections "
        "but did not answer: the key in *wrong-key.json most likely does not match*",
    )


@pytest.mark.cluster
def test_connection_file_of_a_stopped_cluster_says_nothing_listens(
    pytester: pytest.Pytester, connection_file
):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stale = _copy_connection_file(connection_file, pytester.path / "stale.json", registration=port)
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(
        "--gold", f"--gold-connection-file={stale}", "--gold-wait=3", "-p", "no:cacheprovider"
    )
    usage_error(
        result, f"*Nothing accepts connections at 127.0.0.1:{port}*the cluster is not running*"
    )
