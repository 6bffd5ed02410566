"""Where an SSH profile's controller listens: routes to the hosts, without a network.

The routes' I/O (``ssh -G``, DNS, the routing table) is replaced by a table: ``thishost``
is this machine (Debian maps its own name to 127.0.1.1), ``gold5``/``gold6`` are on the lab
network this machine reaches as 10.0.0.1, ``far`` on another one it reaches as 192.168.7.1.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from traitlets.config.loader import PyFileConfigLoader

from pytest_gold.cli.main import main
from pytest_gold.launch.profiles import parse_ssh_host
from pytest_gold.launch.routes import (
    LOOPBACK_IP,
    Route,
    RouteError,
    choose_controller_ip,
    is_loopback,
    loopback_problem,
    route_to,
)

#: host name -> (its address, this machine's address on the route to it)
NETWORK = {
    "thishost": ("127.0.1.1", "127.0.0.1"),
    "localhost": ("127.0.0.1", "127.0.0.1"),
    "headnode": ("10.0.0.1", "10.0.0.1"),  # this machine by its lab address
    "gold5": ("10.0.0.5", "10.0.0.1"),
    "gold6": ("10.0.0.6", "10.0.0.1"),
    "far": ("172.16.0.9", "192.168.7.1"),
}
SOURCES = {address: source for address, source in NETWORK.values()}


def route(host: str) -> Route:
    return route_to(
        host,
        hostname_of=lambda location, args: location.rsplit("@", 1)[-1],
        resolver=lambda name: NETWORK[name][0],
        source_for=SOURCES.__getitem__,
    )


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's routes come from NETWORK."""

    def resolve(name: str) -> str:
        if name not in NETWORK:
            raise OSError(f"Name or service not known: {name}")
        return NETWORK[name][0]

    monkeypatch.setattr("pytest_gold.launch.routes.ssh_hostname", lambda location, args: location)
    monkeypatch.setattr("pytest_gold.launch.routes.resolve", resolve)
    monkeypatch.setattr("pytest_gold.launch.routes.source_address", SOURCES.__getitem__)


def test_this_machine_listed_first_does_not_put_the_controller_on_loopback():
    routes = [route("thishost"), route("gold5"), route("gold6")]
    assert routes[0].local and not routes[1].local
    assert choose_controller_ip(routes) == "10.0.0.1"


def test_loopback_only_when_every_host_is_this_machine():
    assert choose_controller_ip([route("thishost"), route("localhost")]) == LOOPBACK_IP
    # This machine by its own lab address is this machine too.
    assert route("headnode").local
    assert choose_controller_ip([route("headnode")]) == LOOPBACK_IP


def test_hosts_reached_from_different_addresses_need_an_explicit_one():
    with pytest.raises(
        RouteError, match=r"different addresses.*gold5 via 10\.0\.0\.1.*--controller-ip"
    ):
        choose_controller_ip([route("gold5"), route("far")])


def test_a_loopback_controller_with_a_remote_host_is_explained():
    problem = loopback_problem("127.0.0.1", [route("thishost"), route("gold5")])
    assert problem is not None
    assert "gold5 (10.0.0.5) is another machine" in problem
    assert "--controller-ip=10.0.0.1" in problem
    assert loopback_problem("10.0.0.1", [route("gold5")]) is None
    assert loopback_problem("127.0.0.1", [route("thishost")]) is None
    assert loopback_problem("localhost", [route("gold5")]) is not None


def test_an_unknown_host_is_a_route_error():
    with pytest.raises(RouteError, match="nosuch"):
        route_to("nosuch", hostname_of=lambda location, args: location, resolver=_unknown)


def _unknown(name: str) -> str:
    raise OSError(f"Name or service not known: {name}")


addresses = st.tuples(st.integers(1, 254), st.integers(0, 255)).map(lambda t: f"10.1.{t[0]}.{t[1]}")


