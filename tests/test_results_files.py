"""Results tables that exist already: carried forward, replaced, or refused (no cluster).

The writers are tested directly for every format; the options through plain pytest runs
(``--gold-results`` works without ``--gold``). The --gold-resume flow on a cluster is in
test_campaign.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pytest_gold.records import carryforward
from pytest_gold.records.results import writer_for

FORMATS = [".csv", ".jsonl", ".parquet"]


def _rows(path: Path) -> list[dict]:
    """Every row of a table as written (CSV cells as text, like the file)."""
    if path.suffix == ".csv":
        with open(path, newline="") as file:
            return list(csv.DictReader(file))
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _needs(suffix: str) -> None:
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")


@pytest.mark.parametrize("suffix", FORMATS)
def test_carried_forward_rows_are_kept_and_replaced_in_place(tmp_path, suffix):
    _needs(suffix)
    path = tmp_path / f"r{suffix}"
    first = writer_for(str(path))
    for name, tb in [("a", 201.5), ("b", 202.5), ("c", 203.5)]:
        first.write({"nodeid": name, "outcome": "passed", "tb_k": tb, "profile": [1, 2]})
    first.close()

    earlier = carryforward.read_table(path)
    assert list(earlier) == ["a", "b", "c"]
    second = writer_for(str(path), earlier)
    second.write({"nodeid": "b", "outcome": "failed", "tb_k": 9.5, "message": "boom"})
    second.write({"nodeid": "d", "outcome": "passed", "tb_k": 204.5})
    # Before close (a controller killed here): the file has every row; the last counts.
    during = carryforward.read_table(path)
    assert float(during["b"]["tb_k"]) == 9.5 and float(during["a"]["tb_k"]) == 201.5
    second.close()

    rows = _rows(path)
    assert [row["nodeid"] for row in rows] == ["a", "b", "c", "d"]
    by_id = {row["nodeid"]: row for row in rows}
    assert float(by_id["a"]["tb_k"]) == 201.5 and float(by_id["c"]["tb_k"]) == 203.5
    assert by_id["b"]["outcome"] == "failed" and by_id["b"]["message"] == "boom"
    profile = by_id["c"]["profile"]
    assert (json.loads(profile) if isinstance(profile, str) else profile) == [1, 2]


def test_a_parquet_run_that_did_not_finish_is_read_from_its_journal(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "r.parquet"
    first = writer_for(str(path))
    first.write({"nodeid": "a", "outcome": "passed", "tb_k": 1.0})
    first.close()
    second = writer_for(str(path), carryforward.read_table(path))
    second.write({"nodeid": "b", "outcome": "passed", "tb_k": 2.0})
    # never closed: the .parquet is the first run's, the journal has both rows
    assert {k: v["tb_k"] for k, v in carryforward.read_table(path).items()} == {
        "a": 1.0,
        "b": 2.0,
    }


def test_a_torn_last_jsonl_line_is_ignored_a_torn_middle_line_is_an_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"nodeid": "a", "x": 1}\n{"nodeid": "b", "x"')
    assert list(carryforward.read_table(path)) == ["a"]
    path.write_text('{"nodeid": "a", "x"\n{"nodeid": "b", "x": 1}\n')
    with pytest.raises(carryforward.UnreadableTable, match="line 1"):
        carryforward.read_table(path)
    path.write_text("not a results table\n")  # no row at all: not a table, not torn
    with pytest.raises(carryforward.UnreadableTable, match="line 1"):
        carryforward.read_table(path)


def test_remembered_tables_most_recent_first(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.touch()
    remembered = carryforward.remember(carryforward.remember([], a), b)
    assert remembered == [str(b), str(a)]
    assert carryforward.remember(remembered, a) == [str(a), str(b)]
    assert carryforward.elsewhere(remembered, b) == [str(a)]  # b itself does not count
    assert carryforward.elsewhere("junk", b) == []


SWEEP = """
    import pytest

    @pytest.mark.parametrize("surface", ["ocean", "land"])
    @pytest.mark.parametrize("channel", [23.8, 89.0])
    def test_bt(channel, surface, gold_record):
        gold_record["tb_k"] = 200.0 + channel / 10
"""


def test_an_existing_table_is_refused_without_resume_or_overwrite(pytester: pytest.Pytester):
    pytester.makepyfile(test_sweep=SWEEP)
    pytester.runpytest("--gold-results=out.csv").assert_outcomes(passed=4)
    before = (pytester.path / "out.csv").read_text()
    result = pytester.runpytest("--gold-results=out.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --gold-results out.csv: that file exists already (the results of an earlier "
            "run), and pytest-gold does not overwrite results silently. Give --gold-resume to "
            "run only what did not pass and carry the earlier rows forward into it, "
            "--gold-results-overwrite to replace it, or another path."
        ]
    )
    assert (pytester.path / "out.csv").read_text() == before
    replaced = pytester.runpytest(
        "--gold-results=out.csv", "--gold-results-overwrite", "-k", "land"
    )
    replaced.assert_outcomes(passed=2, deselected=2)
    assert len(_rows(pytester.path / "out.csv")) == 2


def test_resume_and_overwrite_together_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile(test_sweep=SWEEP)
    result = pytester.runpytest(
        "--gold-results=o.jsonl", "--gold-resume", "--gold-results-overwrite"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --gold-resume carries the rows of --gold-results*"])


def test_a_table_that_cannot_be_read_back_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile(test_sweep=SWEEP)
    (pytester.path / "out.jsonl").write_text("not json\n{}\n")
    result = pytester.runpytest("--gold-results=out.jsonl", "--gold-resume")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --gold-results out.jsonl: --gold-resume cannot carry the earlier rows forward*"]
    )


def test_rows_of_cases_not_run_again_are_kept(pytester: pytest.Pytester):
    """Without --gold, --gold-resume runs every selected case (it needs a cluster to leave
    cases out), and still keeps the rows of the cases this run did not select."""
    pytester.makepyfile(test_sweep=SWEEP)
    pytester.runpytest("--gold-results=out.jsonl").assert_outcomes(passed=4)
    result = pytester.runpytest("--gold-results=out.jsonl", "--gold-resume", "-k", "land")
    result.assert_outcomes(passed=2, deselected=2)
    rows = _rows(pytester.path / "out.jsonl")
    assert sorted(row["nodeid"].split("[")[1] for row in rows) == [
        "23.8-land]",
        "23.8-ocean]",
        "89.0-land]",
        "89.0-ocean]",
    ]
    assert all(row["outcome"] == "passed" and row["tb_k"] > 200 for row in rows)
