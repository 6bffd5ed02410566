"""The supervisor-worker protocol: every message survives the trip, versions are compared
(pure: no cluster, no process)."""

from __future__ import annotations

import json
import pickle
import socket
from multiprocessing.connection import Connection

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_gold.policy.enginecheck import Expected, advice, mismatches
from pytest_gold.protocol import control
from pytest_gold.protocol.control import (
    PROTOCOL_VERSION,
    BatchDone,
    CaptureFd,
    CaptureFdTaken,
    Channel,
    Exited,
    Finish,
    Message,
    Ready,
    RunBatch,
    Stale,
    StartRun,
    TeardownDone,
    UnknownMessage,
    WorkerFinished,
    WrongProtocol,
    decode,
    encode,
)
from pytest_gold.protocol.messages import (
    EVENTS_BLOB,
    Batch,
    BatchResult,
    EngineInfo,
    Event,
    ExitRequested,
    LogFinish,
    LogStart,
    NotRun,
    ReportEvent,
    RunSpec,
    SuitePropertyEvent,
    WarningEvent,
    WorkerCrashed,
    engine_from_wire,
    is_event,
    result_from_wire,
    result_to_wire,
    to_wire,
)

text = st.text(max_size=20)  # lone surrogates too: JSON escapes them
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(text, json_values, max_size=4)
lines = st.integers(min_value=0) | st.none()
location = st.tuples(text, lines, text)

run_specs = st.builds(
    RunSpec,
    run_id=text,
    invocation_dir=text,
    rootdir=text,
    args=st.lists(text, max_size=3),
    collect_paths=st.lists(text, max_size=3),
    collect_args=st.lists(text, max_size=3),
    inifile=text,
    env=st.dictionaries(text, text, max_size=3),
    default_env=st.dictionaries(text, text, max_size=3),
    engine_count=st.integers(min_value=1),
    stream_output=st.booleans(),
    end_leftovers=st.booleans(),
    controller=json_objects,
    workerinput=json_objects,
    shares_loopback=st.booleans(),
)
batches = st.builds(
    Batch,
    nodeids=st.lists(text, max_size=4),
    lookahead=text | st.none(),
    time_limits=st.dictionaries(text, st.floats(min_value=0, allow_nan=False), max_size=3),
)

#: One strategy per message kind; the test below checks that none is missing.
STRATEGIES: dict[type, st.SearchStrategy[Message]] = {
    StartRun: st.builds(StartRun, spec=run_specs, protocol=st.integers()),
    RunBatch: st.builds(RunBatch, batch=batches),
    Finish: st.just(Finish()),
    CaptureFdTaken: st.just(CaptureFdTaken()),
    Ready: st.builds(Ready, collected=st.integers(min_value=0)),
    Stale: st.just(Stale()),
    WrongProtocol: st.builds(WrongProtocol, protocol=st.integers()),
    CaptureFd: st.builds(CaptureFd, stdout=st.integers(0, 1024), stderr=st.integers(0, 1024)),
    BatchDone: st.just(BatchDone()),
    TeardownDone: st.just(TeardownDone()),
    WorkerFinished: st.builds(WorkerFinished, workeroutput=json_objects, problems=st.lists(text)),
    Exited: st.builds(Exited, status=st.integers(-255, 255)),
    LogStart: st.builds(LogStart, nodeid=text, location=location, log_offset=st.integers(0)),
    LogFinish: st.builds(LogFinish, nodeid=text, location=location),
    ReportEvent: st.builds(ReportEvent, data=json_objects),
    WarningEvent: st.builds(
        WarningEvent,
        nodeid=text,
        when=text,
        message=text,
        category_module=text,
        category_name=text,
        filename=text,
        lineno=st.integers(0),
    ),
    SuitePropertyEvent: st.builds(SuitePropertyEvent, name=text, value=text),
    ExitRequested: st.builds(ExitRequested, nodeid=text, reason=text, returncode=lines),
    NotRun: st.builds(
        NotRun, nodeids=st.lists(text, max_size=3), reason=text, cut_short=st.lists(text)
    ),
    WorkerCrashed: st.builds(WorkerCrashed, nodeid=text | st.none(), cause=text),
}
messages = st.one_of(*STRATEGIES.values())


def test_every_message_kind_has_a_strategy():
    kinds = {*control._CONTROL_KINDS.values(), *Event.__subclasses__()}
    assert kinds == set(STRATEGIES)


@given(messages)
def test_a_message_comes_back_as_it_was_sent(message: Message):
    data = json.loads(json.dumps(encode(message)))
    assert data["kind"] == message.kind
    assert is_event(data) == isinstance(message, Event)
    assert decode(data) == message


