"""The dataset writer of ``--gold-results=sweep.zarr`` at scale (needs pytest-gold[xarray]).

Part 1, in process (the figures of issue 14): a 10^5-cell grid (3 dimensions, one scalar
and one 13-element vector per cell, as trivial cases would record them) is fed to the
writer exactly as the controller's recorder does (``record_case`` with the values as
they arrive from an engine: plain lists plus their numpy dtype and shape), in collection
order and in a shuffled order (what ``--gold-order duration`` gives once durations are
known: cells scattered over every chunk). Measured, each against its goal:

- cells/s sustained: cells / seconds from the first cell to the end of ``close()`` (every
  cell on disk), with the writer thread writing every 2 s meanwhile (goal >= 1,000);
- RSS growth of the process from the writer: peak VmRSS while feeding and closing minus
  VmRSS before the writer started (goal < 200 MB), after a warm-up run that loads xarray
  and zarr (what those imports take is printed apart: once per process);
- ``xr.open_zarr`` of the finished store, in a fresh process after ``import xarray, zarr``
  (goal < 2 s).

It also compares the two chunkings of issue 14 on a smaller grid: chunk size 1 along the
grid (every cell its own chunk, written alone) against about 1,000 cells per chunk
buffered in memory (the writer's choice).

Part 2, end to end (``--e2e-cases``, default 2,000; 0 skips it): the same kind of suite
run by ``pytest --gold --gold-engines 2``, with ``--gold-results=e2e.zarr`` and without
results, as subprocesses; it reports both wall times and checks every cell is in the store.

    python benchmarks/bench_dataset.py [--cells N] [--e2e-cases M] [--timeout S]
"""

from __future__ import annotations

import argparse
import math
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import (
    BenchError,
    Table,
    add_timeout_option,
    interrupted,
    print_load_at_end,
    print_setup,
    run_pytest,
    write_suite,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: Issue 14's goals.
GOAL_CELLS_PER_SECOND = 1_000
GOAL_RSS_MB = 200
GOAL_OPEN_SECONDS = 2.0
#: Elements of the recorded vector.
VECTOR = 13
#: Cells of the chunking comparison (chunk size 1 writes ~10 files per cell, slowly).
COMPARE_CELLS = 500
#: Seconds between RSS samples.
RSS_SAMPLE_SECONDS = 0.05
MARKER = "BENCH_DATASET_RUN_ID"


def grid_shape(cells: int) -> tuple[int, int, int]:
    """Three dimensions whose product is about ``cells`` (50 x 40 x 50 for 10^5)."""
    side = round((cells / 0.8) ** (1 / 3))
    return max(1, side), max(1, round(side * 0.8)), max(1, round(cells / (side * side * 0.8)))


def cases(shape: tuple[int, int, int]) -> list:
    from pytest_gold.dataset.grid import CaseParams

    out = []
    for a in range(shape[0]):
        for b in range(shape[1]):
            for c in range(shape[2]):
                params = {"channel": 20.0 + a, "profile": f"p{b}", "surface": c}
                nodeid = f"test_grid.py::test_cell[{a}-{b}-{c}]"
                out.append(CaseParams(nodeid, "test_grid.py::test_cell", "test_cell", params, {}))
    return out


def vm_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


class PeakRss:
    """Samples this process's RSS in a thread; ``peak`` is the largest seen."""

    def __init__(self) -> None:
        self.peak = vm_rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_SECONDS):
            self.peak = max(self.peak, vm_rss_mb())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, vm_rss_mb())


def feed(path: Path, all_cases: list, order: list[int], chunk_cells: int | None = None) -> dict:
    """One writer run; returns its figures."""
    from pytest_gold.dataset.grid import DEFAULT_CHUNK_CELLS
    from pytest_gold.dataset.writer import DatasetWriter

    before = vm_rss_mb()
    with PeakRss() as rss:
        writer = DatasetWriter(path, chunk_cells=chunk_cells or DEFAULT_CHUNK_CELLS)
        writer.start_cases(all_cases)
        types = {"spectrum": ["<f8", [VECTOR]]}
        layout = {"types": types, "dims": {"spectrum": ["band"]}}
        started = time.perf_counter()
        for index in order:
            case = all_cases[index]
            row = {
                "nodeid": case.nodeid,
                "outcome": "passed",
                "duration": 0.001,
                "host": "vm",
                "engine": index % 2,
                "message": "",
            }
            spectrum = [index / 1000 + band for band in range(VECTOR)]  # as lists, from JSON
            writer.record_case(row, {"tb_k": 200.0 + index / 1000, "spectrum": spectrum}, layout)
        fed = time.perf_counter() - started
        writer.close()
        total = time.perf_counter() - started
    if writer.failure is not None:
        raise BenchError(f"the writer failed: {writer.failure!r}")
    return {
        "cells": len(order),
        "fed_seconds": fed,
        "seconds": total,
        "rate": len(order) / total,
        "rss_growth": rss.peak - before,
        "chunk_writes": writer.core.chunk_writes,
    }


