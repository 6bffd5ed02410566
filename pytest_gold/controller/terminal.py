"""Where the controller writes: pytest's terminal, with the status line kept out of the way."""

from __future__ import annotations

import os
import sys

import pytest

from pytest_gold.controller.statusline import NoStatusLine, StatusLine, in_place


class Terminal:
    """Lines and case output on pytest's terminal (nothing without its terminal reporter).

    With -q only problems (lost engines, ...) and lines that are ``always`` shown appear.
    The status line (when shown in place) is erased before anything is written.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.status_line: StatusLine | NoStatusLine = NoStatusLine()

    def write_line(self, text: str, *, problem: bool = False, always: bool = False) -> None:
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None and (problem or always or self.config.get_verbosity() >= 0):
            self.status_line.clear()
            terminal.ensure_newline()
            if self.config.get_terminal_writer().width_of_current_line:
                terminal.write("\n")  # after progress dots
            terminal.write_line(text, yellow=problem)

    def notice(self, text: str) -> None:
        """A problem worth a line even with -q."""
        self.write_line(text, problem=True)

    def write_output(self, text: str) -> None:
        """What cases print (-s), as it comes."""
        if not text:
            return
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            sys.stdout.write(text)
            return
        self.status_line.clear()
        terminal.ensure_newline()
        if self.config.get_terminal_writer().width_of_current_line:
            terminal.write("\n")
        terminal.write(text, flush=True)

    def start_status_line(self, mode: str, compact: bool) -> None:
        """In place on a terminal (--gold-status-line), not without pytest's terminal
        reporter, nor with -q unless --gold-log=compact (where the status is the log)."""
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None or (self.config.get_verbosity() < 0 and not compact):
            return
        if not in_place(mode, sys.stdout, os.environ):
            return
        # pytest's terminal reporter writes to the sys.stdout of its start, which is this
        # one: pytest's capturing is suspended while the run loop runs.
        self.status_line = StatusLine(self.config.get_terminal_writer(), sys.stdout)

    def stop_status_line(self) -> None:
        self.status_line.clear()
        self.status_line = NoStatusLine()
