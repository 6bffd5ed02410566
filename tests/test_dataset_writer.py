"""The dataset writer in-process (real zarr stores, no pytest run): random grids, random
arrival orders and random crash points; a resume fills exactly the holes."""

from __future__ import annotations

import itertools
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_gold.dataset.grid import CaseParams
from pytest_gold.dataset.writer import DatasetWriter

#: Elements of the recorded vector (a small spectrum).
VECTOR = 3
#: How long a test waits for the writer thread to write (a bound on a hang, not a figure).
THREAD_SECONDS = 60.0


def _value(seed: int) -> tuple[float, np.ndarray]:
    return 200.0 + seed / 7, (np.arange(VECTOR, dtype=np.float32) + seed) / 3


def _row(case: CaseParams, outcome: str) -> dict:
    return {"nodeid": case.nodeid, "outcome": outcome, "duration": 0.25, "host": "h", "engine": 1}


@st.composite
def sweeps(draw):
    """Cases of one test function on a random grid (not always a full product), with
    outcomes; failed cases record only their scalar (they failed before the vector)."""
    values = [
        draw(st.lists(st.integers(0, 9), min_size=1, max_size=4, unique=True)),
        draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=3, unique=True)),
        draw(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=3, unique=True)),
    ]
    dims = draw(st.integers(1, 3))
    product = list(itertools.product(*values[:dims]))
    chosen = draw(
        st.lists(st.sampled_from(product), min_size=1, max_size=len(product), unique=True)
    )
    cases, outcomes = [], {}
    for index, combo in enumerate(chosen):
        params = dict(zip(["n", "s", "x"], combo, strict=False))
        case = CaseParams(f"t.py::test_f[{index}]", "t.py::test_f", "test_f", params, {})
        cases.append(case)
        outcomes[case.nodeid] = draw(st.sampled_from(["passed", "passed", "failed"]))
    return cases, outcomes


def _record(case: CaseParams, outcome: str, seed: int) -> tuple[dict, dict]:
    scalar, vector = _value(seed)
    if outcome == "failed":
        return {"tb": scalar}, {}
    layout = {"dims": {"wf": ["layer"]}, "coords": {"layer": np.arange(VECTOR) * 10.0}}
    return {"tb": scalar, "wf": vector}, layout


def _feed(writer: DatasetWriter, cases, outcomes, order, passed_before=frozenset()) -> None:
    for index in order:
        case = cases[index]
        if case.nodeid in passed_before:
            writer.record_case(_row(case, "passed-before"), {})
            continue
        record, layout = _record(case, outcomes[case.nodeid], index)
        writer.record_case(_row(case, outcomes[case.nodeid]), record, layout)


def _open(path: Path) -> xr.Dataset:
    with xr.open_zarr(path, group="test_f") as dataset:
        return dataset.drop_vars("run_id").load()


def _cell(dataset: xr.Dataset, cell: dict) -> xr.Dataset:
    return dataset[cell].reset_coords(drop=True)


def _serial(path: Path, cases, outcomes, chunk_cells: int) -> xr.Dataset:
    """What one uninterrupted run that gets the cases in collection order writes."""
    writer = DatasetWriter(path, interval=None, chunk_cells=chunk_cells)
    writer.start_cases(cases)
    _feed(writer, cases, outcomes, range(len(cases)))
    writer.close()
    return _open(path)


class Killed(Exception):
    """Stands for a SIGKILL in the middle of a write."""


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), sweep=sweeps(), chunk_cells=st.integers(1, 6))
def test_crash_then_resume_gives_the_serial_result(data, sweep, chunk_cells):
    cases, outcomes = sweep
    n = len(cases)
    order = data.draw(st.permutations(range(n)), label="arrival order")
    crash = data.draw(st.integers(0, n), label="cases that finish before the crash")
    flushes = data.draw(st.sets(st.integers(0, max(crash - 1, 0))), label="writes before it")
    # None: killed between writes; k: killed in a last write, after k of its block writes.
    in_write = data.draw(st.none() | st.integers(0, 30), label="killed during a write")
    with tempfile.TemporaryDirectory() as tmp:
        reference = _serial(Path(tmp) / "serial.zarr", cases, outcomes, chunk_cells)
        path = Path(tmp) / "sweep.zarr"

        first = DatasetWriter(path, interval=None, chunk_cells=chunk_cells)
        first.start_cases(cases)
        for position, index in enumerate(order[:crash]):
            _feed(first, cases, outcomes, [index])
            if position in flushes:
                first.flush()
        if in_write is not None:
            _die_after(first, in_write)
            first.flush()
        first.abandon()  # what was queued since the last write is lost
        assert first.failure is None or isinstance(first.failure, Killed)
        assert set(first.core.cells_written.values()) <= {1}  # nothing written twice

        crashed = _open(path)  # readable after the crash
        present = [v for v in crashed.nodeid.where(crashed.outcome != "", "").values.ravel() if v]
        last = max(flushes, default=-1)
        flushed = {cases[i].nodeid for p, i in enumerate(order[:crash]) if p <= last}
        if in_write is None:
            assert set(present) == flushed
        else:
            assert flushed <= set(present) <= {cases[i].nodeid for i in order[:crash]}
        for nodeid in present:  # a cell with an outcome is the serial run's cell, whole
            where = np.argwhere(crashed.nodeid.values == nodeid)[0].tolist()
            cell = dict(zip(crashed.outcome.dims, where, strict=True))
            got, want = _cell(crashed, cell), _cell(reference, cell)
            # A variable no case had recorded before the crash is not in the store yet:
            # then the serial run's cell has no value for it either.
            unseen = set(want.data_vars) - set(got.data_vars)
            assert all(bool(want[name].isnull().all()) for name in unseen), unseen
            want = want.drop_vars(unseen)
            want = want.drop_dims([dim for dim in want.dims if dim not in got.dims])
            xr.testing.assert_equal(got, want)

        second = DatasetWriter(path, interval=None, resume=True, chunk_cells=chunk_cells)
        second.start_cases(cases)
        done = second.resume_done()
        assert done == {nodeid for nodeid in present if outcomes[nodeid] == "passed"}
        _feed(second, cases, outcomes, data.draw(st.permutations(range(n))), passed_before=done)
        second.close()
        assert second.failure is None
        holes = {c.nodeid for c in cases} - done
        by_cell = {cell: nodeid for nodeid, cell in second.groups["test_f"].layout.cells.items()}
        written_again = Counter(by_cell[cell] for _, cell in second.core.cells_written.elements())
        assert written_again == Counter(holes)  # exactly the holes, each once
        xr.testing.assert_equal(_open(path), reference)


