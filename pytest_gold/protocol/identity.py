"""Who is who across the processes: a machine (boot and pid namespace), a process by pid
and start time, and the controller of a run as engines on its machine can check it.

Shared by the controller, the engines' supervisors and the kept cluster's idle watch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def this_machine() -> str:
    """This machine's boot and pid namespace: processes that share it can signal each other
    by pid. Empty where it cannot be told (not Linux)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            boot_id = boot.read().strip()
        return f"{boot_id}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None if there is no such
    process or it cannot be told; with the pid it names one process, whatever reuses pids."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces and parentheses.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ControllerId:
    """The ``pytest`` process of a run, as engines on its machine can check it is alive."""

    machine: str = ""
    pid: int = 0
    started: int | None = None

    @classmethod
    def of_this_process(cls) -> ControllerId:
        pid = os.getpid()
        return cls(machine=this_machine(), pid=pid, started=process_start(pid))

    def gone(self, here: str) -> bool:
        """Known to have ended: only a controller on this machine (``here``) can be told."""
        if not self.machine or self.machine != here or self.started is None:
            return False
        return process_start(self.pid) != self.started
