"""pytest-xdist's worker protocol, spoken by a ``--gold`` run so xdist-aware plugins work.

A pytest-gold worker sets ``config.workerinput`` as an xdist worker does, and plugins
that see it (junitxml, cacheprovider, pytest-cov, pytest-randomly, pytest-html, ...)
leave files and summaries to the controller. Several of them also expect their other
half to have run on the controller, through xdist's hooks:

* ``pytest_configure_node(node)``, called before a worker starts, where they put what
  the worker needs into ``node.workerinput`` (pytest-randomly its seed, pytest-cov where
  the controller's data lives, pytest-rerunfailures the port of its status server);
* ``pytest_testnodedown(node, error)``, called when a worker's session has ended, with
  what the worker's plugins left in ``config.workeroutput`` (pytest-cov its coverage
  data, syrupy its snapshot report).

Here one *node* stands for one engine's share of a run (:class:`EngineNode`): it is
configured before the first batch goes to the engine, its ``workerinput`` travels in
the engine's :class:`~pytest_gold.protocol.messages.RunSpec`, and it goes down once the run
has ended, with the ``workeroutput`` of the engine's worker, or with an error when the
worker never finished its session (it crashed, was stopped, or the engine was lost).
The plugins guard these hooks themselves (``optionalhook=True``, or registered only
when xdist is installed); :mod:`pytest_gold.pluginshims` fills in for the few that
need xdist installed to take part.
"""

from __future__ import annotations

import base64
import os
import re
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_gold.protocol.control import WorkerFinished
from pytest_gold.protocol.messages import EngineInfo, RunSpec

#: testnodedown's error for an engine whose worker's output never arrived.
NO_OUTPUT = "its worker ended without finishing its pytest session (crashed, stopped or lost)"
#: The environment pytest-xdist gives its workers (code reads them to name resources).
WORKER_ENV = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_TESTRUNUID", "PYTEST_XDIST_WORKER_COUNT")
#: pytest's own environment variables: a worker must load the plugins and options its
#: controller loaded (a plugin on one side only breaks the protocol, e.g. pytest-randomly
#: on a worker without its seed).
PYTEST_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
#: Markers of values JSON has no type for, on their way through the worker's channel.
_BYTES, _TUPLE = "$gold-bytes", "$gold-tuple"


# -- values through JSON ---------------------------------------------------------------


def to_channel(value: Any) -> Any:
    """``value`` (what execnet carries for xdist: bytes, tuples, lists, dicts, scalars) as
    JSON-compatible data; TypeError for anything else."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return {_BYTES: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple):
        return {_TUPLE: [to_channel(item) for item in value]}
    if isinstance(value, list):
        return [to_channel(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("a dict with keys that are not strings")
        return {key: to_channel(item) for key, item in value.items()}
    raise TypeError(f"a {type(value).__module__}.{type(value).__qualname__}")


def from_channel(value: Any) -> Any:
    if isinstance(value, list):
        return [from_channel(item) for item in value]
    if isinstance(value, dict):
        if set(value) == {_BYTES}:
            return base64.b64decode(value[_BYTES])
        if set(value) == {_TUPLE}:
            return tuple(from_channel(item) for item in value[_TUPLE])
        return {key: from_channel(item) for key, item in value.items()}
    return value


def mapping_to_channel(mapping: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """Each entry that can travel; a line in ``problems`` for each that cannot."""
    out = {}
    for key, value in mapping.items():
        try:
            out[str(key)] = to_channel(value)
        except TypeError as error:
            problems.append(f"{key!r} ({error})")
    return out


# -- the controller's side ---------------------------------------------------------------


class EngineNode:
    """One engine's share of a run, shaped like pytest-xdist's ``WorkerController`` in
    what plugins read: ``config``, ``workerinput``, ``workeroutput``, ``gateway.id``,
    ``gateway._rinfo()``, ``nodemanager.roots``, ``workerinfo``."""

    def __init__(
        self, config: pytest.Config, engine: EngineInfo, workerinput: dict[str, Any]
    ) -> None:
        self.config = config
        self.engine = engine
        self.workerinput = workerinput
        #: Set when the node goes down with its worker's output.
        self.workeroutput: dict[str, Any]
        version = (*[int(part) for part in re.findall(r"\d+", engine.python)[:3]], 0, 0, 0)[:3]
        remote_info = SimpleNamespace(
            platform=engine.platform,
            version_info=(*version, "final", 0),
            executable=engine.executable,
            cwd=str(config.invocation_params.dir),
            pid=engine.pid,
        )
        self.gateway = SimpleNamespace(
            id=engine.tag,
            spec=SimpleNamespace(id=engine.tag, popen=False, chdir=None, ssh=None, via=None),
            _rinfo=lambda update=False: remote_info,
        )
        self.nodemanager = SimpleNamespace(roots=[], specs=[], testrunuid=workerinput["testrunuid"])
        self.workerinfo = {
            "id": engine.tag,
            "sysplatform": engine.platform,
            "version_info": remote_info.version_info,
            "executable": engine.executable,
            "cwd": remote_info.cwd,
        }
        self.shutting_down = False

    def __repr__(self) -> str:
        return f"<EngineNode {self.engine.tag}>"


class EngineNodes:
    """The nodes of one run on the controller: configured on first use of an engine,
    brought down once each."""

    def __init__(
        self, config: pytest.Config, run_id: str, write_line: Callable[[str], None]
    ) -> None:
        self.config = config
        self.run_id = run_id
        self.write_line = write_line
        self.nodes: dict[int, EngineNode] = {}
        self.specs: dict[int, dict[str, Any]] = {}
        self.down: set[int] = set()

    @property
    def wants_output(self) -> bool:
        """Whether a plugin here reads what workers leave in ``workeroutput``: then the
        end of the run waits for the workers' ``pytest_sessionfinish``."""
        hook = getattr(self.config.hook, "pytest_testnodedown", None)
        return hook is not None and bool(hook.get_hookimpls())

    def spec_for(
        self,
        engine: EngineInfo,
        wire_spec: dict[str, Any],
        engine_count: int,
        controller_machine: str,
    ) -> dict[str, Any]:
        """The run spec for ``engine``'s worker, with its node's ``workerinput``."""
        spec = self.specs.get(engine.engine_id)
        if spec is not None:
            return spec
        workerinput: dict[str, Any] = {
            "workerid": engine.tag,
            "workercount": engine_count,
            "testrunuid": self.run_id,
            "mainargv": list(sys.argv),
        }
        node = EngineNode(self.config, engine, workerinput)
        self.nodes[engine.engine_id] = node
        hook = getattr(self.config.hook, "pytest_configure_node", None)
        if hook is not None:
            hook(node=node)
        problems: list[str] = []
        spec = {
            **wire_spec,
            "workerinput": mapping_to_channel(node.workerinput, problems),
            # 127.0.0.1 on the engine's machine is the controller's: servers that plugins
            # start on the controller's loopback (pytest-rerunfailures) are reachable.
            "shares_loopback": bool(controller_machine) and engine.machine == controller_machine,
        }
        if problems:
            self.write_line(
                f"gold: plugins put values into workerinput that cannot be sent to the "
                f"worker on {engine.tag}, left out: {', '.join(problems)}"
            )
        self.specs[engine.engine_id] = spec
        return spec

    def node_down(self, engine_id: int, workeroutput: Any, error: str | None = None) -> None:
        """``pytest_testnodedown`` for the engine's node (once; unknown engines ignored),
        with the worker's output, else with ``error`` (:data:`NO_OUTPUT` by default)."""
        node = self.nodes.get(engine_id)
        if node is None or engine_id in self.down:
            return
        self.down.add(engine_id)
        if workeroutput is not None:
            node.workeroutput = from_channel(workeroutput)
            error = None
        elif error is None:
            error = NO_OUTPUT
        node.shutting_down = True
        hook = getattr(self.config.hook, "pytest_testnodedown", None)
        if hook is not None:
            hook(node=node, error=error)

    def all_down(self, error: str = NO_OUTPUT) -> None:
        """Every node that has not gone down goes down now, with ``error``."""
        for engine_id in list(self.nodes):
            self.node_down(engine_id, None, error)


