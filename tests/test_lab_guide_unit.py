"""The lab-cluster guide, read as a newcomer follows it: commands in the order they work."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pytest_gold.cli.main import build_parser

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "lab-cluster.rst"


def console_commands(text: str) -> list[str]:
    """The ``$ ...`` lines of the console blocks, continuation lines joined."""
    commands: list[str] = []
    continued = False
    for line in text.splitlines():
        stripped = line.strip()
        if continued:
            commands[-1] = commands[-1][:-1] + " " + stripped
        elif stripped.startswith("$ "):
            commands.append(stripped[2:])
        continued = (
            bool(commands)
            and commands[-1].endswith("\\")
            and (continued or stripped.startswith("$ "))
        )
    return commands


def test_host_keys_are_accepted_before_the_batch_mode_check():
    """ssh -o BatchMode=yes fails with 'Host key verification failed.' on a host whose key
    ssh does not know yet: the guide records the keys first."""
    commands = console_commands(GUIDE.read_text())
    check = next(i for i, c in enumerate(commands) if "BatchMode=yes" in c)
    keyscan = [i for i, c in enumerate(commands) if c.startswith("ssh-keyscan ")]
    assert keyscan and keyscan[0] < check
    hosts_checked = re.search(r"for h in ([\w ]+);", commands[check]).group(1).split()
    assert shlex.split(commands[keyscan[0]])[1 : 1 + len(hosts_checked)] == hosts_checked


def test_every_profile_command_in_the_guide_parses():
    commands = [
        c for c in console_commands(GUIDE.read_text()) if c.startswith("python -m pytest_gold")
    ]
    assert any(" profile engines " in c for c in commands)
    for command in commands:
        argv = shlex.split(command.split("#")[0])[3:]
        try:
            build_parser().parse_args(argv)
        except SystemExit:  # argparse's way to fail
            pytest.fail(f"the guide's command does not parse: {command}")
