"""End-to-end: --gold-results=sweep.zarr / .nc, with and without --gold."""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from .inner import InnerPytest

# Tests that need a cluster are marked one by one: the others run in the fast lane.

SWEEP = """
    import numpy as np
    import pytest

    HEIGHTS = np.arange(5) * 1000.0


    @pytest.fixture
    def profile(request):
        return {"tropical": 300.0, "arctic": 250.0}[request.param]


    @pytest.fixture(params=["fast", "exact"])
    def solver(request):
        return request.param


    @pytest.mark.parametrize("profile", ["tropical", "arctic"], indirect=True)
    @pytest.mark.parametrize(
        "surface", ["ocean", pytest.param("snow", marks=pytest.mark.skip(reason="no snow model"))]
    )
    @pytest.mark.parametrize("channel", [23.8, 89.0, 183.3])
    def test_bt(channel, surface, profile, solver, gold_record):
        gold_record["tb"] = profile - channel / 10
        gold_record["wf"] = (np.arange(5, dtype=np.float32) + channel) / 100
        gold_record.dims["wf"] = ("layer",)
        gold_record.coords["layer"] = HEIGHTS
        gold_record.attrs["tb"] = {"units": "K"}
        gold_record.attrs["layer"] = {"units": "m"}
        if channel == 183.3 and profile == 250.0 and solver == "fast":
            pytest.xfail("known bias")
        assert not (channel == 89.0 and profile == 300.0 and solver == "exact"), "too warm"


    @pytest.mark.parametrize("cfg", [{"a": 1}, {"a": 2}])
    def test_config(cfg, gold_record):
        gold_record["a"] = cfg["a"]


    def test_plain(gold_record):
        gold_record["x"] = 1
"""
#: A combination left out: its cell must read as missing, not as 0.
DESELECTED = "test_sweep.py::test_bt[fast-23.8-ocean-tropical]"
#: Per-cell variables that say where and when a case ran, not what it computed.
PLACEMENT = ["host", "engine", "duration", "run_id"]


def _groups(path: Path) -> dict[str, xr.Dataset]:
    if path.suffix == ".nc":
        tree = xr.open_datatree(path)
    else:
        tree = xr.open_datatree(path, engine="zarr")
    with tree:
        return {name: node.to_dataset().load() for name, node in tree.children.items()}


def _run_sweep(pytester: pytest.Pytester, path: str, *args: str) -> pytest.RunResult:
    result = pytester.runpytest(
        *args, "-p", "no:cacheprovider", f"--gold-results={path}", f"--deselect={DESELECTED}"
    )
    result.assert_outcomes(passed=12, failed=1, skipped=12, xfailed=1, deselected=1)
    assert "warnings summary" not in result.stdout.str()  # the writer adds none
    return result


