"""ipyparallel's messages about a cluster this run starts or stops: a file, not the terminal.

ipyparallel logs what its launchers do (and, with its own SSH launcher, the ssh and scp
commands it runs print their errors, and the hosts' tracebacks, to the stderr they
inherit). None of it belongs among pytest's progress dots: it goes to a log file in the
profile's ``log`` directory, and what went wrong (errors, not routine warnings) is summed
up in one ``gold:`` line that names the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

LOG_NAME = "pytest-gold-cluster.log"
#: How much of the first problem the ``gold:`` line quotes.
QUOTED_CHARS = 300
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _Problems(logging.Handler):
    """Keeps the first line of every error logged."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            first = record.getMessage().strip().splitlines()
        except Exception:  # a broken log call must not break the run
            first = [str(record.msg)]
        self.messages.append(first[0] if first else record.levelname)


class ClusterLog:
    def __init__(self, profile_dir: Path, name: str) -> None:
        self.path = profile_dir / "log" / LOG_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(f"pytest_gold.launch.cluster.{name}")
        self.logger.propagate = False  # never to pytest's or Python's last-resort handler
        self.logger.setLevel(logging.INFO)
        for handler in list(self.logger.handlers):  # a second cluster in this process
            self.logger.removeHandler(handler)
            handler.close()
        self._file = logging.FileHandler(self.path, mode="a")
        self._file.setFormatter(logging.Formatter(LOG_FORMAT))
        self._problems = _Problems()
        self.logger.addHandler(self._file)
        self.logger.addHandler(self._problems)

    @contextlib.contextmanager
    def capturing_stderr(self) -> Iterator[None]:
        """Whatever ipyparallel's child processes (ssh, scp) print to their inherited
        stderr goes to the log file too, while this lasts."""
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep from the terminal
            yield
            return
        try:
            sys.stderr.flush()
            with open(self.path, "ab") as log:
                os.dup2(log.fileno(), 2)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)

    def take_problems(self, doing: str) -> str | None:
        """One line about the errors logged since the last call, if any."""
        messages, self._problems.messages = self._problems.messages, []
        if not messages:
            return None
        first = messages[0][:QUOTED_CHARS]
        more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
        return (
            f"ipyparallel reported a problem while {doing} the cluster: {first}{more}; "
            f"see {self.path}"
        )

    def close(self) -> None:
        self.logger.removeHandler(self._file)
        self._file.close()
