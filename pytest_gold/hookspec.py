"""Hooks pytest-gold calls on the controller; implement them in a conftest.py or plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_gold.protocol.messages import EngineInfo


def pytest_gold_cluster_ready(
    config: pytest.Config, client: Any, engines: list[EngineInfo]
) -> None:
    """The cluster is connected and its engines are known, before the first case is sent.

    :param client: the connected :class:`ipyparallel.Client`.
    :param engines: one :class:`~pytest_gold.protocol.messages.EngineInfo` per engine (host, engine
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


def pytest_gold_engine_lost(config: pytest.Config, engine: EngineInfo, cases: list[str]) -> None:
    """An engine died while it ran ``cases`` (node ids); nothing more is sent to it.

    Called before those cases are sent again (``--gold-retries``) or reported as failed.
    """


def pytest_gold_record(
    config: pytest.Config, report: pytest.TestReport, record: dict[str, Any]
) -> None:
    """A case finished; ``record`` is its results-table row.

    Called on the controller (with or without ``--gold``, with or without
    ``--gold-results``; in a plain run without ``--gold-results``, pytest-gold builds
    rows only when some conftest or plugin implements this hook) for every case, in the
    order they finish: node id, one entry per
    parametrize argument, outcome, duration, host, engine, failure message, and every
    value recorded with ``gold_record`` or ``record_property``. ``report`` is the case's
    last (teardown) report. Use it to append results to a format of your own.
    """
