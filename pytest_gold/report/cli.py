"""``python -m pytest_gold report``: draw the campaign report from what a run left.

It takes the run's status file (the campaign log is kept beside it), the campaign log
itself, and/or its results table, so that a report can be made for a run that was killed
or that ran without ``--gold-report``. The controller uses it too, to redraw the report
during a run in a process of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from pytest_gold.report import missing_dependency
from pytest_gold.report.campaignlog import (
    campaign_from_results,
    file_time,
    is_campaign_log,
    log_path_beside,
    read_log,
    read_results,
    write_atomically,
)
from pytest_gold.report.model import Campaign

#: Results table suffixes (--gold-results).
RESULTS_SUFFIXES = (".csv", ".jsonl", ".parquet")
#: How much a redraw during a run steps back for the cases being run.
BACKGROUND_NICENESS = 10


class ReportInputError(Exception):
    """What the command was given cannot make a report; the message says why."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="draw the HTML campaign report of a run from what it left",
        description="Draw the self-contained HTML campaign report of a 'pytest --gold' run "
        "from what it left: its --gold-status-file (the campaign log beside it, "
        "NAME.events.jsonl, holds the run's record), that campaign log itself, and/or its "
        "--gold-results table (which has no times: the timeline is then approximate).",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="STATUS_OR_RESULTS",
        help="the run's status file, campaign log (.events.jsonl) or results table "
        "(.csv, .jsonl, .parquet); a log and a results table can be given together",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="HTML",
        help="the report to write, e.g. campaign.html",
    )
    parser.add_argument(
        "--refresh",
        type=float,
        metavar="SECONDS",
        help="draw it as the report of a running campaign: it says so and reloads itself "
        "every SECONDS (what a run does with --gold-report)",
    )
    # A redraw started by a run: at a lower priority than the cases.
    parser.add_argument("--background", action="store_true", help=argparse.SUPPRESS)


def load(inputs: list[Path]) -> Campaign:
    """The campaign described by the given files (ReportInputError if they cannot)."""
    logs: list[Path] = []
    results: list[Path] = []
    for path in inputs:
        if path.is_dir():
            raise ReportInputError(
                f"{path} is a directory (a --gold-results dataset is not read by the report): "
                "give the run's --gold-status-file, its campaign log (NAME.events.jsonl) or "
                "a .csv, .jsonl or .parquet results table."
            )
        if not path.is_file():
            raise ReportInputError(f"{path}: no such file")
        if is_campaign_log(path):
            logs.append(path)
        elif path.suffix.lower() == ".json":
            log = log_path_beside(path)
            if not log.is_file():
                raise ReportInputError(
                    f"{path} is taken for a status file, but there is no campaign log beside "
                    f"it ({log.name}); it is kept by runs with --gold-status-file or "
                    "--gold-report. Give the run's --gold-results table instead."
                )
            logs.append(log)
        elif path.suffix.lower() in RESULTS_SUFFIXES:
            results.append(path)
        else:
            raise ReportInputError(
                f"{path}: not a status file (.json), campaign log (.events.jsonl) or results "
                f"table ({', '.join(RESULTS_SUFFIXES)})"
            )
    if len(set(logs)) > 1 or len(results) > 1:
        raise ReportInputError("give one run: at most one status file or log, and one table")
    if logs:
        campaign = read_log(logs[0])
        if results and not campaign.results:
            campaign.results = str(results[0].resolve())
        return campaign
    try:
        rows = list(read_results(results[0]))
    except (OSError, ValueError, ImportError) as error:
        raise ReportInputError(f"{results[0]}: cannot read it ({error})") from None
    campaign = campaign_from_results(rows, file_time(results[0]))
    campaign.results = str(results[0].resolve())
    return campaign


def draw(log: Path, output: Path, refresh: float | None = None) -> None:
    """The report of a campaign log, written atomically to ``output``."""
    write(read_log(log), output, refresh)


def write(campaign: Campaign, output: Path, refresh: float | None = None) -> None:
    from pytest_gold.report.page import build_page

    text = build_page(campaign, now=time.time(), refresh_seconds=refresh, report_path=output)
    write_atomically(output, text)


def run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"python -m pytest_gold report: {message}", file=sys.stderr)
        return 2

    if args.background:
        os.nice(BACKGROUND_NICENESS)
    problem = missing_dependency()
    if problem is not None:
        return fail(problem)
    if args.refresh is not None and not args.refresh > 0:
        return fail(f"--refresh must be a positive number of seconds, not {args.refresh:g}")
    try:
        campaign = load(args.inputs)
    except ReportInputError as error:
        return fail(str(error))
    output = args.output.expanduser()
    try:
        write(campaign, output, args.refresh)
    except OSError as error:
        return fail(f"cannot write {output}: {error.strerror or error}")
    if not args.background:
        print(f"wrote {output} ({campaign.done} cases)")
    return 0