@pytest.mark.cluster
def test_a_sweep_becomes_a_dataset_the_same_with_and_without_gold(
    pytester: pytest.Pytester, gold_args
):
    pytester.makepyfile(test_sweep=SWEEP)
    _run_sweep(pytester, "plain.zarr")
    _run_sweep(pytester, "gold.zarr", *gold_args)
    plain, gold = _groups(pytester.path / "plain.zarr"), _groups(pytester.path / "gold.zarr")
    assert set(plain) == set(gold) == {"test_bt", "test_config", "test_plain"}
    for name in plain:  # the same cells, whoever ran them
        xr.testing.assert_equal(plain[name].drop_vars(PLACEMENT), gold[name].drop_vars(PLACEMENT))
        assert plain[name].attrs["pytest_function"] == gold[name].attrs["pytest_function"]

    bt = plain["test_bt"]
    # One dimension per argument: stacked parametrize, indirect, parametrized fixture.
    assert bt.outcome.dims == ("solver", "channel", "surface", "profile")
    assert bt.channel.values.tolist() == [23.8, 89.0, 183.3]
    assert bt.profile.values.tolist() == ["tropical", "arctic"]  # collection order
    cell = bt.sel(solver="exact", channel=183.3, surface="ocean", profile="arctic")
    assert cell.outcome == "passed" and cell.tb == pytest.approx(250.0 - 18.33)
    assert cell.wf.dtype == np.float32 and cell.wf.dims == ("layer",)
    np.testing.assert_allclose(cell.wf, (np.arange(5, dtype=np.float32) + 183.3) / 100)
    assert bt.layer.values.tolist() == [0.0, 1000.0, 2000.0, 3000.0, 4000.0]
    assert bt.tb.attrs["units"] == "K" and bt.layer.attrs["units"] == "m"
    failed = bt.sel(solver="exact", channel=89.0, surface="ocean", profile="tropical")
    assert failed.outcome == "failed" and failed.message == "AssertionError: too warm"
    assert np.isfinite(failed.tb)  # recorded before the assert
    xfailed = bt.sel(solver="fast", channel=183.3, surface="ocean", profile="arctic")
    assert xfailed.outcome == "xfailed" and xfailed.message == "xfail: known bias"
    skipped = bt.sel(solver="fast", channel=23.8, surface="snow", profile="arctic")
    assert skipped.outcome == "skipped" and skipped.message == "no snow model"
    assert np.isnan(skipped.tb) and np.isnan(skipped.wf).all()
    missing = bt.sel(solver="fast", channel=23.8, surface="ocean", profile="tropical")
    assert missing.outcome == "" and np.isnan(missing.tb) and np.isnan(missing.duration)
    assert missing.nodeid == ""
    assert (bt.nodeid.sel(solver="exact", channel=23.8, surface="ocean", profile="tropical")
            == "test_sweep.py::test_bt[exact-23.8-ocean-tropical]")  # fmt: skip
    # The recipe of docs/dataset.rst.
    with xr.open_zarr(pytester.path / "gold.zarr", group="test_bt") as ds:
        ok = ds.where(ds.outcome == "passed")
        tb = ok.tb.sel(channel=89.0).load()
    assert tb.dims == ("solver", "surface", "profile")
    assert np.isnan(tb.sel(solver="exact", surface="ocean", profile="tropical"))  # failed
    assert tb.sel(solver="exact", surface="ocean", profile="arctic") == pytest.approx(241.1)
    # Unhashable parameters: pytest's ids; a plain test: a 0-d group.
    assert plain["test_config"].cfg.values.tolist() == ["cfg0", "cfg1"]
    assert plain["test_config"].a.values.tolist() == [1, 2]
    assert plain["test_plain"].outcome.dims == () and plain["test_plain"].x == 1
    # Where they ran: only --gold knows.
    assert set(gold["test_plain"].host.values.ravel()) - {""} and gold["test_plain"].engine >= 0
    assert plain["test_plain"].host == "" and np.isnan(plain["test_plain"].engine)


def test_netcdf_holds_the_same_dataset(pytester: pytest.Pytester):
    pytester.makepyfile(test_sweep=SWEEP)
    _run_sweep(pytester, "sweep.zarr")
    result = _run_sweep(pytester, "out/sweep.nc")
    result.stdout.fnmatch_lines(["gold: dataset out/sweep.nc: 26 cells written in 3 groups*"])
    assert not (pytester.path / "out" / "sweep.nc.partial.zarr").exists()
    zarr_groups, nc_groups = (
        _groups(pytester.path / "sweep.zarr"),
        _groups(pytester.path / "out" / "sweep.nc"),
    )
    for name, dataset in zarr_groups.items():
        xr.testing.assert_equal(dataset.drop_vars(PLACEMENT), nc_groups[name].drop_vars(PLACEMENT))
        assert nc_groups[name].attrs["pytest_function"] == dataset.attrs["pytest_function"]


def test_without_the_extra_a_dataset_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, "xarray", None)  # as if it were not installed
    pytester.makepyfile(test_sweep=SWEEP)
    result = pytester.runpytest("--gold-results=sweep.zarr")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --gold-results sweep.zarr: writing a .zarr dataset needs the optional "
            "packages of pytest-gold[[]xarray[]] (xarray cannot be imported here): pip install "
            "'pytest-gold[[]xarray[]]'.*"
        ]
    )
    table = pytester.runpytest("-p", "no:cacheprovider", "--gold-results=sweep.csv")
    table.assert_outcomes(passed=13, failed=1, skipped=12, xfailed=1)
    assert (pytester.path / "sweep.csv").read_text().count("\n") == 1 + 27


BAD_INPUT = """
    import numpy as np
    import pytest

    @pytest.mark.parametrize("i", range(4))
    def test_case(i, gold_record):
        gold_record["spectrum"] = np.zeros(12 if i == 2 else 13)
        gold_record["kind"] = "warm" if i == 3 else 1.5
        if i == 1:
            gold_record["i"] = 5
            gold_record["outcome"] = "mine"
            gold_record["table"] = {"a": 1}
        gold_record["good"] = float(i)
"""


