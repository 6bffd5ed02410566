"""Fixtures for pytest-gold's own tests.

One real cluster is started per test session (``gold_cluster``); end-to-end tests run an
inner ``pytest --gold`` against it through its connection file, which is how the
expensive part (engine start-up) is paid once. Tests of the embedded default start and
stop their own cluster and check that nothing is left behind.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

# numpy 2 cannot be imported twice in one process; inner in-process runs import it and
# pytester then drops it from sys.modules unless it was already there: import it first.
# The same goes for what a --gold-results dataset imports (h5py, zarr's I/O thread).
import numpy  # noqa: F401

try:
    import h5netcdf  # noqa: F401
    import h5py  # noqa: F401
    import xarray  # noqa: F401
    import zarr
    import zarr.api.asynchronous  # noqa: F401
except ImportError:  # without pytest-gold[xarray]: the dataset tests say so
    pass
import psutil
import pytest

from pytest_gold.launch.cluster import ClusterHandle, start_embedded
from tests.reportbrowser import browser, open_report  # noqa: F401  (fixtures)

#: Engines of the session cluster: enough to see cases spread over engines.
SESSION_ENGINES = 2
#: Environment variable marking every process an inner run starts (see ``leak_check``).
TOKEN_ENV = "PYTEST_GOLD_TEST_TOKEN"
#: How long stopped cluster processes get to exit before they count as left behind.
EXIT_GRACE_SECONDS = 15.0
#: How long a test waits for an engine's answer to a trivial request.
REPLY_SECONDS = 60.0


#: Fixtures that give a test a cluster, or watch what one leaves behind: a test that uses
#: one is marked ``cluster``, so that ``pytest -m "not cluster"`` needs no cluster.
CLUSTER_FIXTURES = frozenset({"gold_cluster", "connection_file", "gold_args", "leak_check"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        f"{item.nodeid} (uses {', '.join(sorted(used))})"
        for item in items
        if (used := CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())))
        and item.get_closest_marker("cluster") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests that need a cluster must be marked @pytest.mark.cluster (the fast lane, "
            '-m "not cluster", runs without one): ' + "; ".join(unmarked)
        )


@pytest.fixture(autouse=True)
def _no_cluster_unless_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A test not marked ``cluster`` that starts or attaches to a cluster in-process (an
    inner ``pytester.runpytest("--gold")``) fails, instead of quietly needing one."""
    if request.node.get_closest_marker("cluster") is not None:
        return

    def no_cluster(*args: object, **kwargs: object) -> None:
        raise AssertionError(
            f"{request.node.nodeid} starts or attaches to a cluster: mark it @pytest.mark.cluster"
        )

    for target in (
        "pytest_gold.launch.cluster.start_embedded",
        "pytest_gold.controller.session.start_embedded",
        "pytest_gold.launch.attaching.attach",
        "pytest_gold.controller.session.attach",
    ):
        monkeypatch.setattr(target, no_cluster)


@pytest.fixture(scope="session")
def gold_cluster() -> Iterator[ClusterHandle]:
    handle = start_embedded(SESSION_ENGINES, wait_seconds=60)
    try:
        handle.client.wait_for_engines(SESSION_ENGINES, timeout=60)
        yield handle
    finally:
        handle.close()


@pytest.fixture(scope="session")
def connection_file(gold_cluster: ClusterHandle) -> Path:
    path = gold_cluster.connection_file
    assert path is not None and path.is_file()
    return path


@pytest.fixture
def gold_args(connection_file: Path, gold_cluster: ClusterHandle) -> Iterator[list[str]]:
    """Arguments that make an inner run use the session cluster; checks workers are ended."""
    yield ["--gold", f"--gold-connection-file={connection_file}"]
    # Bounded: an engine that never answers fails the test rather than hanging the suite.
    engines = gold_cluster.client[:]
    engine_pids = engines.apply_async(os.getpid).get(timeout=REPLY_SECONDS)
    deadline = time.monotonic() + EXIT_GRACE_SECONDS
    while True:
        # An engine keeps one worker started ahead for the next run: not a leftover.
        standbys = set(engines.apply_async(standby_pid).get(timeout=REPLY_SECONDS))
        workers = [
            child
            for pid in engine_pids
            for child in _children(pid)
            if "pytest_gold.worker" in " ".join(_cmdline(child)) and child.pid not in standbys
        ]
        if not workers or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for worker in workers:
        worker.kill()
    assert not workers, f"worker processes left running after the run: {workers}"


def standby_pid() -> int | None:
    """On an engine: the pid of the worker it started ahead for the next run, if any."""
    from pytest_gold.engine import supervisor as engine

    return engine._standby.pid


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def processes_with_token(token: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            # A zombie has exited; only its parent (or init) has yet to collect it.
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get(TOKEN_ENV) == token:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return [p for p in found if p.pid != os.getpid()]


@pytest.fixture
def leak_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Mark every process started from here on; fail if any outlives the test.

    The mark is an environment variable, inherited by the inner pytest, the cluster's
    controller, engines, nannies and workers, even when they are re-parented to init.
    """
    token = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_ENV, token)
    yield token
    deadline = time.monotonic() + EXIT_GRACE_SECONDS
    left = processes_with_token(token)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_with_token(token)
    described = [f"{p.pid} {' '.join(_cmdline(p))}" for p in left]
    for process in left:  # ours: stop them so one failure does not leak into later tests
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    assert not left, "processes left running after the run:\n" + "\n".join(described)