@given(st.lists(messages, min_size=1, max_size=5))
def test_messages_cross_a_channel_in_order(sent: list[Message]):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sender = Channel(Connection(ours.detach()))
        receiver = Channel(Connection(theirs.detach()))
        for message in sent:
            sender.send(message)
        assert [receiver.recv() for _ in sent] == sent
        sender.close()
        receiver.close()


@given(st.lists(messages, min_size=1, max_size=5))
def test_a_batch_result_carries_the_events_as_they_came_from_the_worker(sent: list[Message]):
    """An engine passes on the bytes its worker sent (one JSON array, not objects pickled
    one by one); events it made itself are encoded there; the controller reads both."""
    events = [message for message in sent if isinstance(message, Event)]
    made_here = NotRun(nodeids=["t.py::b"], reason="interrupted")
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sender = Channel(Connection(ours.detach()))
        receiver = Channel(Connection(theirs.detach()))
        for event in events:
            sender.send(event)
        received = [receiver.recv() for _ in events]
        sender.close()
        receiver.close()
    assert all(isinstance(event, Event) and event.encoded for event in received)
    engine = EngineInfo(3, "gold3", 42, "3.11.7", "/usr/bin/python3", "linux")
    result = BatchResult(engine=engine, events=[*received, made_here], leftovers=["1 sleep"])
    wire = result_to_wire(result)
    assert isinstance(wire[EVENTS_BLOB], bytes) and "events" not in wire
    assert result_from_wire(pickle.loads(pickle.dumps(wire))) == result


def test_an_unknown_kind_is_refused_by_name():
    with pytest.raises(UnknownMessage, match="'teleport'"):
        decode({"kind": "teleport"})


def test_start_run_and_wrong_protocol_keep_their_shape():
    """What two versions must always read of each other (see PROTOCOL_VERSION)."""
    spec = RunSpec("r", "/d", "/d", [], [])
    assert encode(StartRun(spec=spec))["protocol"] == PROTOCOL_VERSION
    assert encode(WrongProtocol(protocol=7)) == {"kind": "wrong_protocol", "protocol": 7}


# -- the engine check compares protocol versions ------------------------------------------

EXPECTED = Expected(
    python="3.11.7", pytest="9.2.0", pytest_gold="0.1.0", rootdir="/proj", invocation_dir="/proj"
)


def engine_reporting(**changes) -> EngineInfo:
    fields = dict(
        engine_id=3,
        host="gold4",
        pid=1,
        python="3.11.2",
        executable="/usr/bin/python3",
        platform="linux",
        pytest_gold="0.1.0",
        pytest="9.2.0",
        protocol=PROTOCOL_VERSION,
    )
    return EngineInfo(**{**fields, **changes})


def test_the_run_expects_its_own_protocol_version():
    assert EXPECTED.protocol == PROTOCOL_VERSION
    assert mismatches(EXPECTED, engine_reporting()) == []


def test_an_engine_speaking_another_protocol_is_named_with_both_versions():
    """The package versions are equal (a development commit): the protocol tells."""
    other = PROTOCOL_VERSION + 1
    problems = mismatches(EXPECTED, engine_reporting(protocol=other))
    assert problems == [
        f"pytest-gold protocol version {other} where this run speaks version "
        f"{PROTOCOL_VERSION} (reinstall pytest-gold on that host and restart its engines)"
    ]
    assert advice(problems).startswith("reinstall pytest-gold on those hosts")
    assert "install the same Python" not in advice(problems)


def test_an_engine_older_than_the_versioned_protocol_is_left_out():
    """An engine of before PROTOCOL_VERSION reports none: its EngineInfo has no field."""
    old = to_wire(engine_reporting())
    del old["protocol"]
    problems = mismatches(EXPECTED, engine_from_wire(old))
    assert problems[0].startswith("pytest-gold protocol version none (older than")


def test_a_newer_engine_reaches_the_check_whatever_it_reports():
    """Fields this version does not know are dropped, not a TypeError in the controller."""
    newer = {**to_wire(engine_reporting(protocol=PROTOCOL_VERSION + 5)), "gpu_count": 4}
    problems = mismatches(EXPECTED, engine_from_wire(newer))
    assert problems and f"version {PROTOCOL_VERSION + 5}" in problems[0]


def test_other_packages_get_their_own_advice_next_to_the_protocol():
    problems = mismatches(EXPECTED, engine_reporting(protocol=0, pytest="8.0.0"))
    steps = advice(problems)
    assert "reinstall pytest-gold" in steps and "install the same Python" in steps
