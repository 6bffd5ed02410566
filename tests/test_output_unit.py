"""Unit tests of live output (-s): the engine's spool and the controller's reassembly
(pure: no cluster), and of how a dead worker's cause is put."""

from __future__ import annotations

import itertools
import signal
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_gold.controller.liveoutput import EngineStream, LiveOutput
from pytest_gold.engine.outputspool import OutputSpool
from pytest_gold.engine.workerdeath import describe_death, excerpt, exit_summary
from pytest_gold.protocol.outputwire import OUTPUT_MIME


def chunk_message(offset: int, data: bytes) -> dict:
    """What the engine publishes for a chunk (a display_data content)."""
    return {
        "data": {OUTPUT_MIME: data.decode("latin-1")},
        "metadata": {OUTPUT_MIME: {"offset": offset}},
    }


class Terminal:
    def __init__(self) -> None:
        self.text = ""
        self.notices: list[str] = []

    def write(self, text: str) -> None:
        self.text += text

    def notice(self, text: str) -> None:
        self.notices.append(text)


def shown_lines(text: str, tag: str = "h:e1") -> list[str]:
    lines = text.splitlines()
    assert all(line.startswith(f"[{tag}] ") for line in lines), lines[:3]
    return [line[len(tag) + 3 :] for line in lines]


# The stream: what a run's workers wrote on one engine (any bytes, any line lengths).
streams = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30).map(
            lambda t: t.replace("\r", "").encode()
        ),
        st.binary(max_size=10),
    ),
    max_size=30,
).map(lambda parts: b"\n".join(parts) + b"\n")


