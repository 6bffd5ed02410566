"""Live output (``-s``), the engine's side: a run's output spool.

Everything the run's workers write on this engine is appended to one spool file, and each
byte has a stream offset (its position in everything the run's workers wrote here). New
bytes are published at once as ``display_data`` messages on the engine's IOPub channel,
each chunk with its offset: the controller shows them as they arrive. IOPub is a
publish/subscribe channel that may drop messages, and it is not ordered with task
results, so each batch result also says where the stream ends
(:attr:`~pytest_gold.protocol.messages.BatchResult.output_end`); whatever the controller has not
received by then it reads from the spool with :func:`read` (an ordinary task, which cannot
be lost). Nothing is cut. The spool keeps a batch's output until the run's next batch
starts on this engine: by then the controller has collected the batch's result and with
it every byte.

Why not the engine's stdout: ipyparallel concatenates stream text into one growing
string per task on the client and in the hub (quadratic in the output's size), and every
flushed line is a message of its own. ``display_data`` messages are stored as they come.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import TYPE_CHECKING, Any

from pytest_gold.protocol.outputwire import OUTPUT_MIME, READ_MAX_BYTES

if TYPE_CHECKING:
    from pytest_gold.engine.workerprocess import WorkerProcess

#: Largest chunk in one message: a 5 MB line goes as 20 messages, not one huge one.
CHUNK_BYTES = 256 * 1024
#: Output is published at most this often (unless a whole chunk is waiting): a case that
#: prints a line at a time must not cost a message per line.
PUBLISH_INTERVAL_SECONDS = 0.2
#: Most bytes taken from a worker's output file at a time, so that a case printing
#: gigabytes does not stop the supervisor from watching its worker.
PUMP_BYTES = 4 * 1024 * 1024
#: How long the spool of a finished run is kept for the controller to read its rest.
FINISHED_KEEP_SECONDS = 300.0


class OutputSpool:
    """A run's output on this engine: bytes with stream offsets, kept until settled."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.file = tempfile.NamedTemporaryFile(
            prefix="pytest-gold-output-", suffix=".log", delete=False
        )
        self.path = self.file.name
        #: Stream offset of the spool file's first byte.
        self.base = 0
        #: Stream offset after the last byte written.
        self.end = 0
        #: Stream offset up to which chunks were published.
        self.published = 0
        self.last_publish = 0.0
        self.finished_at: float | None = None

    def append(self, data: bytes) -> None:
        if data:
            self.file.seek(0, os.SEEK_END)
            self.file.write(data)
            self.end += len(data)

    def pump(self, worker: WorkerProcess, *, everything: bool = False) -> bool:
        """Take what the worker wrote since the last call, and publish it when due.
        ``everything``: to the end of its output file, and publish at once. Returns
        whether more is waiting in the worker's output file."""
        while True:
            data = worker.read_output(PUMP_BYTES)
            self.append(data)
            more = len(data) == PUMP_BYTES
            if not (everything and more):
                break
        self.publish(force=everything)
        return more

    def publish(self, *, force: bool = False) -> None:
        """Send the bytes not published yet to the controller, in chunks with offsets."""
        waiting = self.end - self.published
        if waiting <= 0:
            return
        now = time.monotonic()
        recently = now - self.last_publish < PUBLISH_INTERVAL_SECONDS
        if not force and waiting < CHUNK_BYTES and recently:
            return
        publisher = _display_publisher()
        if publisher is None:  # not inside an engine: the controller reads it all later
            self.published = self.end
            return
        self.last_publish = now
        while self.published < self.end:
            start, data = self.read(self.published, CHUNK_BYTES)
            if not data:
                break
            publisher.publish(
                # latin-1 maps every byte to one character: offsets stay byte offsets,
                # and the controller gets the bytes back exactly (and decodes them).
                data={OUTPUT_MIME: data.decode("latin-1")},
                metadata={OUTPUT_MIME: {"offset": start}},
            )
            self.published = start + len(data)

    def read(self, start: int, max_bytes: int) -> tuple[int, bytes]:
        """Up to ``max_bytes`` from stream offset ``start`` on (from the oldest kept byte
        when ``start`` was settled already); returns the offset the bytes start at."""
        start = max(start, self.base)
        if start >= self.end:
            return self.end, b""
        self.file.flush()
        with open(self.path, "rb") as spool:
            spool.seek(start - self.base)
            return start, spool.read(min(max_bytes, self.end - start))

    def settle(self) -> None:
        """Drop what was written so far: the controller has it (a new batch started)."""
        self.file.seek(0)
        self.file.truncate()
        self.base = self.published = self.end

    def close(self) -> None:
        self.file.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


_spools: dict[str, OutputSpool] = {}


def spool_for(run_id: str) -> OutputSpool:
    """The run's spool on this engine (made on first use); finished ones are pruned."""
    prune()
    spool = _spools.get(run_id)
    if spool is None:
        spool = _spools[run_id] = OutputSpool(run_id)
    return spool


def finished(run_id: str) -> None:
    """The run finished here: its spool is kept a while for the controller's last read."""
    spool = _spools.get(run_id)
    if spool is not None:
        spool.finished_at = time.monotonic()


def read(run_id: str, start: int, max_bytes: int = READ_MAX_BYTES) -> dict[str, Any]:
    """What the controller missed of the run's output: bytes from ``start`` on."""
    spool = _spools.get(run_id)
    if spool is None:
        return {"start": start, "data": b"", "end": start}
    offset, data = spool.read(start, min(max_bytes, READ_MAX_BYTES))
    return {"start": offset, "data": data, "end": spool.end}


def prune() -> None:
    now = time.monotonic()
    for run_id, spool in list(_spools.items()):
        if spool.finished_at is not None and now - spool.finished_at > FINISHED_KEEP_SECONDS:
            del _spools[run_id]
            spool.close()


def close_all() -> None:
    for run_id in list(_spools):
        _spools.pop(run_id).close()


def _display_publisher() -> Any:
    """The engine kernel's display publisher (``None`` outside an IPython kernel)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    publisher = getattr(shell, "display_pub", None)
    return publisher if hasattr(publisher, "session") else None
