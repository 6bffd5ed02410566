"""pytest-gold's command-line options and ini keys, as pytest's ``--help`` shows them
(what they mean and how they are checked: :mod:`pytest_gold.settings`)."""

from __future__ import annotations

import pytest

from pytest_gold.policy.scheduling import DEFAULT_TARGET_BATCH_SECONDS
from pytest_gold.settings import (
    DEFAULT_IDLE_STOP_MINUTES,
    DEFAULT_RETRIES,
    DEFAULT_WAIT_SECONDS,
    DEFAULT_WALLTIME_MARGIN_SECONDS,
    DEFAULT_WORKER_ENV,
    MAX_ENGINES_PER_CPU,
    STATUS_LINE_SECONDS,
)

_VALUE_OPTIONS = [
    (
        "--gold-engines",
        "gold_engines",
        "N",
        "number of engines of the embedded cluster (default: the number of usable CPUs).",
    ),
    (
        "--gold-max-engines",
        "gold_max_engines",
        "N",
        "the most engines --gold-engines may start in an embedded cluster (default "
        f"{MAX_ENGINES_PER_CPU} per usable CPU): a guard against a typo starting thousands of "
        "processes. Raise it for cases that mostly wait (for I/O, a licence, a device).",
    ),
    (
        "--gold-profile",
        "gold_profile",
        "NAME",
        "run on the cluster of this ipyparallel profile instead of an embedded one: attach "
        "to it when it is running, else start it from the profile's configuration (and "
        "stop it at the end unless --gold-keep-cluster).",
    ),
    (
        "--gold-cluster-id",
        "gold_cluster_id",
        "ID",
        "with --gold-profile: which of the profile's clusters to attach to.",
    ),
    (
        "--gold-connection-file",
        "gold_connection_file",
        "FILE",
        "attach through this ipcontroller-client.json file of a running cluster.",
    ),
    (
        "--gold-wait",
        "gold_wait",
        "SECONDS",
        f"seconds to wait for a cluster to start or answer (default {DEFAULT_WAIT_SECONDS:.0f}).",
    ),
    (
        "--gold-min-engines",
        "gold_min_engines",
        "N",
        "engines that must have registered (and passed the engine check) before the first "
        "case is dispatched; the run fails after --gold-wait seconds with fewer "
        "(default 1). Engines that register later join the run.",
    ),
    (
        "--gold-max-jobs",
        "gold_max_jobs",
        "N",
        "with a Slurm profile: the most jobs of the run's engines queued or running at once; "
        "while work remains, jobs that ended are replaced up to this many (default: the "
        "profile's --jobs).",
    ),
    (
        "--gold-timeout",
        "gold_timeout",
        "SECONDS",
        "run-time limit in seconds of every case; a case over it is stopped and reported "
        "with the stacks of its threads (default: no limit; per case: "
        "@pytest.mark.gold(timeout=SECONDS)).",
    ),
    (
        "--gold-retries",
        "gold_retries",
        "N",
        "how often a case lost with its engine (the engine died) is sent to another "
        f"engine before it is reported as failed (default {DEFAULT_RETRIES}).",
    ),
    (
        "--gold-walltime-margin",
        "gold_walltime_margin",
        "SECONDS",
        "engines that are Slurm jobs get only cases that finish before their job's time "
        "limit: the case's expected duration plus a tenth plus this many seconds (default "
        f"{DEFAULT_WALLTIME_MARGIN_SECONDS:.0f}).",
    ),
    (
        "--gold-order",
        "gold_order",
        "ORDER",
        "order of dispatch: 'duration' (default: cases never run first, then longest first "
        "by their last recorded duration) or 'collection'.",
    ),
    (
        "--gold-status-file",
        "gold_status_file",
        "FILE",
        "keep a small JSON file at this path up to date with the run's progress (cases "
        "done, passed, failed, running, engines, elapsed, ETA, per host).",
    ),
    (
        "--gold-status-interval",
        "gold_status_interval",
        "SECONDS",
        "seconds between progress lines on the terminal during a run (default "
        f"{STATUS_LINE_SECONDS:g}).",
    ),
    (
        "--gold-status-line",
        "gold_status_line",
        "MODE",
        "how progress shows on the terminal: 'auto' (default: one status line refreshed "
        "in place when the output is a terminal, else a line every --gold-status-interval "
        "seconds), 'inplace' or 'lines'.",
    ),
    (
        "--gold-log",
        "gold_log",
        "MODE",
        "what the terminal shows per case during a --gold run: 'pytest' (default: pytest's "
        "own progress dots or -v lines) or 'compact' (no line per case: the status every "
        "--gold-status-interval seconds, also with -q, a line per failure as it comes in, "
        "and failures grouped by kind at the end; for long campaigns).",
    ),
    (
        "--gold-idle-stop",
        "gold_idle_stop",
        "MINUTES",
        "minutes without a run after which an embedded cluster kept with "
        f"--gold-keep-cluster stops itself (default {DEFAULT_IDLE_STOP_MINUTES:g}; fractions "
        "allowed).",
    ),
    (
        "--gold-batch-seconds",
        "gold_batch_seconds",
        "SECONDS",
        "work, in seconds, that one task carries when cases are short "
        f"(default {DEFAULT_TARGET_BATCH_SECONDS}).",
    ),
    (
        "--gold-leftovers",
        "gold_leftovers",
        "MODE",
        "what becomes of processes that cases start and leave running: 'end' (default: "
        "the engine ends them when the worker's run ends, and the run says so) or 'keep' "
        "(leave them running, e.g. a daemon a later job needs).",
    ),
]


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gold", "run cases on an ipyparallel cluster (pytest-gold)")
    group.addoption(
        "--gold",
        action="store_true",
        default=False,
        help="run every selected case on the engines of an ipyparallel cluster.",
    )
    for option, ini, metavar, text in _VALUE_OPTIONS:
        group.addoption(option, dest=ini, default=None, metavar=metavar, help=text)
        parser.addini(ini, f"default for {option}: {text}", default=None)
    group.addoption(
        "--gold-keep-cluster",
        dest="gold_keep_cluster",
        action="store_true",
        default=False,
        help="leave the cluster this run starts running for the next runs: the embedded "
        "cluster (kept per project until --gold-idle-stop minutes without a run, or "
        "'python -m pytest_gold cluster stop'; the next 'pytest --gold' attaches to it), or "
        "with --gold-profile the profile's cluster (the run prints how to stop it).",
    )
    group.addoption(
        "--gold-fork-engines",
        dest="gold_fork_engines",
        action="store_true",
        default=False,
        help="fork the embedded cluster's engines from one process that imported "
        "ipyparallel once (less CPU time at start; see 'How it works').",
    )
    group.addoption(
        "--gold-resume",
        dest="gold_resume",
        action="store_true",
        default=False,
        help="run only the selected cases that did not pass in the previous run(s) (failed, "
        "errored, interrupted or never reached); report the others as passed-before.",
    )
    group.addoption(
        "--gold-results",
        dest="gold_results",
        default=None,
        metavar="PATH",
        help="write one row per case to PATH as cases finish: .csv, .jsonl, or .parquet "
        "(needs pyarrow). Works with and without --gold. An existing PATH is refused unless "
        "--gold-resume (carry its rows forward) or --gold-results-overwrite.",
    )
    group.addoption(
        "--gold-results-overwrite",
        dest="gold_results_overwrite",
        action="store_true",
        default=False,
        help="let --gold-results replace a results table that exists already.",
    )
    group.addoption(
        "--gold-env",
        dest="gold_env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the worker processes (repeatable; adds to ini "
        "gold_env). Thread-count variables default to 1: "
        + ", ".join(f"{key}={value}" for key, value in DEFAULT_WORKER_ENV.items())
        + ".",
    )
    parser.addini(
        "gold_env",
        "KEY=VALUE lines: environment variables for the worker processes.",
        type="linelist",
        default=[],
    )
