"""``--gold-report`` and ``--gold-report-interval``: parsed and checked before a run starts."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_gold.report import REPORT_EXTRA, missing_dependency
from pytest_gold.report.campaignlog import log_path_beside
from pytest_gold.settings import number_option, option_value

#: Default seconds between rewrites of the report during a run.
DEFAULT_REPORT_INTERVAL = 30.0

_REPORT_HELP = (
    "keep a self-contained HTML report of the campaign at PATH: timeline per engine, "
    "utilisation, durations, failures, the parameter grid. Rewritten every "
    "--gold-report-interval seconds during the run and once at the end (needs the "
    f"optional extra {REPORT_EXTRA})."
)
_INTERVAL_HELP = (
    "seconds between rewrites of the --gold-report file during a run (default "
    f"{DEFAULT_REPORT_INTERVAL:g})."
)


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gold")
    group.addoption(
        "--gold-report", dest="gold_report", default=None, metavar="PATH", help=_REPORT_HELP
    )
    parser.addini("gold_report", f"default for --gold-report: {_REPORT_HELP}", default=None)
    group.addoption(
        "--gold-report-interval",
        dest="gold_report_interval",
        default=None,
        metavar="SECONDS",
        help=_INTERVAL_HELP,
    )
    parser.addini(
        "gold_report_interval",
        f"default for --gold-report-interval: {_INTERVAL_HELP}",
        default=None,
    )


@dataclass(frozen=True)
class ReportSettings:
    #: The HTML report (None: only the campaign log, for a status file).
    report: Path | None
    #: The campaign log the report is drawn from.
    log: Path
    interval: float


def _interval(config: pytest.Config) -> float:
    return number_option(
        config, "gold_report_interval", "--gold-report-interval", DEFAULT_REPORT_INTERVAL
    )


def check_writable(path: Path, option: str) -> None:
    """A usage error unless a file can be written at ``path`` (by a rename, as it will be)."""
    if path.is_dir():
        raise pytest.UsageError(f"{option} {path} is a directory; give a file name instead.")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise pytest.UsageError(
                f"{option} {path}: cannot write there, {parent} is a file, not a directory."
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise pytest.UsageError(
            f"{option} {path}: cannot write there ({error.strerror or error}). Give a path "
            "in a directory you can write to."
        ) from None


def from_config(config: pytest.Config, status_file: str | None) -> ReportSettings | None:
    """What to record for a --gold run: a report, and the campaign log it is drawn from
    (also kept beside a --gold-status-file, so a report can be made after the run)."""
    raw = option_value(config, "gold_report")
    interval = _interval(config)
    base = config.invocation_params.dir
    report = (base / Path(raw).expanduser()).resolve() if raw else None
    if report is not None:
        problem = missing_dependency()
        if problem is not None:
            raise pytest.UsageError(f"--gold-report: {problem}.")
        check_writable(report, "--gold-report")
    status = (base / Path(status_file).expanduser()).resolve() if status_file else None
    if status is not None:
        check_writable(status, "--gold-status-file")
    beside = status if status is not None else report
    if beside is None:
        return None
    log = log_path_beside(beside)
    results = config.getoption("gold_results")
    if results and (base / Path(results).expanduser()).resolve() == log:
        raise pytest.UsageError(
            f"--gold-results {results} is where the campaign log of the run is kept "
            f"(beside {beside.name}); give the results table another name."
        )
    return ReportSettings(report=report, log=log, interval=interval)
