"""What the controller sends to the engines: the functions it calls through ipyparallel.

The controller imports this module, never :mod:`pytest_gold.engine.supervisor`: the
supervisor takes over signals and ends workers at exit in the process that runs it, which
must be an engine, not ``pytest``. ipyparallel sends each function by reference to this
module; on the engine, the function's body imports the supervisor (once: an engine keeps
it) and calls it. Plain data in, plain data out (see :mod:`pytest_gold.protocol.messages`).
"""

from __future__ import annotations

from typing import Any

from pytest_gold.protocol.control import INTERRUPT_SIGNAL, PROTOCOL_VERSION
from pytest_gold.protocol.identity import this_machine
from pytest_gold.protocol.timing import WORKER_FINISH_SECONDS

__all__ = [
    "INTERRUPT_SIGNAL",
    "PROTOCOL_VERSION",
    "WORKER_FINISH_SECONDS",
    "remote_engine_info",
    "remote_finish_run",
    "remote_read_output",
    "remote_run_batch",
    "this_machine",
]


def remote_engine_info(
    engine_id: int,
    rootdir: str = "",
    invocation_dir: str = "",
    run_id: str = "",
    controller: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The engine check's question, the first call of every run: who the engine is (an
    ``EngineInfo``, with its protocol version) and whether it can run this project."""
    import pytest_gold.engine.supervisor as supervisor

    return supervisor.serve_engine_info(engine_id, rootdir, invocation_dir, run_id, controller)


def remote_run_batch(spec: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    """Run a ``Batch`` of the run ``spec`` describes; a ``BatchResult``."""
    import pytest_gold.engine.supervisor as supervisor

    return supervisor.serve_run_batch(spec, batch)


def remote_finish_run(
    run_id: str, prepare_next: bool = True, collect_output: bool = False
) -> dict[str, Any]:
    """End the run on this engine: its worker's last teardown, as a ``BatchResult``."""
    import pytest_gold.engine.supervisor as supervisor

    return supervisor.serve_finish_run(run_id, prepare_next, collect_output)


def remote_read_output(run_id: str, start: int, max_bytes: int) -> dict[str, Any]:
    """Live output (-s) the controller did not receive: see
    :mod:`pytest_gold.engine.outputspool`."""
    import pytest_gold.engine.supervisor as supervisor

    return supervisor.serve_read_output(run_id, start, max_bytes)
