"""What Slurm says of one job now: its state (``RUNNING``, ``TIMEOUT``, ``CANCELLED``...).

The controller asks when an engine that is a Slurm job's is lost: did its job end (time
limit, ``scancel``), or did the engine die on its own? ``scontrol show job`` gives the
job's state from the moment Slurm decides to end it (before it signals the job's
processes, and while the job is still ``COMPLETING``, when ``squeue`` says only that),
without an accounting database (``sacct``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

#: How long scontrol may take to answer.
SCONTROL_SECONDS = 10


def job_state(job: str, run: Callable[..., Any] = subprocess.run) -> str | None:
    """The job's ``JobState`` as scontrol says it; ``None`` when it cannot tell (no
    scontrol, a job Slurm forgot)."""
    try:
        output = run(
            ["scontrol", "-o", "show", "job", job],
            capture_output=True,
            text=True,
            timeout=SCONTROL_SECONDS,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for word in output.split():
        if word.startswith("JobState="):
            return word.removeprefix("JobState=")
    return None
