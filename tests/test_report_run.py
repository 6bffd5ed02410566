"""End-to-end: --gold-report in real runs (bad input, failing rewrites, lost engines) and
``python -m pytest_gold report`` after the fact, also for a run that was killed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_gold.cli.main import main
from tests.inner import CLUSTER_UP, InnerPytest
from tests.reportdata import campaign_records, write_log

#: How long a test waits for a run to get somewhere.
WAIT_SECONDS = 120


def records_of(path: Path, event: str) -> list[dict]:
    if not path.is_file():
        return []
    lines = path.read_text().splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("\n") and f'"{event}"' in line]


# -- bad input, before anything starts -------------------------------------------------


@pytest.mark.parametrize(
    "option, message",
    [
        ("--gold-report=afile/x.html", "*--gold-report *x.html: cannot write there, *afile is a*"),
        ("--gold-report=adir", "*--gold-report *adir is a directory; give a file name instead.*"),
        ("--gold-status-file=afile/status.json", "*--gold-status-file *: cannot write there*"),
        ("--gold-report-interval=0", "*--gold-report-interval * must be a positive number*"),
    ],
)
def test_bad_report_options_are_usage_errors_before_anything_starts(
    pytester: pytest.Pytester, option: str, message: str
):
    pytester.makepyfile("def test_a(): pass")
    (pytester.path / "afile").write_text("a file, not a directory")
    (pytester.path / "adir").mkdir()
    # In-process: a cluster started before the error would fail this test.
    result = pytester.runpytest("--gold", "--gold-report=campaign.html", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "embedded cluster" not in result.stdout.str()  # no cluster was started
    assert not (pytester.path / "campaign.html").exists()


def test_report_without_bokeh_is_a_usage_error_naming_the_extra(pytester: pytest.Pytester):
    pytester.makeconftest("import sys\nsys.modules['bokeh'] = None  # as if not installed\n")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest_subprocess("--gold", "--gold-report=campaign.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --gold-report: the campaign report needs Bokeh*"])
    assert "pip install 'pytest-gold[report]'" in result.stderr.str()


def test_report_option_without_gold_is_left_alone(pytester: pytest.Pytester):
    pytester.makepyfile("def test_a(): pass")
    pytester.runpytest("--gold-report=campaign.html").assert_outcomes(passed=1)
    assert not (pytester.path / "campaign.html").exists()


# -- during the run --------------------------------------------------------------------

BREAKS_THE_REPORT = """
import time
from pathlib import Path

def pytest_gold_case_finished(config, nodeid):
    if not nodeid.endswith("test_breaks_the_report"):
        return
    report = Path(config.getoption("gold_report"))
    report.unlink(missing_ok=True)
    report.mkdir()  # from now on the report cannot be replaced
    redrawer = config.pluginmanager.get_plugin("gold-report").redrawer
    deadline = time.monotonic() + 120
    while redrawer.problem is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redrawer.problem is not None