@pytest.mark.cluster
@pytest.mark.parametrize("with_gold", [False, True], ids=["plain", "gold"])
def test_bad_records_are_named_and_lose_nothing_else(
    pytester: pytest.Pytester, gold_args, with_gold: bool
):
    args = gold_args if with_gold else []
    pytester.makepyfile(test_bad=BAD_INPUT)
    result = pytester.runpytest(*args, "-p", "no:cacheprovider", "--gold-results=bad.zarr")
    result.assert_outcomes(passed=4)  # the cases are reported as they are
    dataset = _groups(pytester.path / "bad.zarr")["test_case"]
    assert dataset.good.values.tolist() == [0.0, 1.0, 2.0, 3.0]  # no other cell lost
    assert dataset.outcome.values[[0, 2, 3]].tolist() == ["passed"] * 3
    errors = dataset.record_error.values.tolist()
    assert errors[0] == ""
    assert "gold_record['spectrum']: its shape is (12,) here, but (13,) in" in errors[2]
    assert np.isnan(dataset.spectrum.values[2]).all() and not np.isnan(dataset.spectrum[3]).any()
    assert "gold_record['kind']: it is str here, but the variable is float64" in errors[3]
    assert "gold_record['i']: the name is a parametrize argument" in errors[1]
    assert "gold_record['outcome']: the name is reserved" in errors[1]
    assert "gold_record['table']: a dict cannot be a variable" in errors[1]
    assert dataset.outcome.values[1] == "passed" and "table" not in dataset
    result.stdout.fnmatch_lines(
        [
            "gold: dataset: test_bad.py::test_case[[]2[]]: gold_record[[]'spectrum'[]]: its shape*",
            "gold: dataset: test_bad.py::test_case[[]3[]]: gold_record[[]'kind'[]]: it is str*",
        ]
    )


def test_an_existing_store_is_refused_unless_resumed_or_overwritten(pytester: pytest.Pytester):
    pytester.makepyfile(test_sweep=SWEEP)
    args = ["-p", "no:cacheprovider", "--gold-results=sweep.zarr", "-k", "test_plain"]
    pytester.runpytest(*args).assert_outcomes(passed=1, deselected=26)
    refused = pytester.runpytest(*args)
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(
        ["ERROR: --gold-results sweep.zarr: sweep.zarr exists. --gold-resume fills in its "
         "missing cells, --gold-results-overwrite replaces it; or give another path."]
    )  # fmt: skip
    pytester.runpytest(*args, "--gold-results-overwrite").assert_outcomes(passed=1, deselected=26)
    (pytester.path / "test_sweep.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('n', [1])\ndef test_plain(n):\n    pass\n"
    )
    other = pytester.runpytest(*args, "--gold-resume")
    assert other.ret == pytest.ExitCode.USAGE_ERROR
    other.stderr.fnmatch_lines(
        ["*the store was written by another sweep: group 'test_plain' (test_sweep.py::test_plain):"
         " its dimensions are () in the store but (n) in this run*"]
    )  # fmt: skip


READABLE = """
    import pytest
    import xarray as xr

    @pytest.mark.parametrize("i", range(5))
    def test_case(i, gold_record):
        gold_record["v"] = float(i)
        with xr.open_zarr("live.zarr", group="test_case") as dataset:
            written = int((dataset.outcome != "").sum())
            values = dataset.v.values.tolist() if "v" in dataset else []
        {check}
"""


@pytest.mark.cluster
def test_the_store_is_readable_while_the_run_goes_on(pytester: pytest.Pytester, gold_args):
    # Without --gold and interval 0 each case is written before the next starts.
    pytester.makepyfile(test_live=READABLE.format(check="assert written == i, written"))
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--gold-results=live.zarr", "--gold-results-interval=0"
    )
    result.assert_outcomes(passed=5)
    # With --gold, cases on the engines open it while the controller writes.
    shutil.rmtree(pytester.path / "live.zarr")
    pytester.makepyfile(test_live=READABLE.format(check="assert 0 <= written <= 5"))
    result = pytester.runpytest(
        *gold_args, "-p", "no:cacheprovider", "--gold-results=live.zarr",
        "--gold-results-interval=0.01",
    )  # fmt: skip
    result.assert_outcomes(passed=5)


KILLED = """
    import os
    from pathlib import Path


    def pytest_configure(config):
        if not hasattr(config, "workerinput"):  # the controller
            Path("controller.pid").write_text(str(os.getpid()))
"""

CASES = """
    import os
    import signal
    from pathlib import Path

    import numpy as np
    import pytest


    @pytest.mark.parametrize("i", range(8))
    def test_case(i, gold_record):
        with open(f"ran-{i}", "a") as f:
            f.write("x")
        gold_record["value"] = np.float32(i) / 3
        if i == 5 and Path("kill-me").exists():
            os.kill(int(Path("controller.pid").read_text()), signal.SIGKILL)
        assert i != 6
"""


