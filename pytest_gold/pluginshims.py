"""What particular plugins need under ``--gold`` beyond pytest-xdist's protocol.

Some plugins take part in xdist's protocol (:mod:`pytest_gold.protocol.xdistcompat`) only when
pytest-xdist is installed, though their workers' half runs whenever
``config.workerinput`` is set; others cannot give a right result on engines at all.
Each entry here names the plugin and the reason. docs/plugins.rst lists them.
"""

from __future__ import annotations

from typing import Any

import pytest

#: Plugin names as their ``pytest11`` entry points register them.
XDIST, RANDOMLY, SYRUPY, BENCHMARK, RERUNFAILURES = (
    "xdist",
    "randomly",
    "syrupy",
    "benchmark",
    "rerunfailures",
)


class RandomlyWithoutXdist:
    """pytest-randomly gives its workers the controller's seed through
    ``pytest_configure_node``, which it registers only when pytest-xdist is installed;
    its worker half reads ``workerinput["randomly_seed"]`` whenever it is a worker."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["randomly_seed"] = node.config.getoption("randomly_seed")


class SyrupyWithoutXdist:
    """syrupy merges the snapshot reports of its workers in ``pytest_testnodedown``, which
    it registers only when pytest-xdist is installed. Without the merge every snapshot
    would count as unused on the controller (and ``--snapshot-update`` delete it)."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        from syrupy import DeferXDist

        DeferXDist().pytest_testnodedown(node, error)


class BenchmarkRefused:
    """pytest-benchmark measures inside the workers and keeps the results there: its
    table, ``--benchmark-json``, ``--benchmark-save`` and comparisons would miss them
    without a word (and it turns itself off on an xdist worker). A run that would time
    a benchmark is refused before it starts; one that disables or skips them runs."""

    #: The plugin's fixtures that time code.
    FIXTURES = frozenset({"benchmark", "benchmark_weave"})

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        config = session.config
        if config.option.collectonly or not _benchmarks_enabled(config):
            return
        timed = [
            item.nodeid
            for item in session.items
            if self.FIXTURES.intersection(getattr(item, "fixturenames", ()))
        ]
        if not timed:
            return
        more = f" (and {len(timed) - 1} more)" if len(timed) > 1 else ""
        raise pytest.UsageError(
            f"{timed[0]}{more} uses pytest-benchmark, which cannot time cases under "
            "--gold: they would run in the engines' workers and their timings stay there "
            "(no table, no --benchmark-json or --benchmark-save). Add --benchmark-disable "
            "to run each benchmark once as a test, or --benchmark-skip to leave them out, "
            "or run the benchmarks without --gold."
        )


def _benchmarks_enabled(config: pytest.Config) -> bool:
    """As pytest-benchmark's own session decides it."""
    if config.getoption("benchmark_skip", False):
        return False
    disabled = config.getoption("benchmark_disable", False) and not config.getoption(
        "benchmark_enable", False
    )
    return not disabled


def before_initial_conftests(early_config: pytest.Config) -> None:
    """Before any plugin's ``pytest_load_initial_conftests``, in a run given ``--gold``
    (its controller and its workers, which get the same arguments).

    pytest-cov chooses there between measuring in this process only and combining what
    distributed workers measured, by whether pytest-xdist's ``--dist`` is on. The marker
    it reads is set (in the early namespace only, which nothing else reads), as pytest-xdist's
    ``-n`` sets it: then the controller takes its workers' data in
    ``pytest_testnodedown`` and combines it, and the workers measure as xdist's do.
    """
    early_config.known_args_namespace.dist = "gold"


def configure_controller(config: pytest.Config) -> None:
    """On the controller of a ``--gold`` run."""
    manager = config.pluginmanager
    if manager.hasplugin(BENCHMARK):
        manager.register(BenchmarkRefused(), "gold-shim-benchmark")
    if manager.hasplugin(XDIST):
        return  # the plugins register their own xdist hooks
    if manager.hasplugin(RANDOMLY):
        manager.register(RandomlyWithoutXdist(), "gold-shim-randomly")
    if manager.hasplugin(SYRUPY):
        manager.register(SyrupyWithoutXdist(), "gold-shim-syrupy")


def configure_worker(config: pytest.Config, *, shares_loopback: bool) -> None:
    """On a worker, before the other plugins' ``pytest_configure``."""
    workerinput: dict[str, Any] = config.workerinput  # type: ignore[attr-defined]
    if "sock_port" in workerinput and not shares_loopback:
        _rerunfailures_local_status_server(workerinput)


def _rerunfailures_local_status_server(workerinput: dict[str, Any]) -> None:
    """pytest-rerunfailures' workers connect to its status server on 127.0.0.1, which is
    the controller's only for engines on the controller's machine. A worker elsewhere
    gets a server of its own: reruns work the same, but ``--max-suite-reruns`` counts
    per such worker rather than for the whole run."""
    try:
        from pytest_rerunfailures import ServerStatusDB
    except ImportError:  # not the plugin that put sock_port there
        return
    server = ServerStatusDB()
    # Its own thread starts listening, maybe after the client (this process, in a moment)
    # connects: listening now makes that connection wait in the backlog instead of
    # being refused.
    server.sock.listen()
    workerinput["sock_port"] = server.sock_port
    workerinput["statusdb_token"] = server.token
