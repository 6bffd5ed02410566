"""An inner ``pytest`` in a subprocess that a test can watch, interrupt or kill mid-run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

#: The line an embedded run prints once its cluster is up.
CLUSTER_UP = "gold: embedded cluster on"


class InnerPytest:
    def __init__(self, cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Unbuffered bytes: communicate() with a timeout reads the pipe's fd directly,
            # so anything a buffered reader had read ahead in read_until would be lost.
            bufsize=0,
        )
        self.output = ""

    def read_until(self, needle: str) -> str:
        """Read output up to the first line containing ``needle`` (or to the end)."""
        assert self.process.stdout is not None
        while raw := self.process.stdout.readline():  # byte by byte: no read-ahead
            line = raw.decode(errors="replace")
            self.output += line
            if needle in line:
                return line
        return ""

    def wait_for_files(self, *paths: Path) -> None:
        """Until cases of this run wrote every one of ``paths`` (see wait_for_files)."""
        wait_for_files(*paths, process=self.process)

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout: float = 60) -> int:
        """Wait for the end; the whole output is then in ``output``."""
        rest, _ = self.process.communicate(timeout=timeout)
        self.output += rest.decode(errors="replace")
        return self.process.returncode

    def __enter__(self) -> InnerPytest:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:  # the test failed midway: stop what it started
            self.process.kill()
            self.process.wait()


#: How long a test waits for an inner run to reach a point (cases started, ...): long,
#: since it only bounds a failure; a run that gets there returns at once.
REACH_SECONDS = 120.0


def wait_for_files(*paths: Path, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until every one of ``paths`` exists: written by cases of an inner run to say they
    got somewhere (a synchronisation that does not guess how long that takes)."""
    deadline = time.monotonic() + REACH_SECONDS
    while missing := [path for path in paths if not path.exists()]:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the inner run ended before {missing} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{missing} did not appear in {REACH_SECONDS:g} s")
        time.sleep(0.05)
