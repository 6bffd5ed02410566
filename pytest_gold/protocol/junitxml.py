"""pytest's JUnit XML writer (``--junitxml``) on both sides of a ``--gold`` run.

On the controller, pytest's ``LogXML`` plugin writes the file; replayed reports reach it
through ``pytest_runtest_logreport``, and what else goes into the file is handed to it here.

On a worker there is no ``LogXML``: junitxml, like pytest-xdist's workers, leaves the
file to the controller. Plugins that write to the file from inside a test's run find it
in ``config.stash`` and skip the file when it is absent, hypothesis for one (it adds a
``hypothesis-statistics-<node id>`` testsuite property per test). A worker of a run given
``--junitxml`` therefore holds :class:`SuitePropertyForwarder` there instead: what such a
plugin adds to the testsuite is sent to the controller and written there, as a plain run
would write it.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection
from typing import Any, cast

import pytest

# pytest has no public name for the stash key of its LogXML plugin; plugins that write to
# the file (hypothesis among them) import it from here too. This is the one place
# pytest-gold does.
from _pytest.junitxml import xml_key

#: pytest's own default for the ``junit_family`` ini key.
DEFAULT_FAMILY = "xunit2"


def junit_xml(config: pytest.Config) -> Any:
    """pytest's LogXML plugin when this run writes ``--junitxml`` (else None)."""
    return config.stash.get(xml_key, None)


class SuitePropertyForwarder:
    """Stands in for ``LogXML`` on a worker: testsuite properties go to the controller.

    Only what plugins use on a worker is here: ``add_global_property`` and ``family``
    (pytest's ``record_property`` warns by it). Per-case properties and attributes travel
    on the reports themselves (``user_properties``, see ``record_xml_attribute``).
    """

    def __init__(self, family: str, send: Callable[[str, str], None]) -> None:
        self.family = family
        self.send = send

    def add_global_property(self, name: str, value: object) -> None:
        if not isinstance(name, str):  # as LogXML checks it
            raise TypeError(f"name parameter needs to be a string, but {type(name).__name__} given")
        self.send(name, str(value))


def forward_suite_properties(config: pytest.Config, send: Callable[[str, str], None]) -> None:
    """On a worker: let plugins add testsuite properties when the run writes JUnit XML.

    Registered as a plugin as well, because junitxml's ``pytest_unconfigure`` unregisters
    whatever it finds in the stash.
    """
    if not config.option.xmlpath or junit_xml(config) is not None:
        return
    family = config.getini("junit_family") or DEFAULT_FAMILY
    forwarder = SuitePropertyForwarder(family, send)
    # Typed for LogXML; the forwarder has what plugins use of it on a worker.
    config.stash[xml_key] = cast(Any, forwarder)
    config.pluginmanager.register(forwarder, "gold-junitxml-forwarder")


class SharedProperties:
    """Builds a case's ``<properties>`` for LogXML with one ``<property>`` element per
    (name, value) of ``names``, shared by every case that has it.

    LogXML turns each case into elements when the case ends and holds them to the end of
    the run. The properties every replayed case gets (its host and engine) would be two
    elements (and their attribute dicts) per case; shared, they are two per engine. An
    element is written out wherever it is appended: the file is the same.
    """

    def __init__(self, names: Collection[str]) -> None:
        self.names = frozenset(names)
        self.elements: dict[tuple[str, str], ET.Element] = {}

    def adopt(self, reporter: Any) -> None:
        """Have LogXML's reporter of one case (a ``_NodeReporter``) build its properties
        here; its ``finalize`` drops this again with the rest of its state."""
        if "make_properties_node" not in vars(reporter) and hasattr(
            reporter, "make_properties_node"
        ):
            reporter.make_properties_node = functools.partial(self.properties_node, reporter)

    def properties_node(self, reporter: Any) -> ET.Element | None:
        """What ``_NodeReporter.make_properties_node`` returns, shared elements included."""
        if not reporter.properties:
            return None
        properties = ET.Element("properties")
        for name, value in reporter.properties:
            if name not in self.names:
                properties.append(ET.Element("property", name=name, value=value))
                continue
            element = self.elements.get((name, value))
            if element is None:
                element = ET.Element("property", name=name, value=value)
                self.elements[(name, value)] = element
            properties.append(element)
        return properties
