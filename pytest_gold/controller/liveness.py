"""Noticing a controller that died: ipyparallel would wait for its replies forever.

Every ``check_seconds`` a daemon thread asks the hub for its queue status. If one such
question stays unanswered for ``deadline_seconds``, the controller is taken for lost.
Daemon threads, because a question to a dead hub never returns and must not keep the
process from exiting.
"""

from __future__ import annotations

import threading
import time
from typing import Any

#: How often the hub is asked whether it is alive.
HUB_CHECK_SECONDS = 2.0


class HubMonitor:
    def __init__(
        self, client: Any, deadline_seconds: float, check_seconds: float = HUB_CHECK_SECONDS
    ) -> None:
        self.client = client
        self.deadline_seconds = deadline_seconds
        self.check_seconds = check_seconds
        self._asked_at: float | None = None
        self._answered = threading.Event()
        self._last_check = time.monotonic()

    def _ask(self) -> None:
        try:
            self.client.queue_status()
        except Exception:  # an error is an answer too: the hub is there
            pass
        self._answered.set()

    def lost_for(self) -> float | None:
        """Seconds without an answer once past the deadline, else ``None``."""
        now = time.monotonic()
        if self._asked_at is not None:
            if self._answered.is_set():
                self._asked_at = None
            elif now - self._asked_at > self.deadline_seconds:
                return now - self._asked_at
        if self._asked_at is None and now - self._last_check >= self.check_seconds:
            self._last_check = self._asked_at = now
            self._answered.clear()
            threading.Thread(target=self._ask, name="pytest-gold-hub-check", daemon=True).start()
        return None
