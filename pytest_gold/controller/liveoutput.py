"""Live output (``-s``), the controller's side: every byte once, in order, per engine.

Engines publish their run's output in chunks, each with its stream offset (see
:mod:`pytest_gold.engine.outputspool`); they arrive through ipyparallel's IOPub channel in the
``outputs`` of the task's metadata. A chunk may come late, twice (also read from the
spool) or never (IOPub may drop messages): offsets put them in order and drop what was
shown already. When a batch's result arrives, it says where the stream ends; what did
not come by then is read from the engine's spool, so nothing is lost. Lines are shown
whole, each prefixed with the engine's tag.
"""

from __future__ import annotations

import codecs
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pytest_gold.protocol.outputwire import OUTPUT_MIME

#: After a batch's result, how long its last chunks may take to arrive live before the
#: rest is read from the engine's spool instead.
OUTPUT_WAIT_SECONDS = 0.25
#: How often the controller looks for them meanwhile.
OUTPUT_POLL_SECONDS = 0.01

#: Reads what a result says is there and did not come live: ``fetch(start)`` returns
#: ``(start, data)`` from the engine's spool (raises when the engine cannot answer).
Fetch = Callable[[int], tuple[int, bytes]]


@dataclass
class EngineStream:
    """One engine's output stream in this run."""

    tag: str
    #: Stream offset of the next byte to show.
    shown: int = 0
    #: Chunks that came ahead of a missing one, by offset.
    ahead: dict[int, bytes] = field(default_factory=dict)
    partial: str = ""
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    def add(self, offset: int, data: bytes) -> str:
        """Take a chunk; returns the complete lines it completes, prefixed."""
        if offset + len(data) <= self.shown:
            return ""  # shown already
        if offset > self.shown:
            self.ahead[offset] = data
            return ""
        text = self.decoder.decode(data[self.shown - offset :])
        self.shown = offset + len(data)
        while self.shown in self.ahead:  # chunks that were waiting for this one
            data = self.ahead.pop(self.shown)
            text += self.decoder.decode(data)
            self.shown += len(data)
        for offset in [o for o, d in self.ahead.items() if o + len(d) <= self.shown]:
            del self.ahead[offset]
        return self.lines(text)

    def lines(self, text: str) -> str:
        text = self.partial + text
        cut = text.rfind("\n") + 1
        self.partial = text[cut:]
        return self.prefixed(text[:cut])

    def prefixed(self, text: str) -> str:
        if not text:
            return ""
        prefix = f"[{self.tag}] "
        return "".join(prefix + line for line in text.splitlines(keepends=True))

    def rest(self) -> str:
        """The last line when it has no newline (a batch ended after it)."""
        text = self.partial + self.decoder.decode(b"", final=True)
        self.partial = ""
        return self.prefixed(text + "\n") if text else ""


class LiveOutput:
    """What running cases print, on the controller's terminal (``write``)."""

    def __init__(
        self,
        write: Callable[[str], None],
        notice: Callable[[str], None],
        wait_seconds: float = OUTPUT_WAIT_SECONDS,
    ) -> None:
        self.write = write
        self.notice = notice
        self.wait_seconds = wait_seconds
        self.streams: dict[int, EngineStream] = {}

    def stream(self, eid: int, tag: str) -> EngineStream:
        stream = self.streams.get(eid)
        if stream is None:
            stream = self.streams[eid] = EngineStream(tag)
        return stream

    def take(self, metadata: Any, eid: int, tag: str) -> None:
        """Show the chunks that came in for a task (``metadata``: its ipyparallel metadata)."""
        outputs = metadata["outputs"]
        stream = self.stream(eid, tag)
        with interrupts_deferred():
            text = []
            while outputs:
                content = outputs.pop(0)  # the client's thread appends: one at a time
                chunk = content.get("data", {}).get(OUTPUT_MIME)
                if chunk is None:
                    continue  # not ours (something else displayed on the engine)
                offset = content.get("metadata", {}).get(OUTPUT_MIME, {}).get("offset", 0)
                text.append(stream.add(offset, chunk.encode("latin-1")))
            if any(text):
                self.write("".join(text))

    def settle(self, metadata: Any, eid: int, tag: str, end: int, path: str, fetch: Fetch) -> None:
        """A result came in: show every byte up to ``end`` (waiting briefly for chunks on
        their way, then reading the rest from the engine), and the last partial line."""
        stream = self.stream(eid, tag)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            self.take(metadata, eid, tag)
            if stream.shown >= end or time.monotonic() > deadline:
                break
            time.sleep(OUTPUT_POLL_SECONDS)
        while stream.shown < end:
            try:
                start, data = fetch(stream.shown)
            except Exception as error:  # the engine cannot answer: say what is missing
                self.notice(
                    f"gold: {end - stream.shown} bytes of the output of {tag} could not be "
                    f"read from the engine ({type(error).__name__}: {error}); they are in "
                    f"{path} on {tag.rsplit(':', 1)[0]} until that engine's next batch of "
                    "this run"
                )
                stream.shown = end
                stream.ahead.clear()
                break
            if not data:
                self.notice(
                    f"gold: {end - stream.shown} bytes of the output of {tag} are missing: "
                    "the engine no longer has them"
                )
                stream.shown = end
                stream.ahead.clear()
                break
            with interrupts_deferred():
                self.write(stream.add(start, data))
        with interrupts_deferred():
            self.write(stream.rest())

    def lost(self, future: Any, eid: int, tag: str) -> None:
        """The task's engine was lost: show what came, and say what is missing."""
        self.take(future.metadata, eid, tag)
        stream = self.stream(eid, tag)
        while stream.ahead:
            first = min(stream.ahead)
            self.notice(
                f"gold: {first - stream.shown} bytes of the output of {tag} were lost with "
                "its engine; what came after them follows"
            )
            stream.shown = first
            self.write(stream.add(first, stream.ahead.pop(first)))
        self.write(stream.rest())


#: Signals that become a KeyboardInterrupt in the controller (Ctrl-C, a scheduler's stop).
INTERRUPTING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C (or SIGTERM) waits until the block is done: output taken from ipyparallel
    is on the terminal before the KeyboardInterrupt, not lost between the two."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = {signum: signal.signal(signum, remember) for signum in INTERRUPTING_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for pending in received:
            signal.raise_signal(pending)  # now, to the handler it was meant for
