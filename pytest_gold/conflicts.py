"""pytest options that cannot do under --gold what they do in a plain run.

Each is a usage error that says why and what to do instead, rather than a run that silently
does something else; and the options that need no cluster at all.
"""

from __future__ import annotations

import pytest

#: pytest's debugger options, by where it keeps them.
_DEBUGGER_OPTIONS = {"--pdb": "usepdb", "--trace": "trace"}


def check(config: pytest.Config) -> None:
    """pytest options that cannot do under --gold what they do in a plain run: a usage
    error that says why, rather than a run that silently does something else."""
    # pytest-xdist turns -n N into --tx entries and a --dist mode before configure.
    if config.getoption("dist", "no") != "no" and config.getoption("tx", None):
        raise pytest.UsageError(
            "--gold and pytest-xdist's -n / --dist both distribute the run's cases; use one "
            "of them. Drop -n (or add -n 0 where your ini's addopts sets it) to run on the "
            "cluster, or drop --gold to run with pytest-xdist."
        )
    debugger = [option for option, dest in _DEBUGGER_OPTIONS.items() if config.getoption(dest, 0)]
    if debugger:
        raise pytest.UsageError(
            f"{' and '.join(debugger)}: an interactive debugger stops in the process that runs "
            "a case; with --gold cases run on cluster engines, which have no terminal. Rerun "
            "the failing cases without --gold to debug them, e.g. 'pytest --lf --pdb', or "
            "'pytest path/to/test_x.py::test_case --trace'."
        )
    if config.getoption("setupshow", False) and not (
        config.getoption("setuponly", False) or config.getoption("setupplan", False)
    ):
        raise pytest.UsageError(
            "--setup-show prints fixture setups and teardowns as the cases run; with --gold "
            "they run on cluster engines, in several processes at once, whose output is not "
            "this terminal. Use --setup-plan (or --setup-only), which work with --gold and "
            "print what a plain run prints, or drop --gold."
        )


def runs_without_cluster(config: pytest.Config) -> bool:
    """--collect-only, --setup-plan, --setup-only call no test function: pytest's own loop
    runs them in this process (--setup-only sets fixtures up and tears them down there)
    and prints exactly what a plain run prints."""
    return any(config.getoption(name, False) for name in ("collectonly", "setupplan", "setuponly"))
