"""Stops an embedded cluster when the pytest process that started it dies.

Started by :func:`pytest_gold.launch.cluster.start_embedded` in its own session, holding the
read end of a pipe whose write end only the pytest process has. A normal run writes
``done`` before closing it; if the pipe closes without that (pytest was SIGKILLed), the
watchdog stops the cluster from its cluster file and removes its profile directory, so
no controller, engine, nanny or worker outlives the run. A cluster whose engines are Slurm
jobs: the watchdog cancels every job in the cluster file (``scancel`` by id), replacement
jobs the run submitted too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

#: What a pytest process that stopped its own cluster writes before it exits.
DONE = b"done"
#: How long scancel of the run's Slurm jobs may take.
SCANCEL_SECONDS = 30


def kill_process_groups(groups: list[int]) -> None:
    """SIGKILL whatever is left in these process groups (each launcher made its own)."""
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def slurm_job_ids(cluster_file: str) -> list[str]:
    """The job ids of the cluster's batch engine sets (Slurm jobs), from its cluster
    file: ipyparallel adds every engine set started, replacements too."""
    try:
        with open(cluster_file) as file:
            sets = json.load(file).get("engines", {}).get("sets", {})
    except (OSError, ValueError, AttributeError):
        return []
    return [str(s["job_id"]) for s in sets.values() if isinstance(s, dict) and s.get("job_id")]


def cancel_slurm_jobs(cluster_file: str) -> None:
    """scancel every job of the run's engines by id, first: ipyparallel's stop below
    cancels them one by one and gives up at the first that fails."""
    job_ids = slurm_job_ids(cluster_file)
    if not job_ids:
        return
    try:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=SCANCEL_SECONDS)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"pytest-gold watchdog: scancel failed: {error}", file=sys.stderr)


def main() -> int:
    read_fd, cluster_file, profile_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    process_groups = [int(group) for group in sys.argv[4:]]
    received = b""
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(64):
            received += chunk
    if received.startswith(DONE):
        return 0
    # pytest is gone: nothing is left to save, so stop everything at once (a graceful
    # stop would wait for busy engines), then let ipyparallel tidy what remains.
    kill_process_groups(process_groups)
    cancel_slurm_jobs(cluster_file)
    try:
        import ipyparallel as ipp

        ipp.Cluster.from_file(cluster_file).stop_cluster_sync()
    except Exception as error:  # stopped already, or half-started: nothing more to do
        print(f"pytest-gold watchdog: {type(error).__name__}: {error}", file=sys.stderr)
    finally:
        if profile_dir:  # a private one (embedded cluster); never a user's profile
            shutil.rmtree(profile_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
