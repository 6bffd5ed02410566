"""ipyparallel profiles whose engines are Slurm jobs: what ``profile create --slurm`` writes.

The profile is ordinary ipyparallel configuration: the controller runs where pytest runs
(a login node), the engines are submitted by ipyparallel's ``SlurmEngineSetLauncher`` with
a batch template of pytest-gold's. ipyparallel submits one batch script per start, so the
``--jobs`` jobs are one job array: each array task is a job of its own for Slurm (it
starts when the queue lets it and ends at its own time limit) and runs its share of the
engines with ``srun``. One ``scancel`` of the array's id cancels them all.

The parsing and rendering here are pure; :class:`SlurmSite` holds the I/O (``sbatch`` on
the PATH, ``sinfo``), injectable for tests.
"""

from __future__ import annotations

import datetime
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from pytest_gold.launch.profiles import BLAS_THREAD_ENV, ProfileError

#: ipyparallel's name for its Slurm engine launcher (``c.Cluster.engine_launcher_class``).
SLURM_LAUNCHER = "slurm"
#: Where each job's output goes (%A: the array's job id, %a: the task), in the profile.
OUTPUT_PATTERN = "{profile_dir}/log/slurm-engines-%A_%a.log"
#: The batch script ipyparallel writes before submitting it: in the profile, not in the
#: directory pytest runs in.
BATCH_FILE = "slurm_engines.sbatch"
#: What each srun task runs: the engine, wrapped (see :mod:`pytest_gold.launch.slurmengine`).
ENGINE_WRAPPER = "pytest_gold.launch.slurmengine"
#: How long a Slurm command may take before the site counts as unreachable.
SLURM_COMMAND_SECONDS = 30
#: pytest's exit code for bad input (a usage error); ``profile create --slurm`` uses it too.
USAGE_EXIT_CODE = 4

# Slurm's time formats (sbatch --time): minutes, minutes:seconds, hours:minutes:seconds,
# days-hours, days-hours:minutes, days-hours:minutes:seconds.
_TIME_FORMATS = (
    (re.compile(r"^(?P<m>\d+)$")),
    (re.compile(r"^(?P<m>\d+):(?P<s>\d+)$")),
    (re.compile(r"^(?P<h>\d+):(?P<m>\d+):(?P<s>\d+)$")),
    (re.compile(r"^(?P<d>\d+)-(?P<h>\d+)$")),
    (re.compile(r"^(?P<d>\d+)-(?P<h>\d+):(?P<m>\d+)$")),
    (re.compile(r"^(?P<d>\d+)-(?P<h>\d+):(?P<m>\d+):(?P<s>\d+)$")),
)
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
#: What sinfo prints as a partition's MaxTime when there is none.
UNLIMITED = ("infinite", "UNLIMITED", "")


class SlurmProfileError(ProfileError):
    """Bad input for a Slurm profile: nothing is written, ``profile create`` exits 4."""

    exit_code = USAGE_EXIT_CODE


def slurm_seconds(text: str) -> int | None:
    """Seconds of a Slurm time limit (``02:00:00``, ``90``, ``1-12``); ``None``: not one."""
    for pattern in _TIME_FORMATS:
        match = pattern.match(text.strip())
        if match:
            return sum(_UNITS[unit] * int(value) for unit, value in match.groupdict().items())
    return None


