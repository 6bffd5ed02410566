"""pytest-gold's settings: its options and ini keys (declared in :mod:`pytest_gold.options`),
parsed and checked in one place."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import pytest

import pytest_gold.conflicts as conflicts
from pytest_gold.policy.scheduling import DEFAULT_TARGET_BATCH_SECONDS, ORDER_DURATION, ORDERS

#: Set in every worker unless the engine's environment or gold_env sets them: one
#: thread per case, or N engines on N cores run N x cores threads.
DEFAULT_WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
# The choices of options that the controller's modules act on are defined here, where the
# options are parsed (the controller imports settings, never the other way round).
#: --gold-log values: pytest's own output per case (default), or compact.
LOG_PYTEST = "pytest"
LOG_COMPACT = "compact"
LOG_MODES = (LOG_PYTEST, LOG_COMPACT)
#: --gold-status-line: in place on a terminal, else lines (auto); always one of the two.
STATUS_AUTO = "auto"
STATUS_IN_PLACE = "inplace"
STATUS_LINES = "lines"
STATUS_MODES = (STATUS_AUTO, STATUS_IN_PLACE, STATUS_LINES)
#: Default seconds between status lines on the terminal (--gold-status-interval).
STATUS_LINE_SECONDS = 30.0
#: Default number of resubmissions of a case whose engine died.
DEFAULT_RETRIES = 1
#: --gold-walltime-margin: seconds a case needs before its Slurm job ends beyond its
#: expected duration (see pytest_gold.policy.walltime.Margin).
DEFAULT_WALLTIME_MARGIN_SECONDS = 60.0
#: Default time to wait for a cluster's engines, in seconds.
DEFAULT_WAIT_SECONDS = 60.0
#: What becomes of processes that cases leave running (--gold-leftovers).
LEFTOVERS_END = "end"
LEFTOVERS_KEEP = "keep"
LEFTOVERS_MODES = (LEFTOVERS_END, LEFTOVERS_KEEP)
#: Default limit of an embedded cluster's engines, per usable CPU: each engine is a process
#: with a worker process of its own; beyond this, a mistyped --gold-engines is more likely
#: than cases that mostly wait.
MAX_ENGINES_PER_CPU = 8
#: Minutes without a run after which a kept embedded cluster stops itself.
DEFAULT_IDLE_STOP_MINUTES = 15.0
SECONDS_PER_MINUTE = 60.0


# (option, ini key, metavar, help). Every option has an ini key so a project can pin it. The
# metavar names the kind of value, as docs/options.rst does.
def default_max_engines() -> int:
    return MAX_ENGINES_PER_CPU * usable_cpus()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class GoldSettings:
    engines: int
    profile: str | None
    cluster_id: str | None
    connection_file: str | None
    wait_seconds: float
    batch_seconds: float
    min_engines: int = 1
    #: --gold-max-jobs (None: the Slurm profile's job count).
    max_jobs: int | None = None
    keep_cluster: bool = False
    #: --gold-fork-engines: the embedded cluster's engines are forked from one zygote.
    fork_engines: bool = False
    #: --gold-engines (or gold_engines) was given: a kept cluster must have that many.
    engines_given: bool = False
    idle_stop_seconds: float = DEFAULT_IDLE_STOP_MINUTES * SECONDS_PER_MINUTE
    retries: int = DEFAULT_RETRIES
    timeout_seconds: float | None = None
    walltime_margin_seconds: float = DEFAULT_WALLTIME_MARGIN_SECONDS
    order: str = ORDER_DURATION
    status_file: str | None = None
    status_interval: float = STATUS_LINE_SECONDS
    status_line: str = STATUS_AUTO
    leftovers: str = LEFTOVERS_END
    log: str = LOG_PYTEST
    #: Environment for the worker processes given by the user (gold_env, --gold-env).
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        if self.connection_file:
            return f"attach through {self.connection_file}"
        if self.profile:
            cluster = f", cluster id {self.cluster_id!r}" if self.cluster_id else ""
            return f"the cluster of profile {self.profile!r}{cluster}"
        plural = "s" if self.engines != 1 else ""
        kept = ", kept (--gold-keep-cluster)" if self.keep_cluster else ""
        return f"embedded cluster, {self.engines} engine{plural} on 127.0.0.1{kept}"


def option_value(config: pytest.Config, ini: str) -> str | None:
    """The ``--gold-*`` option's value, else the ini value of the same name; None if blank."""
    value = config.getoption(ini)
    if value is None:
        value = config.getini(ini)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value).strip()


