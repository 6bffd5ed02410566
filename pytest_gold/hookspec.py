"""Hooks pytest-gold calls on the controller; implement them in a conftest.py or plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .messages import EngineInfo


def pytest_gold_cluster_ready(
    config: pytest.Config, client: Any, engines: list[EngineInfo]
) -> None:
    """The cluster is connected and its engines are known, before the first case is sent.

    :param client: the connected :class:`ipyparallel.Client`.
    :param engines: one :class:`~pytest_gold.messages.EngineInfo` per engine (host, engine
        id, pid, Python version).

    Called again with the new engines only when engines register during the run.
    """


def pytest_gold_case_scheduled(config: pytest.Config, nodeid: str, engine: EngineInfo) -> None:
    """A case has been sent to an engine (as part of a batch)."""


def pytest_gold_case_finished(
    config: pytest.Config, nodeid: str, reports: list[pytest.TestReport], engine: EngineInfo
) -> None:
    """A case has finished on an engine; ``reports`` are its setup/call/teardown reports,
    already shown by the terminal and written to the JUnit XML."""