def format_seconds(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def engines_per_job(engines: int, jobs: int) -> list[int]:
    """How the engines are shared out over the jobs: the first ones take one more."""
    return [(engines + jobs - 1 - task) // jobs for task in range(jobs)]


@dataclass
class SlurmSpec:
    engines: int
    jobs: int
    time_limit: str
    controller_ip: str
    partition: str = ""
    account: str = ""
    qos: str = ""
    slurm_options: list[str] = field(default_factory=list)
    remote_python: str = "python3"
    environment: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """The checks that need no Slurm (raise :class:`SlurmProfileError`)."""
        if self.engines < 1 or self.jobs < 1:
            raise SlurmProfileError(
                f"--engines {self.engines} --jobs {self.jobs}: both must be at least 1."
            )
        if self.jobs > self.engines:
            raise SlurmProfileError(
                f"--jobs {self.jobs} is more than --engines {self.engines}: every job runs "
                "at least one engine. Ask for fewer jobs, or more engines."
            )
        if slurm_seconds(self.time_limit) is None:
            raise SlurmProfileError(
                f"--time {self.time_limit!r} is not a Slurm time limit. Use one of Slurm's "
                "formats: MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS, "
                "DAYS-HOURS:MINUTES or DAYS-HOURS:MINUTES:SECONDS (e.g. --time 02:00:00)."
            )
        for option in self.slurm_options:
            if not option.startswith("-"):
                raise SlurmProfileError(
                    f"--slurm-option {option!r}: expected an sbatch option such as "
                    "--slurm-option=--constraint=haswell (one option with its value, "
                    "joined by '=')."
                )


def render_template(spec: SlurmSpec) -> str:
    """The batch template (ipyparallel fills in ``{n}``, ``{cluster_id}``, ... at each
    start; ``{n}`` is the cluster's engine count, ``{jobs}`` comes from the profile)."""
    lines = [
        "#!/bin/sh",
        "#SBATCH --job-name=ipengine-{cluster_id}",
        # The engines find their controller through the environment ipyparallel sets for
        # sbatch (IPP_PROFILE_DIR, IPP_CLUSTER_ID, ...).
        "#SBATCH --export=ALL",
        "#SBATCH --array=0-{jobs - 1}",
        "#SBATCH --ntasks={(n + jobs - 1) // jobs}",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --time={timelimit}",
        f"#SBATCH --output={OUTPUT_PATTERN}",
    ]
    if spec.partition:
        lines.append("#SBATCH --partition={queue}")
    if spec.account:
        lines.append("#SBATCH --account={account}")
    if spec.qos:
        lines.append("#SBATCH --qos={qos}")
    lines += [f"#SBATCH {_escape(option)}" for option in spec.slurm_options]
    environment = {**BLAS_THREAD_ENV, **spec.environment}
    lines += [
        "# This job's share of the {n} engines (the first jobs take one more).",
        "engines=$(( ({n} + {jobs} - 1 - SLURM_ARRAY_TASK_ID) / {jobs} ))",
        '[ "$engines" -gt 0 ] || exit 0',
        # One thread per numerical library: one engine per core must not start a
        # thread per core.
        *(f"export {key}={_escape(shlex.quote(value))}" for key, value in environment.items()),
        # Each engine through pytest-gold's wrapper: it names the node in reports
        # (PYTEST_GOLD_HOST) and ends what the engine leaves behind (its nanny).
        f'srun --ntasks="$engines" {_escape(shlex.quote(spec.remote_python))} -m '
        f"{ENGINE_WRAPPER} {{program_and_args}}",
    ]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    """Literal text in the template: ipyparallel formats it with ``str.format``."""
    return text.replace("{", "{{").replace("}", "}}")


def render_config(spec: SlurmSpec, command: str, now: datetime.datetime, profile_dir: str) -> str:
    """The ``ipcluster_config.py`` of a profile with Slurm engines."""
    spec.check()
    per_job = engines_per_job(spec.engines, spec.jobs)
    share = (
        f"{per_job[0]} engines each"
        if len(set(per_job)) == 1
        else f"{per_job[0]} or {per_job[-1]} engines each"
    )
    launcher = "c.SlurmEngineSetLauncher"
    # One Python string per line of the script: safe whatever the options hold.
    template_lines = "".join(f"    {line!r},\n" for line in render_template(spec).splitlines())
    return f"""\
# Written by pytest-gold on {now:%Y-%m-%d %H:%M} with:
#   {command}
# Plain ipyparallel configuration: 'ipcluster start --profile=NAME' and
# 'pytest --gold --gold-profile=NAME' both start this cluster: the controller on this
# machine, the engines as Slurm jobs.
c = get_config()  # noqa: F821

c.Cluster.engine_launcher_class = {SLURM_LAUNCHER!r}
# Explicit: ipyparallel caps an unset count at this machine's CPU count.
c.Cluster.n = {spec.engines}
# Where engines on the compute nodes reach the controller (and only there).
c.Cluster.controller_ip = {spec.controller_ip!r}

# {spec.jobs} jobs ({share}), submitted as one job array: each job starts when
# the queue lets it and ends at its own time limit; 'scancel ID' of the array's id (what
# 'ipcluster stop' does) cancels them all.
{launcher}.namespace = {{"jobs": {spec.jobs}}}
{launcher}.timelimit = {spec.time_limit!r}
{launcher}.queue = {spec.partition!r}
{launcher}.account = {spec.account!r}
{launcher}.qos = {spec.qos!r}
# The engines' python (with pytest-gold installed), as the batch script runs it.
{launcher}.engine_cmd = [{spec.remote_python!r}, "-m", "ipyparallel.engine"]
{launcher}.batch_file_name = {f"{profile_dir}/{BATCH_FILE}"!r}
{launcher}.batch_template = "\\n".join([
{template_lines}]) + "\\n"
"""


# -- reading a profile back ----------------------------------------------------------------


@dataclass
class SlurmSummary:
    jobs: int | None
    time_limit: str
    partition: str
    account: str
    qos: str
    #: A batch template of the profile's own; ``False``: ipyparallel's default, one job.
    custom_template: bool


def summarize_slurm(config: Any) -> SlurmSummary:
    """What a loaded profile config says about its Slurm jobs (ipyparallel's own options
    read the same way: a hand-written profile is described too)."""
    launcher: dict[str, Any] = {}
    for section in ("SlurmLauncher", "SlurmEngineSetLauncher"):
        launcher.update(dict(config.get(section, {})))
    namespace = dict(launcher.get("namespace", {}))
    template = launcher.get("batch_template", "")
    jobs = namespace.get("jobs")
    if jobs is None and not template:
        jobs = 1  # ipyparallel's default template: one job of all engines
    return SlurmSummary(
        jobs=None if jobs is None else int(jobs),
        time_limit=str(launcher.get("timelimit", "")),
        partition=str(launcher.get("queue", "")),
        account=str(launcher.get("account", "")),
        qos=str(launcher.get("qos", "")),
        custom_template=bool(template),
    )


def describe_slurm(summary: SlurmSummary, engines: int | None) -> list[str]:
    """The Slurm lines of ``profile show``."""
    if summary.jobs is None:
        jobs = "as the profile's own batch template says"
    elif engines is None:
        jobs = f"{summary.jobs}"
    else:
        shares = sorted(set(engines_per_job(engines, summary.jobs)), reverse=True)
        each = " or ".join(str(share) for share in shares)
        jobs = f"{summary.jobs} (job array), {each} engines per job"
    seconds = slurm_seconds(summary.time_limit) if summary.time_limit else None
    limit = (
        f"{summary.time_limit} per job"
        + ("" if format_seconds(seconds) == summary.time_limit else f" ({format_seconds(seconds)})")
        if seconds is not None
        else summary.time_limit or "the partition's default"
    )
    lines = [
        f"  slurm jobs: {jobs}",
        f"  time limit: {limit}",
        f"  partition: {summary.partition or 'the default partition'}",
    ]
    if summary.account:
        lines.append(f"  account: {summary.account}")
    if summary.qos:
        lines.append(f"  qos: {summary.qos}")
    return lines


# -- the site: sbatch, sinfo ---------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    name: str
    #: sinfo's MaxTime (``10:00``, ``2-00:00:00``, ``infinite``).
    max_time: str
    #: The partition's nodes and their addresses (``NodeAddr``).
    node_addresses: tuple[str, ...]


class SlurmSite:
    """What ``profile create --slurm`` asks Slurm (commands on this machine)."""

    def sbatch_path(self) -> str | None:
        return shutil.which("sbatch")

    def partition(self, name: str) -> Partition | None:
        """The named partition (``""``: the default one); ``None`` if Slurm knows none."""
        args = ["-p", name] if name else []
        rows = self._sinfo([*args, "-h", "-N", "-o", "%P|%l|%o"])
        default = [row for row in rows if row[0].endswith("*")] if not name else rows
        if not default:
            return None
        partition = default[0][0].rstrip("*")
        addresses = tuple(sorted({row[2] for row in default if row[0].rstrip("*") == partition}))
        return Partition(name=partition, max_time=default[0][1], node_addresses=addresses)

    def _sinfo(self, args: list[str]) -> list[list[str]]:
        try:
            output = subprocess.run(
                ["sinfo", *args],
                capture_output=True,
                text=True,
                timeout=SLURM_COMMAND_SECONDS,
                check=True,
            ).stdout
        except subprocess.CalledProcessError as error:
            raise SlurmProfileError(
                f"'sinfo {shlex.join(args)}' failed: {error.stderr.strip() or error}. Check "
                "that Slurm's controller is reachable from this machine ('sinfo' should "
                "list the partitions)."
            ) from None
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SlurmProfileError(
                f"could not ask Slurm about its partitions ('sinfo': {error}). Run "
                "'profile create --slurm' on a machine that submits Slurm jobs (a login "
                "node)."
            ) from None
        return [line.split("|") for line in output.splitlines() if line.strip()]


def check_site(spec: SlurmSpec, site: SlurmSite) -> Partition:
    """The checks that ask Slurm; the partition the jobs go to."""
    if site.sbatch_path() is None:
        raise SlurmProfileError(
            "sbatch is not on the PATH: this machine cannot submit Slurm jobs. Create and "
            "use the profile on a machine that can (a login node of the cluster), or load "
            "Slurm's environment first (e.g. 'module load slurm')."
        )
    partition = site.partition(spec.partition)
    if partition is None:
        which = f"partition {spec.partition!r}" if spec.partition else "a default partition"
        raise SlurmProfileError(
            f"Slurm has no {which} here ('sinfo -h -p {spec.partition}' lists no nodes). "
            "'sinfo -s' lists the partitions; give one with --partition NAME."
        )
    limit = slurm_seconds(partition.max_time.replace("infinite", ""))
    wanted = slurm_seconds(spec.time_limit) or 0
    if partition.max_time not in UNLIMITED and limit is not None and wanted > limit:
        raise SlurmProfileError(
            f"--time {spec.time_limit} is longer than partition {partition.name!r} allows "
            f"(MaxTime {partition.max_time}): the jobs would wait in the queue for ever "
            f"(reason PartitionTimeLimit). Ask for at most {partition.max_time}, or use "
            "another partition."
        )
    return partition
