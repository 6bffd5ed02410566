"""The in-place status line: its terminal sequences rendered by a terminal emulator (pyte),
and an inner ``pytest --gold`` on a pseudo-terminal."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

import pyte
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_gold.controller.statusline import ERASE_BELOW, StatusLine, draw_sequence, in_place

COLUMNS, ROWS = 40, 6


class FakeWriter:
    """Writes like pytest's TerminalWriter and tracks the width of its current line."""

    def __init__(self, wire: list[str], width: int = COLUMNS) -> None:
        self.wire = wire
        self.fullwidth = width
        self.width_of_current_line = 0

    def write(self, text: str) -> None:
        self.wire.append(text)
        if "\n" in text:
            self.width_of_current_line = len(text.rsplit("\n", 1)[-1])
        else:
            self.width_of_current_line += len(text)

    def flush(self) -> None:
        pass


class WireStream(io.StringIO):
    def __init__(self, wire: list[str]) -> None:
        super().__init__()
        self.wire = wire

    def write(self, text: str) -> int:
        self.wire.append(text)
        return len(text)


def render(wire: list[str], rows: int = ROWS) -> pyte.HistoryScreen:
    screen = pyte.HistoryScreen(COLUMNS, rows, history=1000)
    # A tty turns "\n" into "\r\n" (onlcr) on the way to the terminal.
    pyte.Stream(screen).feed("".join(wire).replace("\n", "\r\n"))
    return screen


def text_of(screen: pyte.HistoryScreen) -> list[str]:
    """Every line, scrolled off or on display, without trailing blanks and blank lines."""
    rows = [
        "".join(line[x].data for x in range(screen.columns)).rstrip() for line in screen.history.top
    ]
    rows += [line.rstrip() for line in screen.display]
    while rows and not rows[-1]:
        rows.pop()
    return rows


pytest_output = st.lists(
    st.one_of(
        st.text(alphabet=".FsE", min_size=1, max_size=12),
        st.sampled_from(["\n", "test_sweep.py ", " [ 50%]\n", "PASSED\n", "x" * 50]),
    ),
    max_size=25,
)
actions = st.lists(
    st.tuples(pytest_output, st.sampled_from(["show", "clear", "none"])), max_size=12
)


@settings(max_examples=200, deadline=None)
@given(actions)
def test_the_status_line_never_changes_pytests_output(steps):
    """Drawn, redrawn and erased around pytest's writes, scrolling at the bottom of the
    screen included: once erased, the terminal shows what pytest wrote, the cursor where
    pytest left it."""
    with_status: list[str] = []
    plain: list[str] = []
    writer, reference = FakeWriter(with_status), FakeWriter(plain)
    status = StatusLine(writer, WireStream(with_status))
    for number, (chunks, action) in enumerate(steps):
        status.clear()  # the controller does this before anything is written
        for chunk in chunks:
            writer.write(chunk)
            reference.write(chunk)
        if action == "show":
            status.show(f"gold: {number}/12 cases done, elapsed 0:00:0{number % 10}")
            screen = render(with_status)
            if status.shown:
                below = screen.display[screen.cursor.y + 1]
                assert below.startswith(f"gold: {number}/12 cases done")
                assert screen.cursor.x == render(plain).cursor.x
        elif action == "clear":
            status.clear()
    status.clear()
    screen, expected = render(with_status), render(plain)
    assert text_of(screen) == text_of(expected)
    assert screen.cursor.x == expected.cursor.x


def test_status_is_truncated_to_the_width_and_skipped_at_the_right_edge():
    sequence = draw_sequence("g" * 100, column=3, width=COLUMNS)
    assert sequence is not None and "g" * (COLUMNS - 1) in sequence
    assert "g" * COLUMNS not in sequence
    assert draw_sequence("gold", column=COLUMNS - 1, width=COLUMNS) is None


def test_in_place_only_on_a_real_terminal():
    pipe = io.StringIO()
    assert not in_place("auto", pipe, {"TERM": "xterm"})
    assert in_place("inplace", pipe, {})
    _, slave = pty.openpty()
    with os.fdopen(slave, "w") as tty:
        assert in_place("auto", tty, {"TERM": "xterm"})
        assert not in_place("auto", tty, {"TERM": "dumb"})
        assert not in_place("lines", tty, {"TERM": "xterm"})


SLOW_SWEEP = """
    import time
    import pytest

    @pytest.mark.parametrize("i", range(6))
    def test_case(i):
        time.sleep(0.5)
"""


def run_on_a_terminal(
    cwd, args: list[str], timeout: float = 120
) -> tuple[str, list[str], list[str]]:
    """Run an inner pytest with a pseudo-terminal (100 x 30) as its stdout; return what it
    wrote, the status lines seen below the cursor while it ran, and the lines ever seen
    with part of a status line overwritten by something else."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100", "LINES": "30"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    screen = pyte.Screen(100, 30)
    stream = pyte.ByteStream(screen)
    output = bytearray()
    seen: list[str] = []
    garbled: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other end is closed
                break
            if not chunk:
                break
            output += chunk
            stream.feed(chunk)
            if screen.cursor.y + 1 < screen.lines:
                below = screen.display[screen.cursor.y + 1].strip()
                if below.startswith("gold: ") and "cases done" in below:
                    seen.append(below)
            garbled += [
                line
                for line in screen.display
                if "cases done" in line and not line.startswith("gold: ")
            ]
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return output.decode(errors="replace"), seen, garbled


@pytest.mark.cluster
def test_status_line_in_place_on_a_terminal(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(test_a=SLOW_SWEEP, test_b=SLOW_SWEEP)
    output, seen, garbled = run_on_a_terminal(
        pytester.path, [*gold_args, "-p", "no:cacheprovider", "--gold-order=collection"]
    )
    assert "12 passed" in output, output
    assert ERASE_BELOW in output
    assert seen, f"no status line was seen below pytest's output:\n{output}"
    assert any("engines 2/2 busy" in line for line in seen), seen
    # Erased before pytest writes (here: the new line for test_b.py), never overwritten.
    assert not garbled, garbled
    # Pytest's own progress lines are whole and no status line is left at the end.
    screen = pyte.Screen(100, 30)
    pyte.ByteStream(screen).feed(output.encode())
    lines = [line.rstrip() for line in screen.display]
    assert "test_a.py ......" in "\n".join(lines), lines
    assert "test_b.py ......" in "\n".join(lines), lines
    assert not [line for line in lines if "cases done" in line], lines


@pytest.mark.cluster
def test_status_lines_mode_on_a_terminal_prints_plain_lines(pytester: pytest.Pytester, gold_args):
    pytester.makepyfile(test_a=SLOW_SWEEP, test_b=SLOW_SWEEP)
    output, _, _ = run_on_a_terminal(
        pytester.path,
        [
            *gold_args,
            "-p",
            "no:cacheprovider",
            "--gold-status-line=lines",
            "--gold-status-interval=0.5",
        ],
    )
    assert "12 passed" in output, output
    assert ERASE_BELOW not in output
    assert "cases done" in output


def test_bad_status_line_mode_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--gold", "--gold-status-line=fancy")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--gold-status-line (ini gold_status_line) must be one of auto, inplace, lines*"]
    )
