"""The status line kept in place below pytest's own output on a terminal.

pytest's progress output is not line-based: in the default mode it appends dots to a
line that is not finished. So the status line is drawn on the line *below* the cursor
and the cursor is put back where pytest left it; before pytest (or pytest-gold) writes
anything, the line is erased again, so pytest's output is exactly what it would be
without it. Only cursor movement and erase sequences that every VT100-like terminal
knows are used.
"""

from __future__ import annotations

import os
from typing import Protocol, TextIO

from pytest_gold.settings import STATUS_AUTO, STATUS_IN_PLACE

#: Seconds between recomputations of the status shown in place.
REDRAW_SECONDS = 0.5

#: Erase from the cursor to the end of the screen: the status line below the cursor.
ERASE_BELOW = "\x1b[J"
_ERASE_LINE_END = "\x1b[K"
_CURSOR_UP = "\x1b[A"


class LineWriter(Protocol):
    """What is needed of pytest's TerminalWriter (``config.get_terminal_writer()``)."""

    @property
    def fullwidth(self) -> int: ...

    @property
    def width_of_current_line(self) -> int: ...

    def flush(self) -> None: ...


def is_terminal(stream: TextIO, environ: dict[str, str] | os._Environ[str]) -> bool:
    """Can ``stream`` take cursor movement? A tty whose TERM is not ``dumb``."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False
    return tty and environ.get("TERM", "") != "dumb"


def in_place(mode: str, stream: TextIO, environ: dict[str, str] | os._Environ[str]) -> bool:
    if mode == STATUS_IN_PLACE:
        return True
    return mode == STATUS_AUTO and is_terminal(stream, environ)


def draw_sequence(text: str, column: int, width: int) -> str | None:
    """What draws ``text`` on the line below the cursor, at ``column`` of a terminal
    ``width`` wide, and puts the cursor back; ``None`` when the cursor is at the right
    edge, where terminals differ in where the next character goes."""
    if width < 2 or column >= width - 1:
        return None
    forward = f"\x1b[{column}C" if column else ""
    # "\n" scrolls when the cursor is on the last line, so going up again always
    # lands on pytest's line; "\r" because a tty in raw mode does not add one.
    return f"\n\r{text[: width - 1]}{_ERASE_LINE_END}{_CURSOR_UP}\r{forward}"


class StatusLine:
    """The line itself: :meth:`show` draws or redraws it, :meth:`clear` erases it."""

    def __init__(self, writer: LineWriter, stream: TextIO) -> None:
        self.writer = writer
        self.stream = stream
        self.text = ""
        self.shown = False

    @property
    def width(self) -> int:
        """Characters the status may have (one column is left free)."""
        return max(self.writer.fullwidth - 1, 1)

    def show(self, text: str | None = None) -> None:
        """Draw ``text`` (or the last text again)."""
        if text is not None:
            self.text = text
        if not self.text:
            return
        self.writer.flush()  # what pytest wrote goes first
        sequence = draw_sequence(
            self.text, self.writer.width_of_current_line, self.writer.fullwidth
        )
        if sequence is None:
            self.clear()
            return
        self.stream.write((ERASE_BELOW if self.shown else "") + sequence)
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.writer.flush()
            self.stream.write(ERASE_BELOW)
            self.stream.flush()
            self.shown = False


class NoStatusLine:
    """Stands in for :class:`StatusLine` when the status is not shown in place."""

    shown = False
    width = 0

    def show(self, text: str | None = None) -> None:
        pass

    def clear(self) -> None:
        pass
