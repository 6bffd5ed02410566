"""The Slurm jobs a run submitted for its engines: their ids, and what squeue says of them.

A run that starts a Slurm profile's cluster
(:func:`pytest_gold.launch.attaching.start_from_profile`)
says which jobs it submitted, and when no engine came within ``--gold-wait``, why: what
``squeue`` reports for those jobs (pending, and the reason). Cancelling them is
ipyparallel's launcher's (``scancel`` of the ids, when the cluster stops).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: How long squeue may take to answer.
SQUEUE_SECONDS = 10
#: squeue's columns: job id (``12_[0-3]`` for an array's pending tasks), state, reason.
SQUEUE_FORMAT = "%i|%T|%r"


def submitted_jobs(cluster: Any) -> list[str]:
    """The ids of the jobs the cluster's Slurm engine launchers submitted (a job array's
    id stands for all of its jobs)."""
    from ipyparallel.cluster.launcher import SlurmLauncher

    engine_sets = getattr(cluster, "engines", {}) or {}
    return [
        str(launcher.job_id)
        for launcher in engine_sets.values()
        if isinstance(launcher, SlurmLauncher) and launcher.job_id
    ]


def forget_unsubmitted(cluster: Any) -> None:
    """Leave out the Slurm engine sets whose submission failed: ipyparallel would stop
    them with ``scancel`` of no id, which fails, and the controller's stop with it."""
    from ipyparallel.cluster.launcher import SlurmLauncher

    engine_sets = getattr(cluster, "engines", None)
    if not engine_sets:
        return
    for key, launcher in list(engine_sets.items()):
        if isinstance(launcher, SlurmLauncher) and not launcher.job_id:
            del engine_sets[key]


def submission_problem(error: BaseException, log_path: Path) -> str:
    """What sbatch said when it refused the jobs (its stderr went to the cluster's log)."""
    command = getattr(error, "cmd", None)
    if not isinstance(command, list) or not command or not str(command[0]).endswith("sbatch"):
        return ""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    said = [line.strip() for line in lines if line.startswith("sbatch: error:")]
    if not said:
        return ""
    return (
        f" sbatch refused the engines' jobs: '{said[-1]}'. Nothing was submitted; fix the "
        "profile's Slurm options (its batch template) and run again."
    )


def submitted_line(job_ids: list[str], kept: bool = False) -> str:
    ids = ", ".join(job_ids)
    them = "them" if len(job_ids) != 1 else "it"
    after = (
        f"{'they stay' if len(job_ids) != 1 else 'it stays'} running with the cluster "
        "(--gold-keep-cluster)"
        if kept
        else f"the run cancels {them} when it ends"
    )
    return (
        f"gold: submitted Slurm job{'s' if len(job_ids) != 1 else ''} {ids} for the engines "
        f"(squeue -j {','.join(job_ids)}); {after}"
    )


def describe_queue(rows: list[tuple[str, str, str]]) -> str:
    """squeue's rows as one sentence: ``job 12_[0-3] PENDING (BeginTime)``."""
    if not rows:
        return "squeue lists none of them any more (they ended, or were cancelled)"
    shown = []
    for job, state, reason in rows:
        why = f" ({reason})" if reason and reason != "None" else ""
        shown.append(f"job {job} {state}{why}")
    return "squeue says: " + "; ".join(shown)


def queue_rows(
    job_ids: list[str], run: Callable[..., Any] = subprocess.run
) -> list[tuple[str, str, str]] | str:
    """squeue's rows for the jobs, or why squeue could not be asked."""
    try:
        output = run(
            ["squeue", "-h", "-j", ",".join(job_ids), "-o", SQUEUE_FORMAT],
            capture_output=True,
            text=True,
            timeout=SQUEUE_SECONDS,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return f"squeue could not be asked ({error})"
    rows = []
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            rows.append((parts[0], parts[1], parts[2]))
    return rows


def queue_note(job_ids: list[str], run: Callable[..., Any] = subprocess.run) -> str:
    """For the message of a run whose engines did not come: what Slurm says of its jobs."""
    if not job_ids:
        return ""
    rows = queue_rows(job_ids, run)
    said = rows if isinstance(rows, str) else describe_queue(rows)
    return (
        f" The engines are Slurm job{'s' if len(job_ids) != 1 else ''} "
        f"{', '.join(job_ids)}: {said}. A job that waits in the queue (PENDING) starts "
        "when Slurm lets it; 'squeue --start -j ID' estimates when. The run cancelled them."
    )