@settings(max_examples=200, deadline=None)
@given(stream=streams, data=st.data())
def test_every_byte_once_in_order_whatever_iopub_does(stream: bytes, data: st.DataObject):
    """Chunks cut anywhere (inside a UTF-8 character too), delivered out of order, twice
    or never: the terminal shows exactly what a plain run would, each line prefixed."""
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=12))))
    bounds = [0, *cuts, len(stream)]
    chunks = [(a, stream[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
    delivered = data.draw(st.permutations(chunks))
    dropped = data.draw(st.sets(st.integers(0, max(len(delivered) - 1, 0)), max_size=4))
    twice = data.draw(st.sets(st.integers(0, max(len(delivered) - 1, 0)), max_size=4))
    outputs = []
    for index, (offset, piece) in enumerate(delivered):
        if index not in dropped:
            outputs.append(chunk_message(offset, piece))
        if index in twice:
            outputs.append(chunk_message(offset, piece))
    terminal = Terminal()
    live = LiveOutput(terminal.write, terminal.notice, wait_seconds=0)
    metadata = {"outputs": outputs}
    reads = []

    def fetch(start: int) -> tuple[int, bytes]:  # the engine's spool: at most 7 bytes
        reads.append(start)
        return start, stream[start : start + 7]

    live.take(metadata, 1, "h:e1")
    live.settle(metadata, 1, "h:e1", len(stream), "/tmp/spool", fetch)
    expected = stream.decode("utf-8", errors="replace").splitlines()
    assert shown_lines(terminal.text) == expected
    assert not terminal.notices
    assert not outputs  # taken: the client does not keep them


def test_a_partial_line_waits_for_its_end_then_shows_at_the_batch_end():
    stream = EngineStream("h:e0")
    assert stream.add(0, b"progress: 1") == ""
    assert stream.add(11, b"0%\nstep") == "[h:e0] progress: 10%\n"
    assert stream.rest() == "[h:e0] step\n"
    assert stream.rest() == ""


def test_output_an_engine_cannot_give_is_counted_and_located():
    terminal = Terminal()
    live = LiveOutput(terminal.write, terminal.notice)
    metadata = {"outputs": [chunk_message(0, b"first\n")]}

    def fetch(start: int) -> tuple[int, bytes]:
        raise TimeoutError("no answer")

    live.settle(metadata, 3, "gold3:e3", 100, "/tmp/pytest-gold-output-x.log", fetch)
    assert shown_lines(terminal.text, "gold3:e3") == ["first"]
    (notice,) = terminal.notices
    assert "94 bytes of the output of gold3:e3 could not be read" in notice
    assert "/tmp/pytest-gold-output-x.log on gold3" in notice


def test_a_lost_engine_says_how_much_output_went_with_it():
    terminal = Terminal()
    live = LiveOutput(terminal.write, terminal.notice)
    future = SimpleNamespace(
        metadata={"outputs": [chunk_message(0, b"a\n"), chunk_message(10, b"after gap\n")]}
    )
    live.lost(future, 2, "h:e2")
    assert shown_lines(terminal.text, "h:e2") == ["a", "after gap"]
    assert terminal.notices == [
        "gold: 8 bytes of the output of h:e2 were lost with its engine; what came after "
        "them follows"
    ]


def test_spool_keeps_a_batch_until_the_next_one_starts():
    spool = OutputSpool("run")
    try:
        written = [b"one\ntwo\n"]  # the worker's output file, read as a file is
        worker = SimpleNamespace(read_output=lambda max_bytes: written.pop() if written else b"")
        spool.pump(worker, everything=True)  # outside an engine: nothing is published
        assert (spool.end, spool.read(0, 100)) == (8, (0, b"one\ntwo\n"))
        assert spool.read(4, 2) == (4, b"tw")
        spool.settle()
        spool.append(b"three\n")
        assert spool.read(0, 100) == (8, b"three\n")  # settled bytes are gone
        assert spool.end == 14
    finally:
        spool.close()


def test_exit_summary_names_the_signal_and_what_it_means():
    assert exit_summary(-signal.SIGSEGV) == "killed by SIGSEGV (Segmentation fault)"
    assert exit_summary(3) == "exited with code 3"


def test_long_output_is_quoted_head_and_tail_saying_how_much_is_left_out(tmp_path):
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    text = excerpt(str(log), 0, 40).splitlines()
    assert text[:10] == [f"line {i}" for i in range(10)]
    assert text[10] == "[... 60 lines left out ...]"
    assert text[11:] == [f"line {i}" for i in range(70, 100)]


def test_output_that_was_not_captured_is_quoted_once(tmp_path):
    """With -s, pytest does not capture: the case's stdout and stderr are the worker's
    own output file. It is quoted once, or pointed to when it went out as live output."""
    log = tmp_path / "log"
    log.write_text("solver: step 41\nFatal Python error: Segmentation fault\n")
    with open(log, "rb") as stdout, open(log, "rb") as stderr:
        captured = {"stdout": stdout, "stderr": stderr}
        quoted = describe_death(-signal.SIGSEGV, captured, str(log), 0, 40)
        assert str(quoted).count("Fatal Python error") == 1
        assert "solver: step 41" in quoted.details
        streamed = describe_death(-signal.SIGSEGV, captured, str(log), 0, 40, streamed_as="h:e1")
        assert "Fatal Python error" not in str(streamed)
        assert "live output above, in the lines tagged [h:e1]" in streamed.details
        assert streamed.summary == "killed by SIGSEGV (Segmentation fault)"


def test_ctrl_c_while_output_is_shown_waits_for_it():
    """A KeyboardInterrupt must not fall between taking a chunk from ipyparallel and
    writing it: it comes once the chunk is on the terminal."""
    import os

    terminal = Terminal()

    def write(text: str) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the text is being written
        terminal.write(text)

    live = LiveOutput(write, terminal.notice)
    metadata = {"outputs": [chunk_message(0, b"one\n"), chunk_message(4, b"two\n")]}
    try:
        live.take(metadata, 0, "h:e0")
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the KeyboardInterrupt was lost")
    assert shown_lines(terminal.text, "h:e0") == ["one", "two"]
