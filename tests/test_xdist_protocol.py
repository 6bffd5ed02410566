"""pytest-xdist's worker protocol under --gold: what a controller plugin puts into
``node.workerinput`` reaches the workers before their ``pytest_configure``, and what the
workers leave in ``config.workeroutput`` comes back through ``pytest_testnodedown``.

A conftest plays an xdist-aware plugin here; tests/plugins/ runs the real ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_gold.protocol.messages import EngineInfo
from pytest_gold.protocol.xdistcompat import NO_OUTPUT, EngineNodes, from_channel, to_channel

PLUGIN_CONFTEST = """
import json
import os

import pytest

LOG = {log!r}
#: What pytest-xdist sets before a worker's conftest files are imported.
WORKER_AT_IMPORT = os.environ.get("PYTEST_XDIST_WORKER")
RAN = []


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    node.workerinput["sim_token"] = "for-" + node.gateway.id
    node.workerinput["sim_blob"] = b"\\x00\\xff"
    node.workerinput["sim_pair"] = (1, "two")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        # Read before any other plugin's pytest_configure, as plugins do.
        config.workeroutput["sim_token"] = workerinput["sim_token"]
        config.workeroutput["sim_blob"] = workerinput["sim_blob"]
        config.workeroutput["sim_pair"] = workerinput["sim_pair"]
        count = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
        config.workeroutput["sim_env"] = [WORKER_AT_IMPORT, count]


@pytest.fixture(autouse=True)
def note_case(request):
    RAN.append(request.node.nodeid)


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        session.config.workeroutput["sim_ran"] = list(RAN)
        if os.path.exists("exit-before-output"):
            os._exit(0)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    output = getattr(node, "workeroutput", None)
    line = {{"id": node.gateway.id, "error": None if error is None else str(error)}}
    if output is not None:
        line.update(
            token=output["sim_token"],
            blob=output["sim_blob"].hex(),
            pair=list(output["sim_pair"]) + [type(output["sim_pair"]).__name__],
            env=output["sim_env"],
            ran=output["sim_ran"],
            exitstatus=output["exitstatus"],
            workerid=node.workerinput["workerid"],
        )
    with open(LOG, "a") as file:
        file.write(json.dumps(line) + "\\n")
"""

CASES = """
import pytest

@pytest.mark.parametrize("i", range(6))
def test_case(i):
    pass
"""


def _nodes_down(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.cluster
def test_workerinput_out_and_workeroutput_back(pytester: pytest.Pytester, gold_args) -> None:
    log = pytester.path / "nodes.log"
    pytester.makeconftest(PLUGIN_CONFTEST.format(log=str(log)))
    pytester.makepyfile(test_cases=CASES)
    result = pytester.runpytest(*gold_args, "--gold-batch-seconds=0.001")
    result.assert_outcomes(passed=6)
    nodes = _nodes_down(log)
    assert nodes, result.stdout.str()
    ran: list[str] = []
    for node in nodes:  # one per engine that ran cases, each with its own values
        assert node["error"] is None
        assert node["token"] == "for-" + node["id"] == "for-" + node["workerid"]
        assert node["blob"] == "00ff"
        assert node["pair"] == [1, "two", "tuple"]
        assert node["env"] == [node["id"], "2"]
        assert node["exitstatus"] == 0
        ran += node["ran"]
    assert len({node["id"] for node in nodes}) == len(nodes)
    assert sorted(ran) == [f"test_cases.py::test_case[{i}]" for i in range(6)]


@pytest.mark.cluster
def test_worker_without_output_goes_down_with_an_error(
    pytester: pytest.Pytester, gold_args
) -> None:
    log = pytester.path / "nodes.log"
    pytester.makeconftest(PLUGIN_CONFTEST.format(log=str(log)))
    pytester.makepyfile(test_cases=CASES)
    (pytester.path / "exit-before-output").touch()
    result = pytester.runpytest(*gold_args)
    result.assert_outcomes(passed=6)  # the cases' results stand
    nodes = _nodes_down(log)
    assert nodes and all(node["error"] == NO_OUTPUT for node in nodes), nodes


@pytest.mark.cluster
def test_workers_get_the_controllers_pytest_environment(
    pytester: pytest.Pytester, gold_args, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PYTEST_ADDOPTS (and PYTEST_PLUGINS, PYTEST_DISABLE_PLUGIN_AUTOLOAD) decide which
    plugins and options a session has: the workers must have the controller's."""
    pytester.makeconftest(
        "def pytest_addoption(parser):\n    parser.addoption('--sim-level', default='0')\n"
    )
    pytester.makepyfile(
        test_level="def test_level(pytestconfig):\n"
        "    assert pytestconfig.getoption('sim_level') == '3'\n"
    )
    monkeypatch.setenv("PYTEST_ADDOPTS", "--sim-level=3")
    pytester.runpytest(*gold_args).assert_outcomes(passed=1)