@pytest.mark.cluster
def test_a_killed_run_resumes_into_exactly_the_missing_cells(
    pytester: pytest.Pytester, gold_args, leak_check
):
    pytester.makeconftest(KILLED)
    pytester.makepyfile(test_cases=CASES)
    (pytester.path / "kill-me").touch()
    with InnerPytest(
        pytester.path, "--gold", "--gold-engines=1", "--gold-results=s.zarr",
        "--gold-results-interval=0", "-p", "no:randomly",
    ) as run:  # fmt: skip
        returncode = run.finish(timeout=300)
    assert returncode == -signal.SIGKILL, run.output
    killed = _groups(pytester.path / "s.zarr")["test_case"]  # readable after the kill
    present = [i for i, outcome in enumerate(killed.outcome.values.tolist()) if outcome]
    assert set(present) <= {0, 1, 2, 3, 4}, present
    (pytester.path / "kill-me").unlink()

    resumed = pytester.runpytest(*gold_args, "--gold-resume", "--gold-results=s.zarr")
    done = [i for i in present if i != 6]
    summary = f"1 failed, {7 - len(done)} passed" + (f", {len(done)} passed-before" if done else "")
    resumed.stdout.fnmatch_lines([f"*= {summary} in *"])
    # Cases 0-4 ran before the kill: those in the store ran once, the others again.
    runs = {i: (pytester.path / f"ran-{i}").read_text() for i in range(5)}
    assert runs == {i: "x" if i in done else "xx" for i in range(5)}

    plain = pytester.runpytest("-p", "no:cacheprovider", "--gold-results=plain.zarr")
    plain.assert_outcomes(passed=7, failed=1)
    final = _groups(pytester.path / "s.zarr")["test_case"]
    reference = _groups(pytester.path / "plain.zarr")["test_case"]
    xr.testing.assert_equal(final.drop_vars(PLACEMENT), reference.drop_vars(PLACEMENT))


def test_results_show_counts_outcomes_along_each_dimension(pytester: pytest.Pytester):
    pytester.makepyfile(test_sweep=SWEEP)
    _run_sweep(pytester, "sweep.zarr")
    shown = pytester.run(
        sys.executable, "-m", "pytest_gold", "results", "show", "sweep.zarr", "--failed"
    )
    assert shown.ret == 0, shown.stderr.str()
    shown.stdout.fnmatch_lines(
        [
            "test_bt  (test_sweep.py::test_bt)",
            "  dimensions: solver 2, channel 3, surface 2, profile 2, layer 5",
            "    tb (solver, channel, surface, profile) float64 [[]K[]]",
            "    wf (solver, channel, surface, profile, layer) float32",
            "  cells: 24 (9 passed, 1 failed, 12 skipped, 1 xfailed, 1 (missing))",
            "  outcome by channel  passed  failed  skipped  xfailed  (missing)",
            "  23.8                     3       0        4        0          1",
            "  89.0                     3       1        4        0          0",
            "  failed cells: 1",
            "    solver=exact channel=89.0 surface=ocean profile=tropical: failed: "
            "AssertionError: too warm",
            "test_plain  (test_sweep.py::test_plain)",
            "  dimensions: none (one cell)",
        ]
    )
    bad = pytester.run(sys.executable, "-m", "pytest_gold", "results", "show", "nothing.zarr")
    assert bad.ret == 2
    bad.stderr.fnmatch_lines(["python -m pytest_gold results show: nothing.zarr does not exist"])


@pytest.mark.cluster
def test_example_sims_write_their_dataset(pytester: pytest.Pytester, gold_args):
    """The example radiative transfer sweep records its brightness temperatures and
    weighting functions into example.zarr (no hook of its own)."""
    source = Path(__file__).resolve().parent.parent / "example_sims"
    shutil.copytree(source, pytester.path / "example_sims")
    result = pytester.runpytest(
        *gold_args, "-p", "no:cacheprovider", "example_sims",
        "--gold-results=example.zarr", "-k", "toa_brightness",
    )  # fmt: skip
    result.assert_outcomes(passed=54)
    with xr.open_zarr(
        pytester.path / "example.zarr", group="test_toa_brightness_temperature"
    ) as ds:
        assert dict(ds.sizes) == {"channel": 6, "profile": 3, "surface": 3, "layer": 40}
        assert (ds.outcome == "passed").all()
        assert np.isfinite(ds.tb_k).all() and ds.tb_k.attrs["units"] == "K"
        weights = ds.layer_weights.sel(channel="ch183.3", profile="tropical", surface="ocean")
        assert weights.dims == ("layer",) and float(weights.sum()) <= 1.0
        assert ds.layer.values[0] == pytest.approx(0.5) and ds.layer.attrs["units"] == "km"
