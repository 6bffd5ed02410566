"""The pytest entry point (``pytest11: gold``): options, hooks, and switching a run to --gold."""

from __future__ import annotations

import pytest

import pytest_gold.dataset.options as dataset_options
import pytest_gold.options as options
import pytest_gold.settings as settings_module

#: Name under which the controller plugin is registered while a --gold run is on.
CONTROLLER_PLUGIN_NAME = "gold-controller"
#: Name of the plugin that keeps the campaign log and --gold-report.
REPORT_PLUGIN_NAME = "gold-report"


def pytest_addoption(parser: pytest.Parser) -> None:
    import pytest_gold.report.options as report_options

    options.addoption(parser)
    dataset_options.addoption(parser)
    report_options.addoption(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    import pytest_gold.hookspec as hookspec

    pluginmanager.add_hookspecs(hookspec)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> object:
    # Before every other plugin's implementation (pytest-cov decides here how to measure).
    if getattr(early_config.known_args_namespace, "gold", False):
        import pytest_gold.pluginshims as pluginshims

        pluginshims.before_initial_conftests(early_config)
    return (yield)


def pytest_configure(config: pytest.Config) -> None:
    import pytest_gold.records.recording as recording

    # Without --gold and --gold-results: the fixture, the marker and the options only.
    recording.configure(config)
    config.addinivalue_line(
        "markers",
        "gold(timeout=SECONDS): pytest-gold settings of a case; timeout is its run-time "
        "limit on an engine (overrides --gold-timeout).",
    )
    # A worker (ours or pytest-xdist's) never distributes again.
    if not config.getoption("gold") or hasattr(config, "workerinput"):
        return
    settings = settings_module.from_config(config)
    import pytest_gold.pluginshims as pluginshims
    from pytest_gold.controller.session import GoldController

    pluginshims.configure_controller(config)

    config.pluginmanager.register(GoldController(config, settings), CONTROLLER_PLUGIN_NAME)
    from pytest_gold.report.options import from_config as report_settings

    report_recording = report_settings(config, settings.status_file)
    if report_recording is not None:  # --gold-report, or the log beside --gold-status-file
        from pytest_gold.report.recorder import CampaignRecorder

        recorder = CampaignRecorder(config, report_recording, settings.describe(), settings.profile)
        config.pluginmanager.register(recorder, REPORT_PLUGIN_NAME)
