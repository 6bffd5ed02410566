"""When an engine starts its worker for the next run (no worker is started here)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import asdict

import pytest

import pytest_gold.engine.standby as standby
from pytest_gold.protocol.identity import ControllerId, process_start, this_machine
from pytest_gold.protocol.messages import EngineInfo, RunSpec

ENGINE = EngineInfo(engine_id=0, host="here", pid=1, python="3", executable="py", platform="x")
#: Long enough for several of the engine's polls.
CONTROLLER_LIFETIME_SECONDS = 1.0


def spec(run_id: str, controller: ControllerId) -> RunSpec:
    return RunSpec(
        run_id=run_id,
        invocation_dir="/",
        rootdir="/",
        args=[],
        collect_paths=[],
        controller=asdict(controller),
    )


class RecordingStandby(standby.StandbyWorker):
    """Records when and for which run a worker would be started."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[tuple[str, float]] = []

    def start(self, spec: RunSpec, engine: EngineInfo, busy) -> None:
        self.started.append((spec.run_id, time.monotonic()))


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(standby, "STANDBY_POLL_SECONDS", 0.05)
    monkeypatch.setattr(standby, "STANDBY_DELAY_SECONDS", 0.1)
    monkeypatch.setattr(standby, "STANDBY_MAX_WAIT_SECONDS", 10.0)


def test_the_worker_starts_only_once_a_local_controller_has_exited(short_waits) -> None:
    controller = subprocess.Popen(
        [sys.executable, "-c", f"import time; time.sleep({CONTROLLER_LIFETIME_SECONDS})"]
    )
    try:
        identity = ControllerId(
            machine=this_machine(), pid=controller.pid, started=process_start(controller.pid)
        )
        worker = RecordingStandby()

        async def scenario() -> float:
            worker.schedule(spec("run-1", identity), ENGINE, busy=lambda: False)
            await settle(CONTROLLER_LIFETIME_SECONDS / 2)
            assert worker.started == [], "started while the run's pytest was still running"
            controller.wait()
            exited = time.monotonic()
            await settle(0.5)
            return exited

        exited = asyncio.run(scenario())
    finally:
        controller.kill()
        controller.wait()
    assert [run for run, _ in worker.started] == ["run-1"]
    assert worker.started[0][1] >= exited


def test_only_the_latest_run_end_starts_a_worker(short_waits) -> None:
    remote = ControllerId(machine="another-machine", pid=1, started=1)
    worker = RecordingStandby()

    async def scenario() -> None:
        worker.schedule(spec("older", remote), ENGINE, busy=lambda: False)
        worker.schedule(spec("newer", remote), ENGINE, busy=lambda: False)
        await settle(0.4)

    asyncio.run(scenario())
    assert [run for run, _ in worker.started] == ["newer"]


def test_a_run_that_took_the_engine_cancels_the_start(short_waits) -> None:
    remote = ControllerId(machine="another-machine", pid=1, started=1)
    worker = RecordingStandby()

    async def scenario() -> None:
        worker.schedule(spec("ended", remote), ENGINE, busy=lambda: False)
        worker.take(spec("next", remote), ENGINE)
        await settle(0.4)

    asyncio.run(scenario())
    assert worker.started == []
