"""Typed messages between the controller, the engine supervisors and the workers.

Everything that crosses a process boundary is one of these dataclasses, turned into a
plain JSON-compatible ``dict`` with :func:`to_wire` and back with :func:`from_wire`.
Plain dicts travel well through ipyparallel (no pickled classes, small hub database)
and through the pipe between an engine and its worker process.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: The ``kind`` of every event a worker produces, mapped to its class (filled below).
#: An engine's environment variable naming its host in reports (SSH host aliases, or
#: hosts that share a hostname); set per host by ``python -m pytest_gold profile create``.
HOST_ENV = "PYTEST_GOLD_HOST"
_EVENT_KINDS: dict[str, type[Event]] = {}


@dataclass(frozen=True)
class EngineInfo:
    """Where a case runs: one ipyparallel engine and the machine it lives on."""

    engine_id: int
    host: str
    pid: int
    python: str
    executable: str
    platform: str
    pytest_gold: str = ""
    pytest: str = ""
    #: The engine's ``pytest_gold.protocol.control.PROTOCOL_VERSION`` (0: an engine older
    #: than the versioned protocol); the engine check compares it with the controller's.
    protocol: int = 0
    #: Engine check: the controller's rootdir exists there (a shared filesystem).
    rootdir_visible: bool = True
    #: Engine check: the invocation directory can be the worker's cwd there.
    cwd_usable: bool = True
    #: The machine and pid namespace the engine runs in (see ``engine.this_machine``):
    #: where it equals the controller's, ``pid`` can be signalled directly.
    machine: str = ""
    #: The signal that interrupts this run's batches on the engine (0: the shared one,
    #: which interrupts whatever batch runs); given by the engine check.
    interrupt_signal: int = 0
    #: Engine check: the Slurm job the engine runs in (``""``: none; ``12_3`` for a job
    #: array's task) and when that job ends at the latest, in seconds since the epoch
    #: (``None``: no time limit known). See :mod:`pytest_gold.engine.slurmjob`.
    slurm_job: str = ""
    job_end: float | None = None

    @property
    def tag(self) -> str:
        """Short label shown in front of results, e.g. ``gold3:e7``."""
        return f"{self.host}:e{self.engine_id}"


@dataclass(frozen=True)
class RunSpec:
    """What a worker needs to recreate the controller's pytest session on an engine."""

    run_id: str
    invocation_dir: str
    rootdir: str
    #: The controller's command-line arguments, so conftest options and ini overrides apply.
    args: list[str]
    #: Paths of the selected cases and their collectors: the worker collects nothing else.
    collect_paths: list[str]
    #: The arguments the controller's collection started from (its ``config.args``): the
    #: worker collects from them too, so that node ids are the same (see
    #: :mod:`pytest_gold.protocol.collecting`).
    collect_args: list[str] = field(default_factory=list)
    #: The controller's configuration file (``config.inipath``), if it has one.
    inifile: str = ""
    #: Set in the worker's environment (the user's gold_env / --gold-env).
    env: dict[str, str] = field(default_factory=dict)
    #: Set unless the engine's own environment already has them.
    default_env: dict[str, str] = field(default_factory=dict)
    engine_count: int = 1
    #: ``-s``: what cases print is relayed to the controller's terminal as it happens.
    stream_output: bool = False
    #: End the processes cases leave running when their worker ends (``--gold-leftovers``).
    end_leftovers: bool = True
    #: The controller's ``pytest`` process (``protocol.identity.ControllerId`` fields): an engine
    #: on its machine ends the run's worker as soon as it is gone.
    controller: dict[str, Any] = field(default_factory=dict)
    #: The worker's ``config.workerinput``, as the controller's plugins filled it for
    #: this engine (pytest-xdist's protocol, see :mod:`pytest_gold.protocol.xdistcompat`).
    workerinput: dict[str, Any] = field(default_factory=dict)
    #: Whether 127.0.0.1 on the engine's machine is the controller's.
    shares_loopback: bool = True


@dataclass(frozen=True)
class Batch:
    """Cases sent to one engine as one ipyparallel task."""

    nodeids: list[str]
    #: The case the controller expects to dispatch next anywhere; lets the worker tear down
    #: fixtures exactly as a plain run would after the batch's last case. ``None`` at the end.
    lookahead: str | None
    #: Run-time limit in seconds of each case that has one (--gold-timeout, gold marker).
    time_limits: dict[str, float] = field(default_factory=dict)


class Event:
    """Something a worker tells the controller; replayed there through pytest's hooks."""

    kind: ClassVar[str]
    #: The event's JSON as the worker sent it (see :func:`result_to_wire`), when it came
    #: from a worker unchanged; not a dataclass field (Event is not a dataclass).
    encoded: bytes | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _EVENT_KINDS[cls.kind] = cls


@dataclass(frozen=True)
class LogStart(Event):
    kind: ClassVar[str] = "logstart"
    nodeid: str
    location: tuple[str, int | None, str]
    #: Where the worker's own output (its log) stood when the case started: a crash report
    #: quotes what came after. Taken by the worker, so it cannot race with the crash.
    log_offset: int = 0


@dataclass(frozen=True)
class ReportEvent(Event):
    """One serialized ``TestReport`` (pytest's own serializable form)."""

    kind: ClassVar[str] = "report"
    data: dict[str, Any]


