"""Whether what a worker imported before its run began is still what is on disk.

A worker may be started ahead of its run (a standby, see
``pytest_gold.engine.standby``): it imports pytest and its plugins while it waits. If a
file it imported changed meanwhile, it starts no pytest session and says
:class:`~pytest_gold.protocol.control.Stale`; the supervisor starts a fresh worker.
"""

from __future__ import annotations

import os
import sys


def loaded_module_times() -> dict[str, int]:
    """Modification time of the file of every imported module."""
    times = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            try:
                times[path] = os.stat(path).st_mtime_ns
            except OSError:
                continue
    return times


def changed_since(times: dict[str, int], started_ns: int) -> bool:
    """Whether a file changed since it was seen, or was written after the process
    started (it may have been imported half-written, or before the change)."""
    for path, mtime in times.items():
        try:
            now = os.stat(path).st_mtime_ns
        except OSError:
            return True
        if now != mtime or now > started_ns:
            return True
    return False
