"""End-to-end: workers collect the controller's cases under the controller's node ids."""

from __future__ import annotations

import textwrap
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
