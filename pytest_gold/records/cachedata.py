"""pytest-gold's entries in pytest's cache, read defensively.

``.pytest_cache`` is a directory of JSON files anyone can edit, truncate or fill with
something else. An entry that is not what pytest-gold writes is ignored (as if it were
absent) with one warning line per run and entry, and the run then writes a good one.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

import pytest_gold.policy.resume as resume

#: Where each case's last duration is kept (``--cache-clear`` resets it).
DURATIONS_CACHE_KEY = "gold/durations"

_warned_key = pytest.StashKey[set[str]]()
_Value = TypeVar("_Value")


def read_done(config: pytest.Config) -> list[str]:
    """The node ids of the cases that passed in earlier runs (``gold/passed``)."""
    return _read(config, resume.CACHE_KEY, [], _done_or_none, "a list of node ids")


def read_durations(config: pytest.Config) -> dict[str, float]:
    """Each case's duration in the last run that ran it (``gold/durations``)."""
    return _read(
        config, DURATIONS_CACHE_KEY, {}, _durations_or_none, "a mapping of node ids to seconds"
    )


def has_entry(config: pytest.Config, key: str) -> bool:
    """Whether the cache has ``key`` at all (whatever its value)."""
    cache = getattr(config, "cache", None)
    return cache is not None and cache.get(key, None) is not None


def _done_or_none(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(nodeid, str) for nodeid in value):
        return value
    return None


def _durations_or_none(value: Any) -> dict[str, float] | None:
    if not isinstance(value, dict):
        return None
    durations = {}
    for nodeid, seconds in value.items():
        if (
            not isinstance(seconds, (int, float))
            or isinstance(seconds, bool)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            return None
        durations[nodeid] = float(seconds)
    return durations


def _read(
    config: pytest.Config,
    key: str,
    default: _Value,
    validate: Callable[[Any], _Value | None],
    expected: str,
) -> _Value:
    cache = getattr(config, "cache", None)
    if cache is None:  # -p no:cacheprovider
        return default
    value = cache.get(key, None)
    if value is None:
        return default
    valid = validate(value)
    if valid is None:
        _warn_once(
            config,
            key,
            f"gold: ignored the cache entry {key} (it is not {expected}: {_preview(value)}); "
            "this run replaces it (pytest --cache-clear removes it)",
        )
        return default
    return valid


def _preview(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _warn_once(config: pytest.Config, key: str, message: str) -> None:
    """One line on the terminal (a pytest warning would be an error under ``-W error``)."""
    warned = config.stash.setdefault(_warned_key, set())
    if key in warned:
        return
    warned.add(key)
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is None:
        print(message, file=sys.stderr)
        return
    terminal.ensure_newline()
    terminal.write_line(message, yellow=True)
