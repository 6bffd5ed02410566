"""Every task the controller sends to the engines, in one place.

The controller runs engine-side functions through ``apply_async``; ipyparallel pickles them
by reference, so the controller must import the module that defines them. This is the only
controller module that does (switching to thin entry points is a change here alone).
"""

from __future__ import annotations

import dataclasses
import signal
from typing import Any

import pytest_gold.engine.remote as engine_module
from pytest_gold.policy.enginecheck import Expected
from pytest_gold.protocol.identity import ControllerId

#: The signal that interrupts a run's batch on an engine (unless the engine gave the run
#: one of its own).
INTERRUPT_SIGNAL: signal.Signals = engine_module.INTERRUPT_SIGNAL
#: How long an engine gives its worker for the end-of-run teardowns.
WORKER_FINISH_SECONDS: float = engine_module.WORKER_FINISH_SECONDS


def this_machine() -> str:
    """This machine's identity, as engines report theirs (same machine: signal by pid)."""
    return engine_module.this_machine()


def send_check(
    client: Any, eid: int, expected: Expected, run_id: str, controller: ControllerId
) -> Any:
    """The engine check: what the engine runs (answered with an EngineInfo on the wire)."""
    return client[eid].apply_async(
        engine_module.remote_engine_info,
        eid,
        expected.rootdir,
        expected.invocation_dir,
        run_id,
        dataclasses.asdict(controller),
    )


def send_batch(client: Any, eid: int, spec: dict[str, Any], batch: dict[str, Any]) -> Any:
    """One batch of cases (on the wire) for the engine's worker."""
    return client[eid].apply_async(engine_module.remote_run_batch, spec, batch)


def finish_run(
    client: Any, engine_ids: list[int], run_id: str, prepare_next: bool, wants_output: bool
) -> Any:
    """The end of the run on these engines: last teardowns, then the workers' sessions."""
    return client[engine_ids].apply_async(
        engine_module.remote_finish_run, run_id, prepare_next, wants_output
    )


def read_output(client: Any, eid: int, run_id: str, start: int, max_bytes: int) -> Any:
    """Output the engine keeps for the run, from byte ``start``."""
    return client[eid].apply_async(engine_module.remote_read_output, run_id, start, max_bytes)


def is_check(function: Any) -> bool:
    """Whether ``function`` is the engine check (for fakes of ipyparallel in tests)."""
    return function is engine_module.remote_engine_info