def _die_after(writer: DatasetWriter, block_writes: int) -> None:
    """Make the writer's store fail after ``block_writes`` more block writes (in the
    order of the blocks given: zarr writes those of one call concurrently, in any order)."""
    store = writer.core.store
    write_blocks = store.write_blocks
    left = [block_writes]

    def dying(blocks):
        allowed = blocks[: left[0]]
        left[0] -= len(allowed)
        write_blocks(allowed)
        if len(allowed) < len(blocks):
            raise Killed

    store.write_blocks = dying


def test_the_writer_thread_writes_without_being_asked(tmp_path):
    cases = [
        CaseParams(f"t.py::test_f[{i}]", "t.py::test_f", "test_f", {"i": i}, {}) for i in range(3)
    ]
    writer = DatasetWriter(tmp_path / "s.zarr", interval=0.01)
    writer.start_cases(cases)
    try:
        writer.record_case(_row(cases[1], "passed"), {"tb": 1.0})
        deadline = time.monotonic() + THREAD_SECONDS
        while time.monotonic() < deadline:
            with xr.open_zarr(tmp_path / "s.zarr", group="test_f") as dataset:
                if dataset.outcome.values.tolist() == ["", "passed", ""]:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the writer thread did not write the cell")
    finally:
        writer.close()
    with xr.open_zarr(tmp_path / "s.zarr", group="test_f") as dataset:
        assert dataset.outcome.values.tolist() == ["not run", "passed", "not run"]
        assert np.isnan(dataset.tb.values[[0, 2]]).all() and dataset.tb.values[1] == 1.0


def test_a_store_is_reused_only_by_resume_and_replaced_only_when_asked(tmp_path):
    cases = [CaseParams("t.py::test_f[1]", "t.py::test_f", "test_f", {"i": 1}, {})]
    path = tmp_path / "s.zarr"
    DatasetWriter(path, interval=None).start_cases(cases)
    with pytest.raises(pytest.UsageError, match=r"s\.zarr exists\. --gold-resume fills in"):
        DatasetWriter(path, interval=None).start_cases(cases)
    other = [CaseParams("t.py::test_f[a]", "t.py::test_f", "test_f", {"j": "a"}, {})]
    with pytest.raises(
        pytest.UsageError, match=r"another sweep: group 'test_f'.*\(i\) in the store"
    ):
        DatasetWriter(path, interval=None, resume=True).start_cases(other)
    DatasetWriter(path, interval=None, overwrite=True).start_cases(other)
    with xr.open_zarr(path, group="test_f") as dataset:
        assert list(dataset.outcome.dims) == ["j"]
    folder = tmp_path / "notes.zarr"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    with pytest.raises(
        pytest.UsageError, match="is not a zarr store: pytest-gold will not remove it"
    ):
        DatasetWriter(folder, interval=None, overwrite=True).start_cases(cases)
    assert (folder / "mine.txt").read_text() == "keep me"


def test_netcdf_is_written_at_the_end_from_the_same_cells(tmp_path):
    cases = [
        CaseParams(f"t.py::test_f[{i}]", "t.py::test_f", "test_f", {"i": i}, {}) for i in range(4)
    ]
    outcomes = {c.nodeid: "passed" if i % 3 else "failed" for i, c in enumerate(cases)}
    reference = _serial(tmp_path / "s.zarr", cases, outcomes, chunk_cells=2)
    writer = DatasetWriter(tmp_path / "s.nc", interval=None, chunk_cells=2)
    writer.start_cases(cases)
    _feed(writer, cases, outcomes, [3, 1, 0])  # case 2 never runs
    assert (tmp_path / "s.nc.partial.zarr").is_dir() and not (tmp_path / "s.nc").exists()
    writer.close()
    assert not (tmp_path / "s.nc.partial.zarr").exists()
    with xr.open_dataset(tmp_path / "s.nc", group="test_f") as dataset:
        assert dataset.outcome.values.tolist() == ["failed", "passed", "not run", "failed"]
        expected = reference.isel(i=[0, 1, 3])
        got = dataset.drop_vars("run_id").isel(i=[0, 1, 3])
        for name in ("tb", "wf", "duration", "outcome", "nodeid"):
            xr.testing.assert_equal(got[name].load(), expected[name])
    # --gold-resume of a finished .nc: the journal is seeded from the file, the hole filled.
    again = DatasetWriter(tmp_path / "s.nc", interval=None, resume=True, chunk_cells=2)
    again.start_cases(cases)
    assert again.resume_done() == {cases[1].nodeid}
    _feed(again, cases, outcomes, [0, 2, 3], passed_before=set())
    again.record_case(_row(cases[1], "passed-before"), {})
    again.close()
    with xr.open_dataset(tmp_path / "s.nc", group="test_f") as dataset:
        xr.testing.assert_equal(dataset.drop_vars("run_id").load(), reference)
