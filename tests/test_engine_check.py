"""End-to-end: the engine check leaves out engines that cannot run this project's cases."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import ipyparallel as ipp
import pytest

import pytest_gold
from pytest_gold.protocol.version import PROTOCOL_VERSION

pytestmark = pytest.mark.cluster

SWEEP = """
    import pytest

    @pytest.mark.parametrize("i", range(6))
    def test_sweep(i):
        assert i >= 0
"""
OTHER_VERSION = "0.0.0+elsewhere"
OTHER_PROTOCOL = PROTOCOL_VERSION + 1


def other_version(package: Path) -> None:
    (package / "__init__.py").write_text(f"__version__ = {OTHER_VERSION!r}\n")


def other_protocol(package: Path) -> None:
    """The same package version (as on two development commits), other messages."""
    control = package / "protocol" / "version.py"
    source = control.read_text()
    line = f"PROTOCOL_VERSION = {PROTOCOL_VERSION}\n"
    assert line in source
    control.write_text(source.replace(line, f"PROTOCOL_VERSION = {OTHER_PROTOCOL}\n"))


@pytest.fixture
def mixed_cluster(tmp_path: Path, leak_check: str) -> Iterator[Path]:
    """One good engine, and one whose pytest-gold is another version (another PYTHONPATH)."""
    with cluster_with_odd_engine(tmp_path, other_version) as connection_file:
        yield connection_file


@pytest.fixture
def other_protocol_cluster(tmp_path: Path, leak_check: str) -> Iterator[Path]:
    """One good engine, and one whose pytest-gold speaks another protocol version."""
    with cluster_with_odd_engine(tmp_path, other_protocol) as connection_file:
        yield connection_file


@contextlib.contextmanager
def cluster_with_odd_engine(tmp_path: Path, change: Callable[[Path], None]) -> Iterator[Path]:
    """A cluster of two engines; the second imports a copy of pytest-gold with ``change``."""
    other = tmp_path / "other-site"
    shutil.copytree(Path(pytest_gold.__file__).parent, other / "pytest_gold")
    change(other / "pytest_gold")
    cluster = ipp.Cluster(
        n=1,
        profile_dir=str(tmp_path / "profile"),
        load_profile=False,
        controller_ip="127.0.0.1",
        log_level=40,
    )
    cluster.start_cluster_sync()
    odd_engine = None
    try:
        client = cluster.connect_client_sync()
        client.wait_for_engines(1, timeout=60)
        engine_file = Path(
            cluster.profile_dir, "security", f"ipcontroller-{cluster.cluster_id}-engine.json"
        )
        odd_engine = subprocess.Popen(
            [sys.executable, "-m", "ipyparallel.engine", f"--file={engine_file}", "--log-level=40"],
            env={**os.environ, "PYTHONPATH": str(other)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client.wait_for_engines(2, timeout=60)

        # What the engine check runs is imported now: in the run it answers at once, well
        # within a short --gold-wait, however busy the machine.
        client[:].execute("import pytest_gold.engine.supervisor", block=False).get(timeout=60)
        client.close()
        yield Path(
            cluster.profile_dir, "security", f"ipcontroller-{cluster.cluster_id}-client.json"
        )
    finally:
        if odd_engine is not None:
            odd_engine.kill()
            odd_engine.wait()
        # leak_check, torn down after this, waits for their processes to be gone.
        cluster.stop_cluster_sync()


def test_mismatched_engine_is_left_out_with_a_warning(pytester: pytest.Pytester, mixed_cluster):
    pytester.makepyfile(test_sweep=SWEEP)
    result = pytester.runpytest_subprocess(
        "--gold", f"--gold-connection-file={mixed_cluster}", "-v"
    )
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        [
            f"gold: left out of the run, engine check failed: *:e1: pytest-gold {OTHER_VERSION} "
            f"where this run has {pytest_gold.__version__}",
        ]
    )
    assert ":e1]" not in result.stdout.str()  # no case ran there


def test_engine_speaking_another_protocol_is_left_out(
    pytester: pytest.Pytester, other_protocol_cluster
):
    """Package versions are equal across development commits: the protocol version is
    what tells an engine running other pytest-gold code."""
    pytester.makepyfile(test_sweep=SWEEP)
    result = pytester.runpytest_subprocess(
        "--gold", f"--gold-connection-file={other_protocol_cluster}", "-v"
    )
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        [
            "gold: left out of the run, engine check failed: *:e1: pytest-gold protocol "
            f"version {OTHER_PROTOCOL} where this run speaks version {PROTOCOL_VERSION} "
            "(reinstall pytest-gold on that host and restart its engines)",
        ]
    )
    assert "where this run has" not in result.stdout.str()  # the package versions agree
    assert ":e1]" not in result.stdout.str()  # no case ran there


def test_too_few_engines_pass_the_check(pytester: pytest.Pytester, mixed_cluster):
    pytester.makepyfile(test_sweep=SWEEP)
    result = pytester.runpytest_subprocess(
        "--gold", f"--gold-connection-file={mixed_cluster}", "--gold-min-engines=2", "--gold-wait=3"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = result.stderr.str()
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-gold: waited 3 s (--gold-wait) for 2 usable engines "
            f"(--gold-min-engines)*2 registered, 1 failed the engine check: *:e1: pytest-gold "
            f"{OTHER_VERSION} where this run has {pytest_gold.__version__}. To fix: install the "
            "same Python and packages on every host*"
        ]
    )
    assert "Traceback" not in error