@given(
    local=st.lists(st.sampled_from(["127.0.0.1", "127.0.1.1", "127.9.9.9"]), max_size=3),
    remote=st.lists(addresses, max_size=4),
    source=addresses,
)
def test_the_choice_is_never_loopback_when_a_host_is_remote(local, remote, source):
    routes = [Route(f"l{i}", address, "127.0.0.1") for i, address in enumerate(local)]
    routes += [
        Route(f"r{i}", address, source) for i, address in enumerate(remote) if address != source
    ]
    chosen = choose_controller_ip(routes)
    if any(not r.local for r in routes):
        assert chosen == source and not is_loopback(chosen)
    else:
        assert chosen == LOOPBACK_IP


def test_an_ip_address_is_a_host_name_of_its_own():
    assert parse_ssh_host("192.0.2.2:2").name == "192.0.2.2"
    assert parse_ssh_host("me@192.0.2.2:2").name == "192.0.2.2"
    assert parse_ssh_host("gold2.example.org:2").name == "gold2"


# -- the command line ------------------------------------------------------------------------


def create(tmp_path, *args: str) -> int:
    return main(["profile", "create", "lab", "--ipython-dir", str(tmp_path), *args])


def written(tmp_path):
    return PyFileConfigLoader(
        "ipcluster_config.py", path=str(tmp_path / "profile_lab")
    ).load_config()


def test_create_chooses_the_address_the_remote_hosts_reach(tmp_path, network, capsys):
    assert create(tmp_path, "--ssh-host=thishost:2", "--ssh-host=gold5:2") == 0
    assert written(tmp_path).Cluster.controller_ip == "10.0.0.1"
    assert "listening on 10.0.0.1" in capsys.readouterr().out


def test_create_refuses_a_loopback_controller_with_remote_hosts(tmp_path, network, capsys):
    code = create(
        tmp_path, "--ssh-host=thishost:2", "--ssh-host=gold5:2", "--controller-ip=127.0.0.1"
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "gold5 (10.0.0.5) is another machine" in error and "--controller-ip=10.0.0.1" in error
    assert not (tmp_path / "profile_lab" / "ipcluster_config.py").exists()


def test_create_says_what_to_give_when_a_host_cannot_be_resolved(tmp_path, network, capsys):
    assert create(tmp_path, "--ssh-host=gold5:2", "--ssh-host=nosuch:2") == 2
    error = capsys.readouterr().err
    assert "nosuch" in error and "--controller-ip" in error


def test_create_names_an_ip_host_by_its_address(tmp_path, network):
    assert create(tmp_path, "--ssh-host=10.0.0.5:2", "--controller-ip=10.0.0.1") == 0
    engines = written(tmp_path).SSHEngineSetLauncher.engines
    assert engines["10.0.0.5"]["environment"]["PYTEST_GOLD_HOST"] == "10.0.0.5"


def test_show_warns_about_a_loopback_controller_with_remote_hosts(tmp_path, network, capsys):
    profile = tmp_path / "profile_lab"
    profile.mkdir()
    (profile / "ipcluster_config.py").write_text(
        "c = get_config()\n"
        "c.Cluster.engine_launcher_class = 'ssh'\n"
        "c.Cluster.n = 4\n"
        "c.Cluster.controller_ip = '127.0.0.1'\n"
        "c.SSHEngineSetLauncher.engines = {'thishost': 2, 'gold5': 2}\n"
    )
    assert main(["profile", "show", "lab", "--ipython-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "warning: the controller would listen on 127.0.0.1" in shown
    assert "gold5 (10.0.0.5) is another machine" in shown
    (profile / "ipcluster_config.py").write_text(
        (profile / "ipcluster_config.py").read_text().replace("'gold5': 2", "'headnode': 2")
    )
    assert main(["profile", "show", "lab", "--ipython-dir", str(tmp_path)]) == 0
    assert "warning" not in capsys.readouterr().out
