"""End-to-end: workers collect the controller's cases under the controller's node ids."""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

#: An installed package with its tests inside (how scientific packages ship them), a
#: directory of tests next to the project, and a test file in the project itself.
OUTSIDE_LAYOUT = {
    "site/mypkg/__init__.py": "",
    "site/mypkg/tests/__init__.py": "",
    "site/mypkg/tests/test_package.py": """
        import pytest

        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_parametrized(n):
            assert n != 3

        def test_deselected():
            pass

        class TestGroup:
            def test_method(self):
                pass
    """,
    "site/mypkg/sub/__init__.py": "",
    "site/mypkg/sub/test_deeper.py": """
        def test_deeper():
            pass
    """,
    "site/mypkg/untouched/__init__.py": "",
    "site/mypkg/untouched/test_not_selected.py": """
        def test_not_selected():
            pass
    """,
    "other/test_next_door.py": """
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_next_door(i):
            pass

        def test_skipped():
            pytest.skip("skipped outside the rootdir")
    """,
    "other/nested/test_nested.py": """
        def test_nested():
            assert False, "fails outside the rootdir"
    """,
    "project/pytest.ini": "[pytest]\n",
    "project/test_inside.py": """
        def test_inside():
            pass
    """,
}


def _outcomes(reprec: pytest.HookRecorder) -> dict[tuple[str, str], str]:
    return {
        (rep.nodeid, rep.when): rep.outcome
        for rep in reprec.getreports("pytest_runtest_logreport")
        if not (rep.when == "teardown" and rep.passed)
    }


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def test_files_outside_the_rootdir_run_as_in_a_plain_run(
    pytester: pytest.Pytester, gold_args, monkeypatch: pytest.MonkeyPatch
):
    """``--pyargs pkg`` (an installed package's tests) and ``../other`` paths: pytest
    names such files after the argument they were found under, not the rootdir."""
    _write(pytester.path, OUTSIDE_LAYOUT)
    site = pytester.path / "site"
    monkeypatch.syspath_prepend(site)  # installed, for the controller
    monkeypatch.chdir(pytester.path / "project")
    args = [
        "-p",
        "no:cacheprovider",
        "--pyargs",
        "mypkg.tests",
        "mypkg.sub",
        "../other",
        "test_inside.py",
        "-k",
        "not deselected",
    ]
    plain = pytester.inline_run(*args)
    gold = pytester.inline_run(*args, *gold_args, f"--gold-env=PYTHONPATH={site}")

    plain_outcomes = _outcomes(plain)
    nodeids = {nodeid for nodeid, _ in plain_outcomes}
    assert len(nodeids) == 11, sorted(nodeids)  # the layout really ran
    # Named after the argument they were found under, not after the rootdir.
    assert "test_package.py::test_parametrized[3]" in nodeids, sorted(nodeids)
    assert "nested/test_nested.py::test_nested" in nodeids, sorted(nodeids)
    assert _outcomes(gold) == plain_outcomes
    assert gold.ret == plain.ret


def test_a_worker_started_later_keeps_the_controllers_rootdir(
    pytester: pytest.Pytester, gold_args, monkeypatch: pytest.MonkeyPatch
):
    """An ini file that appears in a parent directory during the run (a campaign lasts
    days) must not give a worker started later another rootdir, and so other node ids."""
    project = pytester.path / "outer" / "project"
    project.mkdir(parents=True)
    (project / "test_late.py").write_text(
        textwrap.dedent(
            f"""
            import os
            import time
            import pytest

            PARENT_INI = {str(pytester.path / "outer" / "pytest.ini")!r}

            def test_crash_after_an_ini_appears():
                with open(PARENT_INI, "w") as ini:
                    ini.write("[pytest]\\n")
                os._exit(3)  # the engine goes on with a new worker, which collects again

            @pytest.mark.parametrize("i", range(6))
            def test_after(i):
                deadline = time.monotonic() + 120
                while not os.path.exists(PARENT_INI):
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            """
        )
    )
    monkeypatch.chdir(project)
    result = pytester.runpytest(
        *gold_args, "-p", "no:cacheprovider", "--gold-order=collection", "-rf"
    )
    result.assert_outcomes(passed=6, failed=1)
    assert "not on engine" not in result.stdout.str()


#: Short runs of the bounded stress below; benchmarks/stress_collection.py makes hundreds.
STRESS_RUNS = 8
#: How often the stress flips the parent directory's setup.py.
CHURN_SECONDS = 0.005


def test_short_runs_while_a_parent_setup_py_comes_and_goes(
    pytester: pytest.Pytester, gold_args, monkeypatch: pytest.MonkeyPatch
):
    """Without an ini file, a ``setup.py`` in a parent directory makes that directory the
    rootdir: whatever the parent holds when each process looks, the engines find every
    case under the controller's node ids."""
    suite = pytester.path / "suite"
    suite.mkdir()
    (suite / "test_x.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('i', range(4))\ndef test_x(i):\n    pass\n"
    )
    monkeypatch.chdir(suite)
    stop = threading.Event()

    def churn() -> None:
        setup_py = pytester.path / "setup.py"
        while not stop.is_set():
            setup_py.write_text("")
            time.sleep(CHURN_SECONDS)
            setup_py.unlink(missing_ok=True)
            time.sleep(CHURN_SECONDS)

    churner = threading.Thread(target=churn, daemon=True)
    churner.start()
    try:
        outputs = [
            pytester.runpytest(*gold_args, "-p", "no:cacheprovider") for _ in range(STRESS_RUNS)
        ]
    finally:
        stop.set()
        churner.join()
    for result in outputs:
        assert "not on engine" not in result.stdout.str()
        result.assert_outcomes(passed=4)