# -- the controller's bookkeeping, without a cluster ------------------------------------

_channel_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@given(_channel_values)
def test_channel_round_trip(value: Any) -> None:
    assert from_channel(json.loads(json.dumps(to_channel(value)))) == value


def test_channel_refuses_what_json_and_execnet_cannot_carry() -> None:
    with pytest.raises(TypeError):
        to_channel(object())
    with pytest.raises(TypeError):
        to_channel({1: "not a string key"})


class _Hook:
    def __init__(self, implemented: bool = True) -> None:
        self.calls: list[dict[str, Any]] = []
        self.implemented = implemented

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)

    def get_hookimpls(self) -> list[object]:
        return [object()] if self.implemented else []


def _engine(engine_id: int, machine: str) -> EngineInfo:
    return EngineInfo(
        engine_id, "gold3", 100 + engine_id, "3.11.7", sys.executable, "linux", machine=machine
    )


def test_nodes_configured_once_per_engine_and_down_once() -> None:
    configure, down = _Hook(), _Hook()
    config = SimpleNamespace(
        hook=SimpleNamespace(pytest_configure_node=configure, pytest_testnodedown=down),
        invocation_params=SimpleNamespace(dir=Path.cwd()),
    )
    lines: list[str] = []
    nodes = EngineNodes(config, "run-1", lines.append)  # type: ignore[arg-type]
    here, elsewhere = _engine(0, "boot/ns"), _engine(1, "other/ns")
    spec = nodes.spec_for(here, {"run_id": "run-1"}, 2, "boot/ns")
    assert nodes.spec_for(here, {"run_id": "run-1"}, 2, "boot/ns") is spec
    assert spec["shares_loopback"] is True
    assert spec["workerinput"]["workerid"] == "gold3:e0"
    assert spec["workerinput"]["testrunuid"] == "run-1"
    assert nodes.spec_for(elsewhere, {}, 2, "boot/ns")["shares_loopback"] is False
    assert nodes.spec_for(_engine(2, ""), {}, 2, "")["shares_loopback"] is False
    assert [call["node"].gateway.id for call in configure.calls] == [
        "gold3:e0",
        "gold3:e1",
        "gold3:e2",
    ]
    assert nodes.wants_output
    nodes.node_down(0, {"k": {"$gold-bytes": "AP8="}}, None)
    nodes.node_down(0, None, "late")  # once only
    nodes.all_down()
    assert [(call["node"].gateway.id, call["error"]) for call in down.calls] == [
        ("gold3:e0", None),
        ("gold3:e1", NO_OUTPUT),
        ("gold3:e2", NO_OUTPUT),
    ]
    assert down.calls[0]["node"].workeroutput == {"k": b"\x00\xff"}
    assert not lines


def test_unsendable_workerinput_is_left_out_with_a_line() -> None:
    def configure(node: Any) -> None:
        node.workerinput["lock"] = object()

    config = SimpleNamespace(
        hook=SimpleNamespace(pytest_configure_node=lambda node: configure(node)),
        invocation_params=SimpleNamespace(dir=Path.cwd()),
    )
    lines: list[str] = []
    nodes = EngineNodes(config, "run-1", lines.append)  # type: ignore[arg-type]
    spec = nodes.spec_for(_engine(0, "m"), {}, 1, "m")
    assert "lock" not in spec["workerinput"]
    assert len(lines) == 1 and "'lock'" in lines[0] and "gold3:e0" in lines[0]
    assert not nodes.wants_output  # no pytest_testnodedown anywhere: workers not waited for
