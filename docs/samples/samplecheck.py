"""Sample outputs of the docs: made presentable, and compared with a fresh run (pure).

:func:`presentable` replaces what differs from machine to machine (paths, pids, thread
addresses, the host name, other pytest plugins) with fixed stand-ins, so a sample file
changes only when the output does. :func:`differences` compares a sample with the output
of a fresh run *in structure*: numbers, the order of results, how pytest wraps its
progress characters and when engines register may differ; every other line of the
sample must be there, and a sample that is not an excerpt must not miss a ``gold:``
line of the fresh run.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

#: A line in a sample that stands for lines left out.
ELISION = "..."

CUT_SHORT = "gold: cut short while running:"
# Lines that differ from run to run in more than numbers: never compared.
_IGNORED = [
    re.compile(r"^(\S+\.py ?)?[.FEsxXp]*\s*(\[\s*N%\])?$"),  # progress characters
    re.compile(r"^gold: N/N (cases )?done"),  # status lines: how many depends on timing
    re.compile(r"^gold: waiting for engines"),
    re.compile(r"^\S+:N: \w+$"),  # a traceback's "file:line: Error" (locations move)
]
# Phrases that depend on timing, made one.
_CANON = [
    (re.compile(r"N engines? of N registered \(the others join as they start\)"), "N engines"),
    (re.compile(r"N engines?\b"), "N engines"),
    (re.compile(r"N cases?\b"), "N cases"),
    # Which cases a stop cuts short, and on how many engines, depends on timing.
    (re.compile(r"^gold: cut short while running: \S+"), f"{CUT_SHORT} CASE"),
    # pytest centres titles between rules, whose lengths vary with the title's
    (re.compile(r"^[=_-]+ | [=_-]+$|^[=_-]+$"), ""),
    (re.compile(r"\s+"), " "),
    (re.compile(r"\[ "), "["),  # "[ 16%]", "[100%]"
]


def presentable(text: str, replacements: Mapping[str, str], host: str) -> str:
    """``text`` with fixed stand-ins for what differs between machines and runs."""
    for real, shown in sorted(replacements.items(), key=lambda item: -len(item[0])):
        if real:
            text = text.replace(real, shown)
    if host and host != "vm":
        text = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w.-])", "vm", text)
    text = re.sub(r"(?<=running task ')[^']+(?=')", "...", text)  # ipyparallel's task id
    text = _numbered(text, r"(?<=pid )\d+", lambda n: str(24101 + n))
    text = _numbered(text, r"0x[0-9a-f]{12,16}", lambda n: f"0x00007f6d1b9{n:02d}b80")
    text = re.sub(r"^plugins: .*?(gold-[\w.]+).*$", r"plugins: \1", text, flags=re.M)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def _numbered(text: str, pattern: str, stand_in) -> str:  # type: ignore[no-untyped-def]
    """Each distinct match replaced by ``stand_in(n)``, n counting distinct matches."""
    seen: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        return seen.setdefault(match.group(0), stand_in(len(seen)))

    return re.sub(pattern, replace, text)


def canonical(line: str) -> str | None:
    """A line's structure (numbers as N, timing-dependent phrases made one), or None
    for a line that is not compared."""
    text = re.sub(r"\d+(\.\d+)?", "N", line.strip())
    if not text or text == ELISION:
        return None
    if any(pattern.match(text) for pattern in _IGNORED):
        return None
    text = text.replace(" (N:N:N)", "")  # pytest adds h:mm:ss to runs over a minute
    for pattern, replacement in _CANON:
        text = pattern.sub(replacement, text)
    return text.strip()


def _structure(lines: Iterable[str]) -> Counter[str]:
    counts = Counter(c for c in map(canonical, lines) if c is not None)
    for line in counts:
        if line.startswith(CUT_SHORT):
            counts[line] = 1  # one or more, as many as engines were busy
    return counts


def differences(sample: str, fresh: str) -> list[str]:
    """What a sample shows that a fresh run does not (and, for a sample that is not an
    excerpt, the ``gold:`` lines of the fresh run that the sample lacks)."""
    sample_lines, fresh_lines = sample.splitlines(), fresh.splitlines()
    shown, produced = _structure(sample_lines), _structure(fresh_lines)
    problems = [f"not in a fresh run: {line}" for line in (shown - produced).elements()]
    if not any(line.strip() == ELISION for line in sample_lines):
        missing = Counter({k: v for k, v in (produced - shown).items() if k.startswith("gold:")})
        problems += [f"not in the sample: {line}" for line in missing.elements()]
    return problems