"""


@pytest.mark.cluster
def test_failing_rewrite_is_one_warning_line_and_the_run_goes_on(
    pytester: pytest.Pytester, gold_args: list[str]
):
    pytester.makeconftest(BREAKS_THE_REPORT)
    pytester.makepyfile(
        """
        import time
        from pathlib import Path

        import pytest

        def test_breaks_the_report():
            pass

        @pytest.mark.parametrize("i", range(12))
        def test_after(i):
            # Finish after the report broke (the conftest makes it a directory), so that
            # results still come in while the run goes on; bounded, never a hang.
            deadline = time.monotonic() + 30
            while not Path("campaign.html").is_dir() and time.monotonic() < deadline:
                time.sleep(0.05)
        """
    )
    result = pytester.runpytest_subprocess(
        *gold_args,
        "-p",
        "no:cacheprovider",
        "--gold-report=campaign.html",
        "--gold-report-interval=0.1",
    )
    result.assert_outcomes(passed=13)
    assert result.ret == pytest.ExitCode.OK
    warnings = [line for line in result.outlines if "was not rewritten" in line]
    assert len(warnings) == 1, result.outlines
    assert "cannot write" in warnings[0] and "the run goes on" in warnings[0]
    result.stdout.fnmatch_lines(["gold: warning: the campaign report * could not be written: *"])


@pytest.mark.cluster
def test_lost_engine_reaches_the_hook_the_log_and_the_report(
    pytester: pytest.Pytester, leak_check: str
):
    pytester.makeconftest(
        """
        import json

        def pytest_gold_engine_lost(config, engine, cases):
            with open("lost.jsonl", "a") as out:
                out.write(json.dumps({"tag": engine.tag, "cases": cases}) + "\\n")
        """
    )
    pytester.makepyfile(
        """
        import os
        import signal
        import time

        import pytest

        def test_kills_its_engine():
            os.kill(os.getppid(), signal.SIGKILL)  # the worker's parent is the engine
            time.sleep(30)

        @pytest.mark.parametrize("i", range(4))
        def test_fine(i):
            time.sleep(0.2)
        """
    )
    result = pytester.runpytest_subprocess(
        "--gold",
        "--gold-engines=3",
        "--gold-retries=0",
        "-p",
        "no:cacheprovider",
        "--gold-report=campaign.html",
    )
    result.assert_outcomes(passed=4, failed=1)
    (call,) = [json.loads(line) for line in (pytester.path / "lost.jsonl").read_text().splitlines()]
    assert any(case.endswith("::test_kills_its_engine") for case in call["cases"])
    (lost,) = records_of(pytester.path / "campaign.events.jsonl", "lost")
    assert f"{lost['host']}:e{lost['engine']}" == call["tag"]
    page = (pytester.path / "campaign.html").read_text()
    assert "timeline-lost" in page  # the engine's loss is marked on the timeline
    assert '"kind":"engine lost"' in page  # and the failure is marked as such


# -- after the fact ----------------------------------------------------------------


@pytest.mark.cluster
def test_report_of_a_killed_run_from_its_status_file_and_results(
    pytester: pytest.Pytester, leak_check: str
):
    pytester.makepyfile(
        """
        import time

        def test_quick():
            pass

        def test_hangs():
            time.sleep(600)
        """
    )
    args = [
        "--gold",
        "--gold-engines=2",
        "-p",
        "no:cacheprovider",
        "--gold-order=collection",
        "--gold-status-file=status.json",
        "--gold-results=rt.csv",
    ]
    log = pytester.path / "status.events.jsonl"
    with InnerPytest(pytester.path, *args) as run:
        run.read_until(CLUSTER_UP)
        deadline = time.monotonic() + WAIT_SECONDS
        while not records_of(log, "case") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert records_of(log, "case"), run.output
        run.process.kill()  # SIGKILL: the run ends no record and draws no report
        run.process.wait()
    assert not records_of(log, "end")
    cli = [sys.executable, "-m", "pytest_gold", "report"]
    made = subprocess.run(
        [*cli, "status.json", "-o", "after.html"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert made.returncode == 0, made.stderr
    page = (pytester.path / "after.html").read_text()
    assert 'data-state="unknown"' in page and "without an end" in page
    assert "from_its_status_file_and_results.py::test_quick" in page
    made = subprocess.run(
        [*cli, "rt.csv", "-o", "from-results.html"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert made.returncode == 0, made.stderr
    page = (pytester.path / "from-results.html").read_text()
    assert "Built from a results table" in page and "::test_quick" in page


def test_report_command_checks_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    status = tmp_path / "status.json"
    status.write_text("{}")
    assert main(["report", str(status), "-o", str(tmp_path / "x.html")]) == 2
    assert "no campaign log beside it (status.events.jsonl)" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.csv"), "-o", "x.html"]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("")
    assert main(["report", str(tmp_path / "notes.txt"), "-o", "x.html"]) == 2
    assert "not a status file (.json), campaign log" in capsys.readouterr().err
    (tmp_path / "sweep.zarr").mkdir()
    assert main(["report", str(tmp_path / "sweep.zarr"), "-o", "x.html"]) == 2
    assert "sweep.zarr is a directory (a --gold-results dataset" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_report_command_without_bokeh_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    log = write_log(tmp_path / "run.events.jsonl", campaign_records(10, hosts=1))
    monkeypatch.setitem(sys.modules, "bokeh", None)
    assert main(["report", str(log), "-o", str(tmp_path / "x.html")]) == 2
    assert "pip install 'pytest-gold[report]'" in capsys.readouterr().err


def test_report_command_draws_a_status_files_log_as_running_or_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    write_log(tmp_path / "status.events.jsonl", campaign_records(50, finished=False))
    (tmp_path / "status.json").write_text("{}")
    out = tmp_path / "live.html"
    assert main(["report", str(tmp_path / "status.json"), "-o", str(out), "--refresh", "5"]) == 0
    assert f"wrote {out} (50 cases)" in capsys.readouterr().out
    page = out.read_text()
    assert 'data-state="running" data-refresh="5"' in page and "This campaign is running" in page
    write_log(tmp_path / "done.events.jsonl", campaign_records(50))
    assert main(["report", str(tmp_path / "done.events.jsonl"), "-o", str(out)]) == 0
    page = out.read_text()
    assert '<html lang="en" data-state="finished">' in page  # no data-refresh
