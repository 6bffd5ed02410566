"""A supervisor's worker without a cluster: a real worker process, talked to in-process
through :class:`~pytest_gold.engine.workerprocess.WorkerProcess`; and what imports what."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_gold.engine import workerprocess
from pytest_gold.engine.workerprocess import WorkerProcess, WorkerStartFailed
from pytest_gold.protocol.control import PROTOCOL_VERSION, CaptureFd
from pytest_gold.protocol.messages import Batch, EngineInfo, LogStart, ReportEvent, RunSpec
from pytest_gold.protocol.timing import WORKER_FINISH_SECONDS

SUITE = """
    import os
    import signal

    def test_passes():
        pass

    def test_crashes():
        print("written before the crash")
        os.kill(os.getpid(), signal.SIGKILL)
"""

ENGINE = EngineInfo(
    engine_id=0, host="here", pid=0, python="", executable="", platform=sys.platform
)


def spec_for(directory: Path) -> RunSpec:
    test_file = directory / "test_suite.py"
    return RunSpec(
        run_id="unit",
        invocation_dir=str(directory),
        rootdir=str(directory),
        args=["-p", "no:cacheprovider", str(test_file)],
        collect_paths=[str(test_file)],
        collect_args=[str(test_file)],
    )


@pytest.fixture
def suite(tmp_path: Path) -> RunSpec:
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    return spec_for(tmp_path)


@pytest.fixture
def worker(suite: RunSpec) -> Iterator[WorkerProcess]:
    process = WorkerProcess(suite, ENGINE)
    try:
        yield process
    finally:
        process.close()


def test_one_receive_loop_answers_the_capture_handshake_itself(worker: WorkerProcess):
    """The worker waits for the answer to CaptureFd inside its first case's setup: the
    cases run only because the loop answered it, and no caller ever sees it. With the
    capture files taken, what a case wrote before it crashed is quoted."""
    worker.wait_ready()
    worker.send_batch(Batch(["test_suite.py::test_passes", "test_suite.py::test_crashes"], None))
    received = []
    deadline = time.monotonic() + WORKER_FINISH_SECONDS
    with pytest.raises(EOFError):  # the messages end with the worker
        for message in worker.messages(deadline=deadline):
            if message is not None:
                received.append(message)
    assert not any(isinstance(message, CaptureFd) for message in received)
    assert [m.nodeid for m in received if isinstance(m, LogStart)] == [
        "test_suite.py::test_passes",
        "test_suite.py::test_crashes",
    ]
    outcomes = [m.data["outcome"] for m in received if isinstance(m, ReportEvent)]
    assert outcomes == ["passed", "passed", "passed", "passed"]  # test_crashes: its setup
    cause = worker.death_cause()
    assert cause.summary == "killed by SIGKILL (Killed)"
    assert "what the case wrote to stdout (captured):\nwritten before the crash" in cause.details


def test_a_worker_of_another_protocol_version_is_refused_by_both_names(
    suite: RunSpec, monkeypatch: pytest.MonkeyPatch
):
    """A supervisor imported before pytest-gold changed on disk starts a worker that
    imports the new code: the worker says which version it speaks and starts nothing."""
    supervisor_version = PROTOCOL_VERSION + 1
    monkeypatch.setattr(workerprocess, "PROTOCOL_VERSION", supervisor_version)
    worker = WorkerProcess(suite, ENGINE)
    try:
        with pytest.raises(WorkerStartFailed) as failed:
            worker.wait_ready()
    finally:
        worker.close()
    assert str(failed.value) == (
        f"its worker speaks pytest-gold protocol version {PROTOCOL_VERSION} where the "
        f"engine speaks version {supervisor_version}: pytest-gold changed on this host since "
        "the engine started; restart its engines"
    )


def imported_after(statement: str) -> set[str]:
    """The pytest_gold modules a fresh interpreter holds after ``statement``."""
    code = (
        f"import sys\n{statement}\n"
        "print(' '.join(m for m in sys.modules if m.startswith('pytest_gold')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_the_worker_imports_no_engine_or_controller_module():
    modules = imported_after("import pytest_gold.worker.startup")
    assert "pytest_gold.worker.runner" in modules
    assert not {
        m for m in modules if m.startswith(("pytest_gold.engine", "pytest_gold.controller"))
    }


def test_the_engine_starts_its_worker_without_importing_it():
    modules = imported_after("import pytest_gold.engine.supervisor")
    assert not {m for m in modules if m.startswith("pytest_gold.worker")}


def test_the_controller_never_takes_over_the_supervisor_s_signals_or_exit():
    """Importing the plugin's controller must leave pytest's signals and exit alone;
    the supervisor takes them over at an engine's first call, not at import."""
    code = textwrap.dedent(
        """
        import atexit, signal, sys
        import pytest_gold.plugin, pytest_gold.controller.session
        assert "pytest_gold.engine.supervisor" not in sys.modules
        before = atexit._ncallbacks()
        from pytest_gold.engine import supervisor
        from pytest_gold.protocol.control import INTERRUPT_SIGNAL
        assert signal.getsignal(INTERRUPT_SIGNAL) is signal.SIG_DFL
        assert atexit._ncallbacks() == before
        supervisor.serve_engine_info(0)
        assert signal.getsignal(INTERRUPT_SIGNAL) is supervisor._request_interrupt
        assert atexit._ncallbacks() == before + 1
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
