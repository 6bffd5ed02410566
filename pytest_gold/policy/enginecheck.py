"""The engine check: can an engine run this project's cases as the controller would?

Pure: compares what an engine says about itself with the controller's own facts.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_gold.protocol.messages import EngineInfo
from pytest_gold.protocol.version import PROTOCOL_VERSION


@dataclass(frozen=True)
class Expected:
    """The controller's side of the comparison."""

    python: str
    pytest: str
    pytest_gold: str
    rootdir: str
    invocation_dir: str
    #: The messages this run's controller and workers speak.
    protocol: int = PROTOCOL_VERSION


def python_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def mismatches(expected: Expected, info: EngineInfo) -> list[str]:
    """What differs on this engine, each said so that it can be acted on."""
    problems = []
    if python_minor(info.python) != python_minor(expected.python):
        problems.append(
            f"Python {info.python} ({info.executable}) where this run has Python {expected.python}"
        )
    if info.pytest != expected.pytest:
        problems.append(f"pytest {info.pytest or '?'} where this run has {expected.pytest}")
    if info.pytest_gold != expected.pytest_gold:
        problems.append(
            f"pytest-gold {info.pytest_gold or '?'} where this run has {expected.pytest_gold}"
        )
    if info.protocol != expected.protocol:
        # Package versions are equal across development commits: this is what tells
        # an engine that imported other pytest-gold code from this run's.
        spoken = info.protocol or "none (older than versioned messages)"
        problems.append(
            f"pytest-gold protocol version {spoken} where this run speaks version "
            f"{expected.protocol} (reinstall pytest-gold on that host and restart its engines)"
        )
    if not info.rootdir_visible:
        problems.append(f"the rootdir {expected.rootdir} does not exist there")
    elif not info.cwd_usable:
        problems.append(f"the directory {expected.invocation_dir} cannot be its working directory")
    return problems


def advice(problems: list[str]) -> str:
    """What to do about the kinds of mismatch found."""
    steps = []
    text = " ".join(problems)
    if any("protocol version" in problem for problem in problems):
        steps.append(
            "reinstall pytest-gold on those hosts from the same source as this run's and "
            "restart their engines (an engine goes on using the pytest-gold it imported "
            "when it started)"
        )
    others = " ".join(problem for problem in problems if "protocol version" not in problem)
    if "Python" in others or "pytest" in others:
        steps.append(
            "install the same Python and packages on every host (a virtualenv on the "
            "shared filesystem, named in the profile with 'python -m pytest_gold profile "
            "create ... --remote-python=PATH', does it) and restart those engines"
        )
    if "rootdir" in text or "working directory" in text:
        steps.append(
            "run from a directory on the filesystem the hosts share, at the same path on every host"
        )
    return "; ".join(steps)


def describe(failed: dict[int, tuple[EngineInfo | None, list[str]]]) -> list[str]:
    """One line per engine that failed the check."""
    lines = []
    for eid, (info, problems) in sorted(failed.items()):
        where = info.tag if info is not None else f"engine {eid}"
        lines.append(f"{where}: {'; '.join(problems)}")
    return lines
