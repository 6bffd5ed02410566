"""Options of the dataset results (kept here so that settings.py stays about the cluster)."""

from __future__ import annotations

import pytest

from pytest_gold.settings import number_option

#: Default seconds between writes of a dataset: what a SIGKILL can lose at most.
DEFAULT_INTERVAL_SECONDS = 2.0


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gold")
    # --gold-results-overwrite (tables and datasets alike) is in settings.py.
    group.addoption(
        "--gold-results-interval",
        dest="gold_results_interval",
        default=None,
        metavar="SECONDS",
        help="seconds between writes of a --gold-results dataset (.zarr, .nc): a killed "
        "run loses at most the cells that finished in the last interval; 0 writes every "
        f"case as it finishes (default {DEFAULT_INTERVAL_SECONDS:g}).",
    )
    parser.addini(
        "gold_results_interval",
        "default for --gold-results-interval: seconds between writes of a dataset.",
        default=None,
    )


def interval_seconds(config: pytest.Config) -> float:
    return number_option(
        config,
        "gold_results_interval",
        "--gold-results-interval",
        DEFAULT_INTERVAL_SECONDS,
        zero_allowed=True,
    )
