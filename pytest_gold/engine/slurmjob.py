"""The Slurm job an engine runs in, and when it ends: what the engine check reports.

An engine started by a Slurm profile (:mod:`pytest_gold.launch.slurmengine`) lives only
as long as its job: at the job's time limit Slurm ends it. The controller sends it no
case that cannot finish before then (:mod:`pytest_gold.policy.walltime`), so the engine
says which job it is and when the job ends:

- ``SLURM_JOB_END_TIME`` (seconds since the epoch) where the Slurm version sets it;
- else ``squeue -h -j $SLURM_JOB_ID -o %e`` (Slurm 22.05 sets no end time in the job's
  environment; squeue prints the end time in the local time zone).

Asked once per engine process (a campaign's engines would otherwise all ask slurmctld
at the start of every run). Outside a Slurm job: no job, no end time (any case fits).
"""

from __future__ import annotations

import functools
import os
import subprocess

from pytest_gold.policy.walltime import parse_job_end

#: How long squeue may take to answer the engine check.
SQUEUE_SECONDS = 10


def job_label(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """The job as ``squeue``/``scancel`` name it: ``12_3`` for a job array's task."""
    array, task = environ.get("SLURM_ARRAY_JOB_ID"), environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return environ.get("SLURM_JOB_ID", "")


def end_from_environment(environ: dict[str, str] | os._Environ[str]) -> float | None:
    raw = environ.get("SLURM_JOB_END_TIME", "").strip()
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def end_from_squeue(job_id: str) -> float | None:
    """The job's end time as squeue prints it; ``None`` when squeue cannot tell."""
    try:
        output = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%e"],
            capture_output=True,
            text=True,
            timeout=SQUEUE_SECONDS,
        ).stdout
        return parse_job_end(output.strip().splitlines()[0] if output.strip() else "", None)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


@functools.cache
def job_facts() -> tuple[str, float | None]:
    """(the job, when it ends) for this engine process; ``("", None)`` outside Slurm."""
    job_id = os.environ.get("SLURM_JOB_ID", "")
    if not job_id:
        return "", None
    end = end_from_environment(os.environ)
    if end is None:
        end = end_from_squeue(job_id)
    return job_label(), end
