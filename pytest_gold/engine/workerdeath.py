"""Why a worker process died, put so that the cause comes first.

The first line of a failure report is what pytest's short summary (``-rA``), the
``--gold-results`` message column and most CI views show; it names the cause
(``killed by SIGSEGV (Segmentation fault)``), not the case again. The output quoted below
it comes from each place once: with ``-s`` the case's output is the worker's own output
file, which is then not quoted again as "captured", and it is already on the terminal as
live output.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

#: Of the lines quoted from a long output, this share comes from its start (where a
#: fatal error's traceback puts the innermost frame), the rest from its end.
HEAD_SHARE = 4


@dataclass(frozen=True)
class DeathCause:
    #: What ended the process: ``killed by SIGSEGV (Segmentation fault)``,
    #: ``exited with code 3``.
    summary: str
    #: What it wrote, quoted (or where to find it); may be empty.
    details: str = ""

    @property
    def sentence(self) -> str:
        verb = "was " if self.summary.startswith("killed") else ""
        return f"the worker process {verb}{self.summary}"

    def __str__(self) -> str:
        return f"{self.sentence}\n{self.details}" if self.details else self.sentence


def exit_summary(returncode: int) -> str:
    """``killed by SIGSEGV (Segmentation fault)`` or ``exited with code 3``."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        number = signal.Signals(-returncode)
    except ValueError:
        return f"killed by signal {-returncode}"
    description = signal.strsignal(number)
    return f"killed by {number.name}" + (f" ({description})" if description else "")


def describe_death(
    returncode: int,
    captured: dict[str, Any],
    log: Any,
    log_offset: int,
    max_lines: int,
    *,
    streamed_as: str | None = None,
) -> DeathCause:
    """The cause, then what the case wrote to each captured stream and what the worker
    wrote itself (fatal errors land there). ``streamed_as``: the worker's output went to
    the terminal as live output under this tag, so it is pointed to, not quoted."""
    parts = []
    for stream, file in captured.items():
        if file is None or same_file(file, log):
            continue  # not captured (-s): the worker's own output, quoted once below
        text = excerpt(file, 0, max_lines)
        if text:
            parts.append(f"what the case wrote to {stream} (captured):\n{text}")
    if streamed_as is not None:
        parts.append(
            "what the worker wrote (with the traceback of a fatal error, if any) is in the "
            f"live output above, in the lines tagged [{streamed_as}]"
        )
    else:
        logged = excerpt(log, log_offset, max_lines)
        parts.append(f"the worker's own output (fatal errors land here):\n{logged or '(nothing)'}")
    return DeathCause(exit_summary(returncode), "\n".join(parts))


def same_file(one: Any, other: Any) -> bool:
    """Whether two open files (or paths) are the same file."""
    try:
        first = os.fstat(one.fileno()) if hasattr(one, "fileno") else os.stat(one)
        second = os.fstat(other.fileno()) if hasattr(other, "fileno") else os.stat(other)
    except (OSError, ValueError):
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def excerpt(source: Any, offset: int, max_lines: int) -> str:
    """The text of a file (path or open binary file) from ``offset`` on; when longer than
    ``max_lines``, its first and last lines and how many lines are left out between."""
    lines = read_text(source, offset).strip("\n").splitlines()
    if len(lines) <= max_lines:
        return "\n".join(lines).strip()
    head = max(1, max_lines // HEAD_SHARE)
    tail = max_lines - head
    left_out = len(lines) - head - tail
    return "\n".join(
        [*lines[:head], f"[... {left_out} lines left out ...]", *lines[-tail:]]
    ).strip()


def read_text(source: Any, offset: int) -> str:
    if source is None:
        return ""
    try:
        if isinstance(source, str):
            with open(source, "rb") as file:
                file.seek(offset)
                data = file.read()
        else:
            source.seek(offset)
            data = source.read()
    except (OSError, ValueError):
        return ""
    return data.decode("utf-8", errors="replace")
