"""Redrawing the report during a run, in a process of its own, now and then.

A thread of the controller starts ``python -m pytest_gold report LOG -o REPORT --refresh``
every ``--gold-report-interval`` seconds and waits for it: the run loop never waits for a
page to be drawn, whatever the size of the campaign. A redraw that takes long (a large
campaign on a busy machine) spaces out the next ones, so that redrawing never takes more
than a quarter of the time.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pytest_gold.report.campaignlog import partial_path

#: A redraw and the pause after it last at least this many times the redraw.
DUTY_FACTOR = 4
#: How long the end of the run waits for a redraw under way before stopping it.
REDRAW_WAIT_SECONDS = 60.0
#: How often the thread looks whether the run is over while a redraw runs.
POLL_SECONDS = 0.2


class Redrawer:
    def __init__(
        self, log: Path, report: Path, interval: float, before_each: Callable[[], None]
    ) -> None:
        self.log = log
        self.report = report
        self.interval = interval
        #: Called in the thread before each redraw (appends a progress record to the log).
        self.before_each = before_each
        self.stopping = threading.Event()
        self.stopped_at: float | None = None
        self.thread: threading.Thread | None = None
        #: Why the last redraw failed (None: it worked), and whether that was said.
        self.problem: str | None = None
        self.told = False
        self.redraws = 0

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pytest_gold",
            "report",
            str(self.log),
            "-o",
            str(self.report),
            "--refresh",
            f"{self.interval:g}",
            "--background",
        ]

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self.loop, name="gold-report", daemon=True)
            self.thread.start()

    def loop(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            self.before_each()
            self.redraw()
            took = time.monotonic() - started
            if self.stopping.wait(max(self.interval - took, (DUTY_FACTOR - 1) * took)):
                return

    def redraw(self) -> None:
        with tempfile.TemporaryFile() as errors:
            try:
                # A session of its own: Ctrl-C in the terminal is for pytest, not for it.
                child = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    start_new_session=True,
                )
            except OSError as error:
                self.failed(f"could not start {sys.executable} ({error})")
                return
            if not self.wait_for(child):
                return
            self.redraws += 1
            if child.returncode == 0:
                self.problem, self.told = None, False
                return
            errors.seek(0)
            lines = errors.read().decode(errors="replace").strip().splitlines()
            self.failed(lines[-1] if lines else f"exit status {child.returncode}")

    def wait_for(self, child: subprocess.Popen[bytes]) -> bool:
        """Until the redraw ends (True), or the run ended and it took too long (False)."""
        while True:
            try:
                child.wait(POLL_SECONDS)
                return True
            except subprocess.TimeoutExpired:
                stopped = self.stopped_at
                if stopped is not None and time.monotonic() - stopped > REDRAW_WAIT_SECONDS:
                    child.kill()
                    child.wait()
                    # What write_atomically had begun; the final report replaces the rest.
                    partial_path(self.report, child.pid).unlink(missing_ok=True)
                    return False

    def failed(self, problem: str) -> None:
        self.problem = problem

    def warning(self) -> str | None:
        """The warning to print now: one per stretch of failed redraws."""
        problem = self.problem
        if problem is None or self.told:
            return None
        self.told = True
        return (
            f"gold: warning: the campaign report {self.report} was not rewritten: {problem}; "
            f"the run goes on (next try in {self.interval:g} s)"
        )

    def stop(self) -> None:
        """No more redraws; waits for one under way (up to REDRAW_WAIT_SECONDS)."""
        self.stopped_at = time.monotonic()
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None
