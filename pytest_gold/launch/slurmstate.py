"""What Slurm says of one job now: its state (``RUNNING``, ``TIMEOUT``, ``CANCELLED``,
``COMPLETING``...) and the reason.

The controller asks when an engine that is a Slurm job's is lost: did its job end (time
limit, ``scancel``), or did the engine die on its own? Slurm decides a job's end before
it signals the job's processes, so by the time the engine is gone the job's state says
so — but while the job's processes are still being ended (up to ``KillWait`` seconds)
``scontrol`` and ``squeue`` (also ``--json``, in 22.05) say only ``COMPLETING``; the
reason is ``TimeLimit`` for a time limit from the start, ``CANCELLED`` shows once the job
completed. No accounting database (``sacct``) is needed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

#: How long scontrol may take to answer.
SCONTROL_SECONDS = 10


def job_state(job: str, run: Callable[..., Any] = subprocess.run) -> tuple[str, str] | None:
    """The job's ``JobState`` and ``Reason`` as scontrol says them; ``None`` when it
    cannot tell (no scontrol, a job Slurm forgot)."""
    try:
        output = run(
            ["scontrol", "-o", "show", "job", job],
            capture_output=True,
            text=True,
            timeout=SCONTROL_SECONDS,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    fields = dict(word.split("=", 1) for word in output.split() if "=" in word)
    if "JobState" not in fields:
        return None
    return fields["JobState"], fields.get("Reason", "")
