"""End-to-end: the worker an engine starts ahead for the next run (a standby)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import pytest_gold.protocol.serialization

from .conftest import REPLY_SECONDS, standby_pid

pytestmark = pytest.mark.cluster

#: Every case writes down which worker process ran it.
WHO_RAN_ME = """
    import os
    import pytest

    @pytest.mark.parametrize("i", range(4))
    def test_who(i):
        with open(f"worker-{i}.txt", "w") as file:
            file.write(str(os.getpid()))
"""


def run(pytester: pytest.Pytester, gold_args: list[str], *extra: str) -> set[int]:
    """One inner run; the pids of the workers that ran its cases."""
    for old in pytester.path.glob("worker-*.txt"):
        old.unlink()
    result = pytester.runpytest(*gold_args, "-p", "no:cacheprovider", *extra)
    result.assert_outcomes(passed=4)
    return {int(path.read_text()) for path in pytester.path.glob("worker-*.txt")}


def standbys(gold_cluster) -> set[int]:
    """Wait until every engine has started a worker for the next run; their pids."""
    engines = gold_cluster.client[:]
    deadline = time.monotonic() + 20
    while None in (pids := engines.apply_async(standby_pid).get(timeout=REPLY_SECONDS)):
        assert time.monotonic() < deadline, "no engine started a worker for the next run"
        time.sleep(0.2)
    return set(pids)


def test_the_next_run_starts_on_workers_started_ahead(
    pytester: pytest.Pytester, gold_args, gold_cluster
):
    pytester.makepyfile(test_who=WHO_RAN_ME)
    first = run(pytester, gold_args)
    ahead = standbys(gold_cluster)
    assert not ahead & first
    second = run(pytester, gold_args)
    assert second and second <= ahead


def test_changed_code_or_environment_gets_a_fresh_worker(
    pytester: pytest.Pytester, gold_args, gold_cluster
):
    """A worker started ahead imported pytest and pytest-gold: if one of their files
    changed since, or the run wants another environment, it is not used."""
    pytester.makepyfile(test_who=WHO_RAN_ME)
    run(pytester, gold_args)
    ahead = standbys(gold_cluster)
    module = Path(pytest_gold.protocol.serialization.__file__)
    before = module.stat()
    os.utime(module)  # as an edit does: modified now
    try:
        ran = run(pytester, gold_args)
    finally:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert ran and not ran & ahead, (ran, ahead)

    ahead = standbys(gold_cluster)
    ran = run(pytester, gold_args, "--gold-env", "SWEEP_MODE=fast")
    assert ran and not ran & ahead, (ran, ahead)