def pytest_environment() -> dict[str, str]:
    """The controller's :data:`PYTEST_ENV` variables that are set, for the workers."""
    return {name: os.environ[name] for name in PYTEST_ENV if name in os.environ}


# -- the worker's side ---------------------------------------------------------------


def set_worker_environment(spec: RunSpec) -> None:
    """The environment variables pytest-xdist sets in a worker before its session
    starts (conftest files read them at import to name per-worker resources)."""
    workerinput = spec.workerinput
    if not workerinput:
        return
    os.environ["PYTEST_XDIST_WORKER"] = str(workerinput.get("workerid", ""))
    os.environ["PYTEST_XDIST_TESTRUNUID"] = str(workerinput.get("testrunuid", spec.run_id))
    os.environ["PYTEST_XDIST_WORKER_COUNT"] = str(workerinput.get("workercount", 1))


def configure_worker(
    config: pytest.Config, spec: RunSpec, engine_tag: str, send: Callable[[WorkerFinished], None]
) -> None:
    """Set ``config.workerinput`` (what the controller's plugins put there, and xdist's
    own keys) and ``config.workeroutput``, which goes back when the session has ended."""
    workerinput = {
        "workerid": engine_tag,
        "workercount": spec.engine_count,
        "testrunuid": spec.run_id,
        **from_channel(spec.workerinput),
    }
    config.workerinput = workerinput  # type: ignore[attr-defined]
    config.workeroutput = {}  # type: ignore[attr-defined]
    import pytest_gold.pluginshims as pluginshims

    pluginshims.configure_worker(config, shares_loopback=spec.shares_loopback)
    config.pluginmanager.register(WorkerOutputSender(config, send), "gold-workeroutput")


class WorkerOutputSender:
    """Sends ``config.workeroutput`` once every ``pytest_sessionfinish`` ran (as xdist's
    worker does, with the same ``exitstatus``, ``shouldfail`` and ``shouldstop``)."""

    def __init__(self, config: pytest.Config, send: Callable[[WorkerFinished], None]) -> None:
        self.config = config
        self.send = send

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Any:
        workeroutput: dict[str, Any] = self.config.workeroutput  # type: ignore[attr-defined]
        workeroutput["exitstatus"] = int(exitstatus)
        workeroutput["shouldfail"] = session.shouldfail
        workeroutput["shouldstop"] = session.shouldstop
        try:
            return (yield)
        finally:
            problems: list[str] = []
            output = mapping_to_channel(workeroutput, problems)
            self.send(WorkerFinished(workeroutput=output, problems=problems))
