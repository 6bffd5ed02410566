"""The control messages between an engine's supervisor and its worker, and their channel.

A supervisor (:mod:`pytest_gold.engine.supervisor`) and the worker it starts
(:mod:`pytest_gold.worker`) talk over a socket pair: length-prefixed JSON objects, each
with a ``kind``. The worker's :class:`~pytest_gold.protocol.messages.Event` objects (its
reports, on their way to the controller) travel on the same channel as the control
messages below; :func:`encode` and :func:`decode` are the one way either is turned into
JSON and back.

A conversation::

    supervisor                                    worker
    StartRun(protocol, spec)  ------------------>
                              <------------------ Ready(collected) | Stale | WrongProtocol
    RunBatch(batch)           ------------------>
                              <------------------ CaptureFd(stdout, stderr)  (first case only)
    CaptureFdTaken            ------------------>
                              <------------------ events..., BatchDone
    Finish                    ------------------>
                              <------------------ events..., TeardownDone
                              <------------------ WorkerFinished(workeroutput), Exited(status)

:data:`PROTOCOL_VERSION` changes whenever a message changes in a way the other side
cannot read. An engine reports it to the controller (the engine check leaves out engines
that speak another version), and the worker compares it with the supervisor's in
:class:`StartRun`: a supervisor imported before pytest-gold was reinstalled may start a
worker that imports the new code.
"""

from __future__ import annotations

import functools
import json
import select
import signal
from dataclasses import dataclass, field, fields
from multiprocessing.connection import Connection
from typing import Any, ClassVar

from pytest_gold.protocol.messages import (
    Batch,
    Event,
    RunSpec,
    event_from_wire,
    is_event,
    to_wire,
)
from pytest_gold.protocol.version import PROTOCOL_VERSION as PROTOCOL_VERSION

#: Controller to engine: interrupt the running batch (-x, Ctrl-C), whatever its run; sent
#: by pid on the controller's machine, else through the engine's nanny. Not SIGINT:
#: ipykernel catches a SIGINT that lands after our function returned but before the reply
#: went out, and then never sends the reply. A run normally gets a signal of its own
#: instead (``EngineInfo.interrupt_signal``).
INTERRUPT_SIGNAL = signal.SIGUSR2
#: Supervisor to worker: print the stack of every thread (before a timed-out case is killed).
STACK_DUMP_SIGNAL = signal.SIGUSR1

#: Why cases of a batch did not run (``NotRun.reason``).
INTERRUPTED = "interrupted"
EXIT_REQUESTED = "pytest.exit()"

#: Milliseconds in a second (``select.poll`` takes milliseconds).
MILLISECONDS = 1000

_CONTROL_KINDS: dict[str, type[Control]] = {}


class Control:
    """A control message between a supervisor and its worker (not relayed further)."""

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CONTROL_KINDS[cls.kind] = cls

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Control:
        return cls(**data)


# -- supervisor to worker ----------------------------------------------------------------


@dataclass(frozen=True)
class StartRun(Control):
    """The worker's run: it starts its pytest session (a standby worker waits for it)."""

    kind: ClassVar[str] = "start_run"
    spec: RunSpec
    protocol: int = PROTOCOL_VERSION

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> StartRun:
        return cls(spec=RunSpec(**data["spec"]), protocol=data["protocol"])


@dataclass(frozen=True)
class RunBatch(Control):
    """Run these cases, in this order."""

    kind: ClassVar[str] = "run"
    batch: Batch

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> RunBatch:
        return cls(batch=Batch(**data["batch"]))


@dataclass(frozen=True)
class Finish(Control):
    """The run is over: tear down what is still set up, then end the session."""

    kind: ClassVar[str] = "finish"


@dataclass(frozen=True)
class CaptureFdTaken(Control):
    """The answer to :class:`CaptureFd`: the supervisor holds pytest's capture files."""

    kind: ClassVar[str] = "capture_fd_taken"


# -- worker to supervisor ----------------------------------------------------------------


@dataclass(frozen=True)
class Ready(Control):
    """The session is collected and waits for batches."""

    kind: ClassVar[str] = "ready"
    collected: int


@dataclass(frozen=True)
class Stale(Control):
    """Instead of :class:`Ready`: code imported before the run came in has changed since
    (a worker started ahead of its run); start a fresh worker instead."""

    kind: ClassVar[str] = "stale"