def number_option(
    config: pytest.Config,
    ini: str,
    option: str,
    default: float,
    *,
    zero_allowed: bool = False,
    unit: str = "seconds",
) -> float:
    """A number option (``--gold-X``, else its ini value), ``default`` when neither is
    given; a usage error for what is not a finite number above zero (or 0 or more)."""
    raw = option_value(config, ini)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if zero_allowed else value > 0)):
        kind = f"a number of {unit}, 0 or more" if zero_allowed else f"a positive number of {unit}"
        raise pytest.UsageError(f"{option} (ini {ini}) must be {kind}, not {raw!r}.")
    return value


def _environment(config: pytest.Config) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in [*config.getini("gold_env"), *config.getoption("gold_env")]:
        key, sep, value = entry.partition("=")
        key = key.strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise pytest.UsageError(
                f"--gold-env / gold_env entries are KEY=VALUE, not {entry!r} "
                "(e.g. --gold-env OMP_NUM_THREADS=2)."
            )
        env[key] = value
    return env


def _whole_number(config: pytest.Config, ini: str, option: str, default: int) -> int:
    raw = option_value(config, ini)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise pytest.UsageError(
            f"{option} (ini {ini}) must be a whole number, at least 1, not {raw!r}."
        )
    return int(raw)


def from_config(config: pytest.Config) -> GoldSettings:
    """Read and check every pytest-gold option; bad values are a UsageError saying why."""
    conflicts.check(config)
    raw_engines = option_value(config, "gold_engines")
    max_engines = _whole_number(
        config, "gold_max_engines", "--gold-max-engines", default_max_engines()
    )
    engines = usable_cpus()
    if raw_engines is not None:
        try:
            engines = int(raw_engines)
        except ValueError:
            engines = 0
        if engines < 1 or str(engines) != raw_engines.lstrip("+"):
            raise pytest.UsageError(
                f"--gold-engines (ini gold_engines) must be a whole number of engines, at "
                f"least 1, not {raw_engines!r}. Leave it out to use one engine per usable CPU "
                f"({usable_cpus()} here)."
            )
        if engines > max_engines:
            limit = (
                "--gold-max-engines"
                if option_value(config, "gold_max_engines") is not None
                else f"{MAX_ENGINES_PER_CPU} per usable CPU by default; {usable_cpus()} here"
            )
            raise pytest.UsageError(
                f"--gold-engines {engines} would start {engines} engine processes, each with "
                f"a worker process, on this machine: more than the limit of {max_engines} "
                f"({limit}). Give a smaller number, or raise the limit with "
                "--gold-max-engines (ini gold_max_engines) if the cases mostly wait."
            )
    raw_min = option_value(config, "gold_min_engines")
    min_engines = 1
    if raw_min is not None:
        if not raw_min.isdigit() or int(raw_min) < 1:
            raise pytest.UsageError(
                f"--gold-min-engines (ini gold_min_engines) must be a whole number of "
                f"engines, at least 1, not {raw_min!r}."
            )
        min_engines = int(raw_min)
    if raw_engines is not None and min_engines > engines:
        raise pytest.UsageError(
            f"--gold-min-engines {min_engines} is more than the {engines} engines of the "
            "embedded cluster (--gold-engines); lower one of them."
        )
    raw_retries = option_value(config, "gold_retries")
    retries = DEFAULT_RETRIES
    if raw_retries is not None:
        if not raw_retries.isdigit():
            raise pytest.UsageError(
                f"--gold-retries (ini gold_retries) must be a whole number, 0 or more, not "
                f"{raw_retries!r}."
            )
        retries = int(raw_retries)
    profile = option_value(config, "gold_profile")
    cluster_id = option_value(config, "gold_cluster_id")
    connection_file = option_value(config, "gold_connection_file")
    if connection_file and profile:
        raise pytest.UsageError(
            "--gold-connection-file and --gold-profile both name a cluster to attach to; "
            "give only one of them."
        )
    if cluster_id and not profile:
        raise pytest.UsageError(
            "--gold-cluster-id picks one of a profile's clusters: give --gold-profile too."
        )
    if raw_engines is not None and (profile or connection_file):
        raise pytest.UsageError(
            "--gold-engines sets the size of the embedded cluster; it cannot change a "
            "cluster the run attaches to (--gold-profile / --gold-connection-file). "
            "Leave it out, or start the profile's cluster with the engine count you want."
        )
    keep_cluster = bool(config.getoption("gold_keep_cluster"))
    if keep_cluster and connection_file:
        raise pytest.UsageError(
            "--gold-keep-cluster keeps a cluster the run starts; a run never stops a cluster "
            "it attaches to through --gold-connection-file: leave --gold-keep-cluster out."
        )
    order = option_value(config, "gold_order") or ORDER_DURATION
    if order not in ORDERS:
        raise pytest.UsageError(
            f"--gold-order (ini gold_order) must be one of {', '.join(ORDERS)}, not {order!r}."
        )
    status_line = option_value(config, "gold_status_line") or STATUS_AUTO
    if status_line not in STATUS_MODES:
        raise pytest.UsageError(
            f"--gold-status-line (ini gold_status_line) must be one of "
            f"{', '.join(STATUS_MODES)}, not {status_line!r}."
        )
    leftovers = option_value(config, "gold_leftovers") or LEFTOVERS_END
    if leftovers not in LEFTOVERS_MODES:
        raise pytest.UsageError(
            f"--gold-leftovers (ini gold_leftovers) must be one of "
            f"{', '.join(LEFTOVERS_MODES)}, not {leftovers!r}."
        )
    log = option_value(config, "gold_log") or LOG_PYTEST
    if log not in LOG_MODES:
        raise pytest.UsageError(
            f"--gold-log (ini gold_log) must be one of {', '.join(LOG_MODES)}, not {log!r}."
        )
    return GoldSettings(
        fork_engines=bool(config.getoption("gold_fork_engines")),
        leftovers=leftovers,
        log=log,
        status_line=status_line,
        status_file=option_value(config, "gold_status_file"),
        status_interval=number_option(
            config, "gold_status_interval", "--gold-status-interval", STATUS_LINE_SECONDS
        ),
        order=order,
        env=_environment(config),
        engines=engines,
        profile=profile,
        cluster_id=cluster_id,
        connection_file=connection_file,
        wait_seconds=number_option(config, "gold_wait", "--gold-wait", DEFAULT_WAIT_SECONDS),
        batch_seconds=number_option(
            config, "gold_batch_seconds", "--gold-batch-seconds", DEFAULT_TARGET_BATCH_SECONDS
        ),
        retries=retries,
        min_engines=min_engines,
        max_jobs=(
            _whole_number(config, "gold_max_jobs", "--gold-max-jobs", 1)
            if option_value(config, "gold_max_jobs") is not None
            else None
        ),
        keep_cluster=keep_cluster,
        engines_given=raw_engines is not None,
        idle_stop_seconds=SECONDS_PER_MINUTE
        * number_option(
            config,
            "gold_idle_stop",
            "--gold-idle-stop",
            DEFAULT_IDLE_STOP_MINUTES,
            unit="minutes (fractions allowed, e.g. 0.5)",
        ),
        timeout_seconds=(
            number_option(config, "gold_timeout", "--gold-timeout", math.inf)
            if option_value(config, "gold_timeout") is not None
            else None
        ),
        walltime_margin_seconds=number_option(
            config,
            "gold_walltime_margin",
            "--gold-walltime-margin",
            DEFAULT_WALLTIME_MARGIN_SECONDS,
            zero_allowed=True,
        ),
    )


def time_limits(items: list[pytest.Item], default: float | None) -> dict[str, float]:
    """Each case's run-time limit: its ``gold(timeout=...)`` marker, else the default."""
    limits: dict[str, float] = {}
    for item in items:
        marker = item.get_closest_marker("gold")
        limit = marker.kwargs.get("timeout", default) if marker is not None else default
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.gold(timeout=...) must be a positive number "
                f"of seconds, not {limit!r}."
            )
        limits[item.nodeid] = float(limit)
    return limits