def open_seconds(path: Path, group: str) -> tuple[float, int]:
    """Seconds ``xr.open_zarr`` takes in a fresh process (after import), and the cells
    with outcome "passed" it finds (loading the outcome variable, not timed)."""
    script = (
        "import sys, time, xarray as xr, zarr\n"  # imports are the session's, not the store's
        "t = time.perf_counter()\n"
        f"ds = xr.open_zarr({str(path)!r}, group={group!r})\n"
        "print(time.perf_counter() - t)\n"
        "print(int((ds.outcome == 'passed').sum()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), int(out[1])


def chunk_files(path: Path, group: str, variable: str) -> int:
    return sum(1 for p in (path / group / variable).iterdir() if not p.name.startswith("."))


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = Table(header, rows, "<" + ">" * (len(header) - 2))
    for row in [header, *rows]:
        print("  " + table.line(row))


def met(flag: bool) -> str:
    return "met" if flag else "NOT MET"


def part_one(cells: int, workdir: Path) -> bool:
    shape = grid_shape(cells)
    all_cases = cases(shape)
    n = len(all_cases)
    print(f"\nPart 1: the writer in process, a {shape[0]} x {shape[1]} x {shape[2]} = {n} "
          f"cell grid, tb_k (scalar) and spectrum ({VECTOR} values) per cell")  # fmt: skip
    ok = True
    # xarray, zarr and their codecs load on the first write: once per process, measured
    # apart so that the runs below show what the writer itself holds.
    before_imports = vm_rss_mb()
    warm_up = cases((5, 5, 5))
    feed(workdir / "warm-up.zarr", warm_up, list(range(len(warm_up))))
    print(f"  RSS of xarray, zarr and their codecs (once per process): "
          f"{vm_rss_mb() - before_imports:.0f} MB")  # fmt: skip
    rows: list[tuple[str, ...]] = []
    shuffled = list(range(n))
    random.Random(14).shuffle(shuffled)
    for label, order in (("collection", list(range(n))), ("shuffled", shuffled)):
        path = workdir / f"{label}.zarr"
        figures = feed(path, all_cases, order)
        opened, passed = open_seconds(path, "test_cell")
        if passed != n:
            raise BenchError(f"{label}: the store has {passed} passed cells, not {n}")
        rows.append(
            (label, str(n), f"{figures['seconds']:.1f}", f"{figures['rate']:,.0f}",
             f"{figures['rss_growth']:.0f}", str(figures["chunk_writes"]), f"{opened:.2f}")
        )  # fmt: skip
        for what, value, goal, good in (
            ("cells/s sustained", f"{figures['rate']:,.0f}", f">= {GOAL_CELLS_PER_SECOND:,}",
             figures["rate"] >= GOAL_CELLS_PER_SECOND),
            ("RSS growth from the writer", f"{figures['rss_growth']:.0f} MB", f"< {GOAL_RSS_MB} MB",
             figures["rss_growth"] < GOAL_RSS_MB),
            ("xr.open_zarr of the store", f"{opened:.2f} s", f"< {GOAL_OPEN_SECONDS:g} s",
             opened < GOAL_OPEN_SECONDS),
        ):  # fmt: skip
            print(f"  {label:10} {what:28} {value:>10}   goal {goal:10} {met(good)}")
            ok = ok and good
    print_table(("order", "cells", "s", "cells/s", "RSS growth MB", "chunk writes", "open s"), rows)

    compare = cases(grid_shape(COMPARE_CELLS))
    print(f"\nChunking, {len(compare)} cells in collection order:")
    rows = []
    for label, chunk_cells in (("1 cell per chunk", 1), ("~1,000 cells, buffered", None)):
        path = workdir / f"compare-{chunk_cells}.zarr"
        figures = feed(path, compare, list(range(len(compare))), chunk_cells)
        opened, _ = open_seconds(path, "test_cell")
        rows.append(
            (label, f"{figures['rate']:,.0f}", str(chunk_files(path, "test_cell", "tb_k")),
             f"{opened:.2f}")
        )  # fmt: skip
    print_table(("chunks", "cells/s", "files per variable", "open s"), rows)
    return ok


GRID_SUITE = """
import numpy as np
import pytest

@pytest.mark.parametrize("surface", range({c}))
@pytest.mark.parametrize("profile", [f"p{{i}}" for i in range({b})])
@pytest.mark.parametrize("channel", [20.0 + i for i in range({a})])
def test_cell(channel, profile, surface, gold_record):
    gold_record["tb_k"] = channel + surface / 10
    gold_record["spectrum"] = np.linspace(0.0, channel, {vector})
"""


def part_two(cases_wanted: int, workdir: Path, timeout: float) -> None:
    shape = grid_shape(cases_wanted)
    n = math.prod(shape)
    suite = write_suite(
        workdir / "suite",
        {"test_grid.py": GRID_SUITE.format(a=shape[0], b=shape[1], c=shape[2], vector=VECTOR)},
    )
    print(f"\nPart 2: end to end, {n} trivial cases, pytest --gold --gold-engines 2")
    rows = []
    base = ["--gold", "--gold-engines", "2", "-q", "-p", "no:cacheprovider"]
    for label, extra in (("none", []), ("e2e.zarr", ["--gold-results=e2e.zarr"])):
        run = run_pytest([*base, *extra], suite, MARKER, timeout, label)
        run.check_output(f"{n} passed", f"pytest {' '.join([*base, *extra])}")
        run.check_leftovers()
        rows.append((label, f"{run.wall:.1f}", f"{n / run.wall:,.0f}"))
    _, passed = open_seconds(suite / "e2e.zarr", "test_cell")
    if passed != n:
        raise BenchError(f"end to end: the store has {passed} passed cells, not {n}")
    print_table(("results", "wall s", "cases/s (whole run)"), rows)
    print(f"  every one of the {n} cells is in e2e.zarr with outcome 'passed'")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=100_000, help="cells of part 1")
    parser.add_argument("--e2e-cases", type=int, default=2_000, help="cases of part 2 (0: skip it)")
    add_timeout_option(parser, 900)
    args = parser.parse_args()
    print_setup("bench_dataset: the --gold-results dataset writer")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp:
            ok = part_one(args.cells, Path(tmp))
            if args.e2e_cases:
                part_two(args.e2e_cases, Path(tmp), args.timeout)
    except BenchError as error:
        print(f"\nFAILED: {error}")
        return 1
    except KeyboardInterrupt:
        return interrupted()
    print_load_at_end()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
