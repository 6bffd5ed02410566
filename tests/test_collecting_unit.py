"""What a worker collects and says when a case is missing (no cluster)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pytest_gold.protocol.collecting import CollectionPruner, not_collected_detail, pinned_arguments

ROOT = Path("/project")


def test_the_pruner_keeps_selected_files_and_the_directories_above_them():
    pruner = CollectionPruner(["/project/tests/a/test_one.py", "/site/pkg/tests/test_two.py"])
    for kept in ("/project/tests/a/test_one.py", "/project/tests/a", "/project", "/site/pkg"):
        assert pruner.pytest_ignore_collect(Path(kept)) is None, kept
    for pruned in ("/project/tests/b", "/project/tests/a/test_other.py", "/site/pkg/other"):
        assert pruner.pytest_ignore_collect(Path(pruned)) is True, pruned


def test_the_rootdir_and_config_file_are_named_for_the_worker(tmp_path: Path):
    ini = tmp_path / "tox.ini"
    ini.write_text("[pytest]\n")
    assert pinned_arguments(["-x", "tests"], "/project", str(ini)) == [
        "-x",
        "tests",
        "--rootdir=/project",
        f"--config-file={ini}",
    ]
    assert pinned_arguments([], "/project", "") == ["--rootdir=/project"]
    ini.unlink()  # gone since the controller read it: pytest would refuse to start
    assert pinned_arguments([], "/project", str(ini)) == ["--rootdir=/project"]


def test_an_error_of_any_collector_above_the_case_is_quoted():
    errors = {".": "rootdir broke", "sub": "package broke", "subway/test_a.py": "not mine"}
    detail = not_collected_detail("sub/test_a.py::test_x", {}, errors, ROOT, ROOT)
    assert detail.splitlines() == ["rootdir broke", "package broke"]
    assert "error" in not_collected_detail("test_a.py::test_x", {}, {}, ROOT, ROOT)


def test_cases_of_the_same_file_under_other_node_ids_are_named():
    items = {
        "project/test_a.py::test_x": SimpleNamespace(path=ROOT / "test_a.py"),
        "project/test_b.py::test_y": SimpleNamespace(path=ROOT / "test_b.py"),
    }
    detail = not_collected_detail("test_a.py::test_x", items, {}, Path("/"), ROOT)
    assert "its rootdir is /, the controller's /project" in detail
    assert "it collected 1 other case(s) from test_a.py, e.g. project/test_a.py::test_x" in detail
