"""The Slurm jobs a run submitted, all generations: squeue now and then, replacements, scancel.

Only for a cluster the run started from a Slurm profile: its first generation is the job
array ipyparallel's ``SlurmEngineSetLauncher`` submitted at the start. Replacements are
engine sets added through ipyparallel too (``Cluster.start_engines``, the profile's own
batch template with one job of the profile's engines per job), so ipyparallel knows
them: ``ipcluster stop`` and the cluster file (the watchdog's) include them. The run
cancels every job it submitted, by id, and never another.

How many replacements and when is :mod:`pytest_gold.policy.jobplan`'s; this module asks
Slurm (``squeue``, ``scontrol``, ``scancel``; the command runner is injectable for tests).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_gold.launch.slurmprofile import OUTPUT_PATTERN, engines_per_job, slurm_seconds
from pytest_gold.policy.jobplan import JobView, job_counts, replacements, staggered_minutes

#: Seconds between two looks at squeue (a busy site's slurmctld should not be asked every
#: tick of the run's loop).
JOB_POLL_SECONDS = 5.0
#: How long a Slurm command may take.
SLURM_COMMAND_SECONDS = 10
#: squeue's columns, one row per array task (``-r``): id (``12_3``), state, time left, limit.
SQUEUE_FORMAT = "%i|%T|%L|%l"
#: The states of a job that has (or will have) engines; others are ending or ended.
PENDING_STATES = ("PENDING", "CONFIGURING", "REQUEUED", "RESV_DEL_HOLD")
RUNNING_STATES = ("RUNNING", "SUSPENDED")

Runner = Callable[..., Any]


@dataclass
class Generation:
    """One submission: a job array of ``tasks`` jobs sharing ``engines`` engines out (the
    first jobs take one more, as the profile's batch template does)."""

    job_id: str
    tasks: int
    engines: int

    def task_ids(self) -> list[str]:
        return [f"{self.job_id}_{task}" for task in range(self.tasks)]

    def engines_of(self) -> dict[str, int]:
        return dict(zip(self.task_ids(), engines_per_job(self.engines, self.tasks), strict=True))


@dataclass
class RunJobs:
    """The run's jobs on a Slurm cluster it started (see the module's docstring)."""

    cluster: Any
    #: --gold-max-jobs: the most jobs of the run queued or running at once.
    max_jobs: int
    #: The first generation's size, and each job's engines and time limit.
    first_jobs: int
    engines_per_job: int
    limit_seconds: float | None
    run: Runner = subprocess.run
    clock: Callable[[], float] = time.monotonic
    #: Wraps the calls into ipyparallel (interrupts deferred, its messages to the log).
    around_ipyparallel: Callable[[], Any] | None = None
    generations: list[Generation] = field(default_factory=list)
    #: squeue's last view of the run's jobs still queued or running.
    views: list[JobView] = field(default_factory=list)
    polled_at: float = -float("inf")
    #: Whether squeue has answered at all (before that, nothing is decided).
    known: bool = False
    #: What went wrong asking Slurm, for the log; the run goes on without replacements.
    problems: list[str] = field(default_factory=list)
    cancelled: bool = False

    # -- what Slurm says -----------------------------------------------------------------

    def all_job_ids(self) -> list[str]:
        return [generation.job_id for generation in self.generations]

    def due(self, now: float) -> bool:
        return now - self.polled_at >= JOB_POLL_SECONDS

    def poll(self, now: float | None = None) -> bool:
        """Ask squeue if it is time to; whether the view changed."""
        now = self.clock() if now is None else now
        if not self.due(now) or not self.generations:
            return False
        self.polled_at = now
        rows = self._squeue()
        if rows is None:
            return False
        engines = {task: n for g in self.generations for task, n in g.engines_of().items()}
        views = []
        for job, state, left, limit in rows:
            if job not in engines or state not in (*PENDING_STATES, *RUNNING_STATES):
                continue
            pending = state in PENDING_STATES
            seconds = slurm_seconds(limit if pending else left)
            if seconds is None:  # UNLIMITED, INVALID: as long as the profile's limit
                seconds = int(self.limit_seconds or 0)
            views.append(JobView(job, engines[job], pending, float(seconds)))
        changed = views != self.views or not self.known
        self.views, self.known = views, True
        return changed

    def _squeue(self) -> list[tuple[str, str, str, str]] | None:
        ids = ",".join(self.all_job_ids())
        try:
            done = self.run(
                ["squeue", "-h", "-r", "-j", ids, "-o", SQUEUE_FORMAT],
                capture_output=True,
                text=True,
                timeout=SLURM_COMMAND_SECONDS,
            )
        except (OSError, subprocess.SubprocessError) as error:
            self.problems.append(f"squeue could not be asked: {error}")
            return None
        if done.returncode != 0:
            if "Invalid job id" in (done.stderr or ""):
                return []  # all of them ended and were purged
            self.problems.append(f"squeue failed: {(done.stderr or '').strip()}")
            return None
        rows = []
        for line in (done.stdout or "").splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4:
                rows.append((parts[0], parts[1], parts[2], parts[3]))
        return rows

    def output_of(self, job: str) -> str:
        """Where a job's engines wrote their output: the log file a profile made by
        ``profile create --slurm`` names, else how to ask Slurm."""
        profile_dir = getattr(self.cluster, "profile_dir", "") or ""
        for launcher in (getattr(self.cluster, "engines", None) or {}).values():
            template = str(getattr(launcher, "batch_template", "") or "")
            if OUTPUT_PATTERN in template and profile_dir:
                array, _, task = job.partition("_")
                path = OUTPUT_PATTERN.format(profile_dir=profile_dir)
                return path.replace("%A", array).replace("%a", task or "0")
        return f"sacct -j {job}, and the job's --output file"

    def counts(self) -> tuple[int, int] | None:
        """Running and queued jobs of the run (``None`` before squeue answered)."""
        return job_counts(self.views) if self.known else None

    # -- the first generation, replacements ------------------------------------------------

    def stagger_first(self) -> list[int]:
        """Time limits a little apart for the first generation's jobs (``scontrol update``
        of each array task's TimeLimit; a user may lower a job's limit). Returns the
        limits in minutes, as set."""
        if not self.generations or self.limit_seconds is None:
            return []
        first = self.generations[0]
        minutes = staggered_minutes(int(self.limit_seconds // 60), first.tasks)
        for task, limit in zip(first.task_ids(), minutes, strict=True):
            if limit * 60 >= self.limit_seconds:
                continue
            try:
                done = self.run(
                    ["scontrol", "update", f"JobId={task}", f"TimeLimit={limit}"],
                    capture_output=True,
                    text=True,
                    timeout=SLURM_COMMAND_SECONDS,
                )
            except (OSError, subprocess.SubprocessError) as error:
                self.problems.append(f"scontrol could not stagger {task}: {error}")
                return []
            if done.returncode != 0:
                self.problems.append(f"scontrol refused to stagger {task}: {done.stderr}")
                return []
        return minutes

    def plan(self, work_seconds: float | None, cases_left: int, margin_seconds: float) -> int:
        """How many jobs to submit now (none before squeue answered)."""
        if not self.known or self.cancelled:
            return 0
        return replacements(
            self.views,
            work_seconds=work_seconds,
            cases_left=cases_left,
            max_jobs=self.max_jobs,
            keep_jobs=self.first_jobs,
            engines_per_job=self.engines_per_job,
            job_seconds=self.limit_seconds or max((v.seconds_left for v in self.views), default=0),
            margin_seconds=margin_seconds,
        )

    def submit(self, count: int) -> list[str]:
        """Submit ``count`` replacement jobs through ipyparallel; their ids."""
        submitted: list[str] = []
        for _ in range(count):
            job_id = self._start_engine_set()
            if job_id is None:
                break
            self.generations.append(Generation(job_id, 1, self.engines_per_job))
            self.views.append(JobView(f"{job_id}_0", self.engines_per_job, True, 0.0))
            submitted.append(job_id)
        return submitted

    def _start_engine_set(self) -> str | None:
        namespace = dict(self._launcher_namespace())
        namespace["jobs"] = 1  # one job of the profile's engines per job
        around = self.around_ipyparallel or contextlib.nullcontext
        try:
            with around():
                set_id = self.cluster.start_engines_sync(
                    n=self.engines_per_job, namespace=namespace
                )
        except Exception as error:  # sbatch refused it (a full queue, a limit reached)
            self.problems.append(f"a replacement job could not be submitted: {error}")
            return None
        job_id = getattr(self.cluster.engines.get(set_id), "job_id", "")
        return str(job_id) if job_id else None

    def _launcher_namespace(self) -> dict[str, Any]:
        for launcher in self.cluster.engines.values():
            return dict(getattr(launcher, "namespace", {}) or {})
        return {}

    # -- the end -------------------------------------------------------------------------

    def cancel(self) -> list[str]:
        """``scancel`` every job the run submitted (by id; an array's id cancels all its
        jobs). Jobs that ended already are no error to scancel."""
        if self.cancelled or not self.generations:
            return []
        self.cancelled = True
        ids = self.all_job_ids()
        cancel_jobs(ids, self.run)
        return ids


def cancel_jobs(job_ids: Sequence[str], run: Runner = subprocess.run) -> bool:
    """``scancel`` of these job ids; whether scancel ran and said yes."""
    if not job_ids:
        return True
    try:
        done = run(
            ["scancel", *job_ids], capture_output=True, text=True, timeout=SLURM_COMMAND_SECONDS
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(done.returncode == 0)


def run_jobs_of(cluster: Any, max_jobs: int | None, run: Runner = subprocess.run) -> RunJobs | None:
    """The run's jobs of a cluster it started, if its engines are Slurm jobs."""
    from ipyparallel.cluster.launcher import SlurmLauncher

    engine_sets = list((getattr(cluster, "engines", None) or {}).values())
    slurm = [s for s in engine_sets if isinstance(s, SlurmLauncher) and s.job_id]
    if not slurm:
        return None
    first = slurm[0]
    tasks = int((getattr(first, "namespace", {}) or {}).get("jobs", 1))
    total = int(cluster.n or getattr(first, "n", 1) or 1)
    per_job = engines_per_job(total, tasks)
    limit = slurm_seconds(str(getattr(first, "timelimit", "") or ""))
    jobs = RunJobs(
        cluster=cluster,
        max_jobs=max_jobs if max_jobs is not None else tasks,
        first_jobs=tasks,
        engines_per_job=per_job[0],
        limit_seconds=float(limit) if limit else None,
        run=run,
    )
    jobs.generations.append(Generation(str(first.job_id), tasks, total))
    return jobs
