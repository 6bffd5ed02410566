"""What comes back with tasks besides results: live output (-s), leftovers, and the memory
collected tasks would hold on the client and the hub."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest_gold.controller.tasks as tasks
from pytest_gold.controller.liveoutput import Fetch, LiveOutput
from pytest_gold.controller.terminal import Terminal
from pytest_gold.protocol.messages import BatchResult
from pytest_gold.protocol.outputwire import READ_MAX_BYTES
from pytest_gold.protocol.timing import CONTROLLER_POLL_SECONDS as POLL_SECONDS

#: Collected tasks whose results are purged from the hub in one request.
PURGE_EVERY_TASKS = 200
#: How long a read of live output that did not come live may take (the engine is idle).
OUTPUT_READ_TIMEOUT_SECONDS = 30.0
#: Processes left behind by tests listed by pid and command (more are counted).
MAX_LISTED_LEFTOVERS = 5


class TaskMemory:
    """Drops collected tasks' results from the client's and (in bulk) the hub's memory: a
    campaign of 10^5 cases must not grow either without bound."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.collected: list[str] = []

    def forget(self, future: Any) -> None:
        client = self.client
        # By msg id: given the AsyncResult, ipyparallel's ``not jobs`` calls its
        # lru-cached ``__len__``, and that cache then kept the last 128 results (a
        # 20,000-case run's controller peaked at ~400 MiB instead of ~200).
        client.purge_local_results(jobs=list(future.msg_ids))
        self.collected.append(future.msg_ids[0])
        if len(self.collected) >= PURGE_EVERY_TASKS:
            collected, self.collected = self.collected, []
            for msg_id in collected:  # live output that came after the task was forgotten
                client.metadata.pop(msg_id, None)
            try:
                client.purge_hub_results(collected)
            except Exception:  # memory only; never worth failing a run over
                pass


class OutputRelay:
    """With -s (``enabled``): what running cases print, as it comes in, and every byte of
    a batch's output before its results."""

    def __init__(
        self,
        client: Any,
        run_id: str,
        terminal: Terminal,
        memory: TaskMemory,
        tag_of: Callable[[int], str],
        enabled: bool,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.memory = memory
        self.tag_of = tag_of
        self.enabled = enabled
        self.live = LiveOutput(terminal.write_output, terminal.notice)

    def take(self, running: Iterable[tuple[Any, int]]) -> None:
        """Output of the tasks running (metadata, engine id) that came in."""
        if self.enabled:
            for metadata, eid in running:
                self.live.take(metadata, eid, self.tag_of(eid))

    def settle(self, metadata: Any, eid: int, result: BatchResult) -> None:
        """A result came in: first every byte its engine printed up to it."""
        if self.enabled:
            self.live.settle(
                metadata,
                eid,
                result.engine.tag,
                result.output_end,
                result.output_path,
                self.reader(eid),
            )

    def lost(self, future: Any, eid: int) -> None:
        if self.enabled:
            self.live.lost(future, eid, self.tag_of(eid))

    def reader(self, eid: int) -> Fetch:
        """Reads output an engine has and the controller did not get live (a task: it
        cannot be lost the way IOPub messages can)."""

        def fetch(start: int) -> tuple[int, bytes]:
            future = tasks.read_output(self.client, eid, self.run_id, start, READ_MAX_BYTES)
            answer = future.get(timeout=OUTPUT_READ_TIMEOUT_SECONDS)
            self.memory.forget(future)
            return answer["start"], answer["data"]

        return fetch

    def await_finish(
        self, result: Any, engines: list[int], timeout: float
    ) -> list[tuple[int, Any, Any]]:
        """The end-of-run results of ``engines`` (one task each, ``result``), with each
        task's metadata; with -s, what the last teardowns print is shown meanwhile."""
        deadline = time.monotonic() + timeout
        metadata = [self.client.metadata[msg_id] for msg_id in result.msg_ids]
        while not result.ready():
            self.take(zip(metadata, engines, strict=True))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            result.wait(min(remaining, POLL_SECONDS))
        outcomes = result.get(timeout=0)
        return list(zip(engines, metadata, outcomes, strict=True))


def note_leftovers(terminal: Terminal, result: BatchResult) -> None:
    """Say which processes left running by tests the engine ended."""
    ended = result.leftovers
    if not ended:
        return
    listed = ", ".join(ended[:MAX_LISTED_LEFTOVERS])
    unlisted = len(ended) - MAX_LISTED_LEFTOVERS
    more = f" and {unlisted} more" if unlisted > 0 else ""
    terminal.write_line(
        f"gold: ended {len(ended)} process{'es' if len(ended) != 1 else ''} left behind "
        f"by tests on {result.engine.tag}: {listed}{more}",
        problem=True,
    )