@dataclass(frozen=True)
class LogFinish(Event):
    kind: ClassVar[str] = "logfinish"
    nodeid: str
    location: tuple[str, int | None, str]


@dataclass(frozen=True)
class WarningEvent(Event):
    kind: ClassVar[str] = "warning"
    nodeid: str
    when: str
    message: str
    category_module: str
    category_name: str
    filename: str
    lineno: int


@dataclass(frozen=True)
class SuitePropertyEvent(Event):
    """A ``record_testsuite_property`` call made by a case."""

    kind: ClassVar[str] = "suite_property"
    name: str
    value: str


@dataclass(frozen=True)
class ExitRequested(Event):
    """A case called ``pytest.exit()``: the whole run stops, as in a plain run."""

    kind: ClassVar[str] = "exit"
    nodeid: str
    reason: str
    returncode: int | None


@dataclass(frozen=True)
class NotRun(Event):
    """Cases of a batch that the worker did not start (interrupted or stopped)."""

    kind: ClassVar[str] = "not_run"
    nodeids: list[str]
    reason: str
    #: Of those, the cases that had started and were cut short.
    cut_short: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WorkerCrashed(Event):
    """The worker process died; the supervisor already reported the case it was running."""

    kind: ClassVar[str] = "crashed"
    nodeid: str | None
    cause: str


@dataclass(frozen=True)
class BatchResult:
    """What an engine returns for a :class:`Batch` (or for the end-of-run teardown)."""

    engine: EngineInfo
    events: list[Event]
    #: With ``-s``: where the run's output stream on this engine ends after this result;
    #: the controller reads what it did not receive live from ``output_path`` there.
    output_end: int = 0
    output_path: str = ""
    #: ``PID COMMAND`` of each process that cases left running and the engine ended.
    leftovers: list[str] = field(default_factory=list)
    #: End of run only: the worker's ``config.workeroutput`` (channel-encoded, see
    #: :mod:`pytest_gold.protocol.xdistcompat`), ``None`` when its session did not finish.
    workeroutput: dict[str, Any] | None = None


def to_wire(message: Any) -> dict[str, Any]:
    """Return a JSON-compatible dict for any message dataclass (events carry their kind).

    Shallow: the values (report dicts, lists of node ids) are shared, not copied. They are
    not changed once in a message, and ``dataclasses.asdict``'s deep copy was a fifth of
    a worker's CPU time on a sweep of trivial cases.
    """
    data = {name: _wire_value(getattr(message, name)) for name in _field_names(type(message))}
    if isinstance(message, Event):
        data["kind"] = message.kind
    return data


def _wire_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_wire(value)
    if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
        return [to_wire(item) for item in value]
    return value


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def is_event(message: dict[str, Any]) -> bool:
    """Whether a worker message is an event (not a control message such as ``ready``)."""
    return message.get("kind") in _EVENT_KINDS


def event_from_wire(data: dict[str, Any]) -> Event:
    fields = dict(data)
    cls = _EVENT_KINDS[fields.pop("kind")]
    if "location" in fields:
        fields["location"] = tuple(fields["location"])
    return cls(**fields)


def engine_from_wire(data: dict[str, Any]) -> EngineInfo:
    """Fields this version does not know are dropped: an engine of another version still
    gets as far as the engine check, which says what differs."""
    known = _field_names(EngineInfo)
    return EngineInfo(**{name: value for name, value in data.items() if name in known})


def result_from_wire(data: dict[str, Any]) -> BatchResult:
    return BatchResult(
        engine=engine_from_wire(data["engine"]),
        events=[event_from_wire(event) for event in _wire_events(data)],
        output_end=data.get("output_end", 0),
        output_path=data.get("output_path", ""),
        leftovers=list(data.get("leftovers", [])),
        workeroutput=data.get("workeroutput"),
    )


#: The key of a :class:`BatchResult`'s events as one JSON array (see :func:`result_to_wire`).
EVENTS_BLOB = "events_blob"


def result_to_wire(result: BatchResult) -> dict[str, Any]:
    """Like :func:`to_wire`, with the events as one JSON array in bytes.

    What an engine returns: the events a worker sent are passed on as the bytes they came
    in (:attr:`Event.encoded`), not decoded into objects that ipyparallel pickles one by
    one; the controller decodes the array at once (:func:`result_from_wire`).
    """
    data = {name: getattr(result, name) for name in _field_names(BatchResult) if name != "events"}
    data["engine"] = to_wire(result.engine)
    parts = [
        event.encoded if event.encoded is not None else json.dumps(to_wire(event)).encode()
        for event in result.events
    ]
    data[EVENTS_BLOB] = b"[" + b",".join(parts) + b"]"
    return data


def _wire_events(data: dict[str, Any]) -> list[dict[str, Any]]:
    blob = data.get(EVENTS_BLOB)
    if blob is not None:
        events: list[dict[str, Any]] = json.loads(blob)
        return events
    return list(data["events"])


def spec_from_wire(data: dict[str, Any]) -> RunSpec:
    return RunSpec(**data)


def batch_from_wire(data: dict[str, Any]) -> Batch:
    return Batch(**data)