@dataclass(frozen=True)
class WrongProtocol(Control):
    """Instead of :class:`Ready`: the supervisor speaks another :data:`PROTOCOL_VERSION`
    (``protocol`` is the worker's)."""

    kind: ClassVar[str] = "wrong_protocol"
    protocol: int


@dataclass(frozen=True)
class CaptureFd(Control):
    """Descriptors of the worker that reach pytest's capture files (inside a case's
    setup): with them the supervisor can quote what a case wrote before it crashed. The
    worker waits for :class:`CaptureFdTaken`."""

    kind: ClassVar[str] = "capture_fd"
    stdout: int
    stderr: int


@dataclass(frozen=True)
class BatchDone(Control):
    """Every case of the current batch has been handled."""

    kind: ClassVar[str] = "batch_done"


@dataclass(frozen=True)
class TeardownDone(Control):
    """The end-of-run teardown is done and reported."""

    kind: ClassVar[str] = "teardown_done"


@dataclass(frozen=True)
class WorkerFinished(Control):
    """After its ``pytest_sessionfinish``: the worker's ``config.workeroutput``
    (channel-encoded, see :mod:`pytest_gold.protocol.xdistcompat`)."""

    kind: ClassVar[str] = "worker_finished"
    workeroutput: dict[str, Any]
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Exited(Control):
    """The worker's pytest session has ended."""

    kind: ClassVar[str] = "exited"
    status: int


#: Everything that travels between a supervisor and its worker.
Message = Control | Event


def encode(message: Message) -> dict[str, Any]:
    """A JSON-compatible dict, with the message's ``kind``."""
    if isinstance(message, Event):
        return to_wire(message)
    fields = _field_names(type(message))  # type: ignore[arg-type]  # classes are hashable
    data = {name: _encode_value(getattr(message, name)) for name in fields}
    data["kind"] = message.kind
    return data


def _encode_value(value: Any) -> Any:
    if isinstance(value, RunSpec | Batch):
        return to_wire(value)
    return value


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


class UnknownMessage(ValueError):
    """A message of a kind this version does not know (the other side speaks another
    :data:`PROTOCOL_VERSION`)."""


def decode(data: dict[str, Any]) -> Message:
    """The message :func:`encode` made ``data`` from."""
    if is_event(data):
        return event_from_wire(data)
    kind = data.get("kind")
    cls = _CONTROL_KINDS.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise UnknownMessage(f"unknown message kind {kind!r}")
    rest = {name: value for name, value in data.items() if name != "kind"}
    return cls.from_wire(rest)


class Channel:
    """Messages over the socket a supervisor shares with its worker."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._poller: select.poll | None = None

    #: A message is being sent: a stop request must not cut it (see the worker's plugin).
    sending = False

    def send(self, message: Message) -> None:
        data = message.encoded if isinstance(message, Event) else None
        if data is None:
            data = json.dumps(encode(message)).encode()
        self.sending = True
        try:
            self.connection.send_bytes(data)
        finally:
            self.sending = False

    def recv_data(self) -> dict[str, Any]:
        """The next message as it came (see :meth:`recv`)."""
        data: dict[str, Any] = json.loads(self.connection.recv_bytes())
        return data

    def recv(self) -> Message:
        """The next message; an event keeps the bytes it came in (``Event.encoded``),
        which the supervisor passes on to the controller as they are."""
        encoded = self.connection.recv_bytes()
        message = decode(json.loads(encoded))
        if isinstance(message, Event):
            object.__setattr__(message, "encoded", encoded)  # frozen, and not a field
        return message

    def poll(self, timeout: float) -> bool:
        # One poll object for the channel's life: Connection.poll builds and registers a
        # selector at every call, a tenth of an engine's CPU time on a sweep of fast cases.
        # (A Connection reads whole messages straight from its descriptor: no buffer to
        # look at first.)
        if self.connection.closed:
            raise OSError("handle is closed")  # as Connection.poll says
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.connection.fileno(), select.POLLIN)
        return bool(self._poller.poll(max(0.0, timeout) * MILLISECONDS))

    def close(self) -> None:
        self._poller = None
        self.connection.close()
