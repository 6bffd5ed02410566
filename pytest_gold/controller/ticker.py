"""Now and then during a run: the status on the terminal and a fresh --gold-status-file."""

from __future__ import annotations

import math
import time
from pathlib import Path

from pytest_gold.controller.jobcare import JobCare
from pytest_gold.controller.progress import (
    STATUS_FILE_SECONDS,
    Progress,
    format_status,
    format_status_short,
    write_status_file,
)
from pytest_gold.controller.statusline import REDRAW_SECONDS, StatusLine
from pytest_gold.controller.terminal import Terminal
from pytest_gold.policy.run import Run


class StatusTicker:
    """Shows the run's status every ``interval`` seconds (in place: every redraw) and
    writes ``status_file`` (if any); ``compact``: the status lines are the run's log."""

    def __init__(
        self,
        progress: Progress,
        terminal: Terminal,
        *,
        interval: float,
        status_file: str | None,
        compact: bool,
    ) -> None:
        self.progress = progress
        self.terminal = terminal
        self.interval = interval
        self.status_file = status_file
        self.compact = compact
        self.last_line = time.monotonic()
        # The status file is written at the first tick: it exists as soon as the run does.
        self.last_file = -math.inf
        #: What the status file says the run is doing.
        self.state = "running"
        #: The run's Slurm jobs, whose counts the status shows (a Slurm cluster it started).
        self.jobs: JobCare | None = None

    def restart(self) -> None:
        """The run starts now (the wait for engines is over)."""
        self.last_line = time.monotonic()

    def tick(self, run: Run, force: bool = False) -> None:
        now = time.monotonic()
        status_line = self.terminal.status_line
        in_place = isinstance(status_line, StatusLine)
        interval = REDRAW_SECONDS if in_place else self.interval
        line_due = not force and now - self.last_line >= interval
        file_due = self.status_file and (force or now - self.last_file >= STATUS_FILE_SECONDS)
        if not (line_due or file_due):
            if in_place and not force and not status_line.shown:
                status_line.show()  # the last status again, below new output
            return
        queue = run.queue
        engine_time = self.progress.engine_time
        busy = run.busy
        running_left: list[float | None] = []
        for eid, batch in busy.items():
            expected = [queue.expected_seconds(n) for n in batch.nodeids]
            known = [seconds for seconds in expected if seconds is not None]
            running_left.append(
                engine_time.left(eid, known) if len(known) == len(expected) else None
            )
        # (batches queued on engines behind the one they run: still to do)
        waiting = [n for batch in run.queued_on_engines for n in batch.nodeids]
        queued = [queue.expected_seconds(n) for n in [*queue.remaining(), *waiting]]
        known = [seconds for seconds in queued if seconds is not None]
        snapshot = self.progress.snapshot(
            running=sum(len(batch.nodeids) for batch in busy.values()),
            engines_busy=len(busy),
            engines_available=len(run.usable),
            queued_seconds=queued,
            running_left=running_left,
            queued_tasks=queue.planned_batches(known) if len(known) == len(queued) else None,
        )
        if self.jobs is not None:
            snapshot.jobs = self.jobs.status()
        if line_due:
            self.last_line = now
            if in_place:
                status_line.show(format_status_short(snapshot, status_line.width))
            else:  # in compact mode it is the run's log, even with -q
                self.terminal.write_line(format_status(snapshot), always=self.compact)
        if file_due and self.status_file:
            self.last_file = now
            write_status_file(Path(self.status_file), snapshot, self.state)
