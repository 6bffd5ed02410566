"""The plugin's surface to pytest, in-process and without a cluster: its options as
``pytest --help`` shows them, and the JUnit XML stand-in a worker offers to plugins."""

from __future__ import annotations

import re

import pytest

from pytest_gold.protocol.junitxml import (
    SuitePropertyForwarder,
    forward_suite_properties,
    junit_xml,
)

#: Options of pytest-gold that take a value, and the kind of value ``--help`` names.
EXPECTED_METAVARS = {
    "--gold-engines": "N",
    "--gold-max-engines": "N",
    "--gold-profile": "NAME",
    "--gold-cluster-id": "ID",
    "--gold-idle-stop": "MINUTES",
    "--gold-connection-file": "FILE",
    "--gold-wait": "SECONDS",
    "--gold-min-engines": "N",
    "--gold-max-jobs": "N",
    "--gold-timeout": "SECONDS",
    "--gold-retries": "N",
    "--gold-walltime-margin": "SECONDS",
    "--gold-order": "ORDER",
    "--gold-status-file": "FILE",
    "--gold-status-interval": "SECONDS",
    "--gold-status-line": "MODE",
    "--gold-log": "MODE",
    "--gold-batch-seconds": "SECONDS",
    "--gold-leftovers": "MODE",
    "--gold-results": "PATH",
    "--gold-results-interval": "SECONDS",
    "--gold-report": "PATH",
    "--gold-report-interval": "SECONDS",
    "--gold-env": "KEY=VALUE",
}


def test_every_option_with_a_value_names_its_kind(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == 0
    shown = dict(re.findall(r"^\s+(--gold-[a-z-]+)=(\S+)", result.stdout.str(), re.MULTILINE))
    assert shown == EXPECTED_METAVARS


def test_options_documented_with_the_same_kind(pytestconfig: pytest.Config) -> None:
    options = (pytestconfig.rootpath / "docs" / "options.rst").read_text()
    documented = dict(re.findall(r"^\.\. option:: (--gold-[a-z-]+) <(\S+)>$", options, re.M))
    assert documented == EXPECTED_METAVARS


def test_a_worker_forwards_testsuite_properties(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig("--junitxml=out.xml", "-o", "junit_family=xunit1")
    sent: list[tuple[str, str]] = []
    forward_suite_properties(config, lambda name, value: sent.append((name, value)))
    forwarder = junit_xml(config)
    assert isinstance(forwarder, SuitePropertyForwarder)
    assert config.pluginmanager.is_registered(forwarder)  # junitxml unregisters it at the end
    assert forwarder.family == "xunit1"  # record_property warns by it, as in a plain run
    forwarder.add_global_property("hypothesis-statistics-t.py::test_x", 3.5)
    assert sent == [("hypothesis-statistics-t.py::test_x", "3.5")]
    with pytest.raises(TypeError, match="name parameter needs to be a string"):
        forwarder.add_global_property(7, "x")  # type: ignore[arg-type]


def test_a_worker_without_junitxml_has_no_stand_in(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    forward_suite_properties(config, lambda name, value: None)
    assert junit_xml(config) is None
