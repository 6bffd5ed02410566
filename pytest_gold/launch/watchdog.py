"""Stops an embedded cluster when the pytest process that started it dies.

Started by :func:`pytest_gold.launch.cluster.start_embedded` in its own session, holding the
read end of a pipe whose write end only the pytest process has. A normal run writes
``done`` before closing it; if the pipe closes without that (pytest was SIGKILLed), the
watchdog stops the cluster from its cluster file and removes its profile directory, so
no controller, engine, nanny or worker outlives the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys

#: What a pytest process that stopped its own cluster writes before it exits.
DONE = b"done"


def kill_process_groups(groups: list[int]) -> None:
    """SIGKILL whatever is left in these process groups (each launcher made its own)."""
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


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
