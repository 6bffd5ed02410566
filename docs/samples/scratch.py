"""Running the documented commands in a scratch directory, and cutting excerpts."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from samplecheck import ELISION, presentable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

#: How the scratch directories are shown in the samples.
SHOWN_PROJECT = "/home/me/camp"
SHOWN_CHECKOUT = "/home/me/pytest-gold"
SHOWN_VENV = "/home/me/venv"
SHOWN_IPYTHON = "/home/me/.ipython"
#: Width of the terminal the samples are made for.
COLUMNS = 80
#: Longest a documented command may take (the slowest waits out a --gold-wait).
RUN_SECONDS = 600


class Scratch:
    """A scratch directory with the sample project (``sims/``, ``faults/``), a checkout's
    ``example_sims/``, an IPYTHONDIR of its own, and how to run ``pytest`` in it."""

    def __init__(self, base: Path, shown: str = SHOWN_PROJECT) -> None:
        self.path = base / "camp"
        self.path.mkdir(parents=True)
        ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache")
        for name in ("sims", "faults"):
            shutil.copytree(HERE / name, self.path / name, ignore=ignore)
        shutil.copytree(ROOT / "example_sims", self.path / "example_sims", ignore=ignore)
        self.ipython = base / "ipython"
        self.env = {
            **os.environ,
            "COLUMNS": str(COLUMNS),
            "IPYTHONDIR": str(self.ipython),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        for name in ("PY_COLORS", "FORCE_COLOR", "PYTEST_ADDOPTS", "PYTEST_GOLD_HOST"):
            self.env.pop(name, None)
        self.replacements = {
            str(self.path): shown,
            str(self.ipython): SHOWN_IPYTHON,
            str(ROOT): SHOWN_CHECKOUT,
            sys.prefix: SHOWN_VENV,
            sys.base_prefix: "/usr",
        }

    def command(self, args: list[str], program: str = "pytest") -> list[str]:
        if program == "pytest":
            return [sys.executable, "-m", "pytest", *args]
        if program == "python":
            return [sys.executable, *args]
        return [program, *args]

    def run(self, *args: str, program: str = "pytest", shown: str | None = None, **env: str) -> str:
        """``$ program args`` and what it printed (stdout and stderr, as interleaved)."""
        result = subprocess.run(
            self.command(list(args), program),
            cwd=self.path,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=RUN_SECONDS,
        )
        return self.prompt(args, program, shown) + result.stdout

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(list(args)),
            cwd=self.path,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def prompt(self, args: tuple[str, ...] | list[str], program: str, shown: str | None) -> str:
        return f"$ {shown or shlex.join([program, *args])}\n"

    def present(self, text: str) -> str:
        return presentable(text, self.replacements, socket.gethostname().split(".")[0])


def excerpt(text: str, *keep: str, first: int = 0) -> str:
    """The lines of ``text`` that contain one of ``keep`` (and its first ``first`` lines);
    every run of lines left out becomes one ``...``."""
    lines, out = text.splitlines(), []
    for number, line in enumerate(lines):
        if number < first or any(part in line for part in keep):
            out.append(line)
        elif not out or out[-1] != ELISION:
            out.append(ELISION)
    return "\n".join(out) + "\n"


def lines(text: str, *keep: str) -> str:
    """Only the lines of ``text`` that contain one of ``keep``."""
    return "".join(f"{line}\n" for line in text.splitlines() if any(k in line for k in keep))


def section(text: str, start: str, stop: str, keep_lines: int = 0) -> str:
    """From the line containing ``start`` up to (not including) the next line that starts
    with ``stop``; with ``keep_lines``, only that many lines of it and then ``...``."""
    lines = text.splitlines()
    begin = next(i for i, line in enumerate(lines) if start in line)
    end = next((i for i in range(begin + 1, len(lines)) if lines[i].startswith(stop)), len(lines))
    part = lines[begin:end]
    if keep_lines and len(part) > keep_lines:
        part = [*part[:keep_lines], ELISION]
    return "\n".join(part) + "\n"


def wait_until(condition: Callable[[], bool], what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + RUN_SECONDS
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the run never got to {what}")
        time.sleep(0.1)
