"""Where the controller of an SSH profile listens: an address of this machine every host reaches.

The engines on the hosts connect to the controller's address, so it must be one they
reach: never loopback when a host is another machine. :func:`route_to` finds, for one host,
its address and the address of this machine on the route to it (I/O: ``ssh -G`` and a UDP
socket that sends nothing); :func:`choose_controller_ip` and :func:`loopback_problem` are
pure and decide from those routes.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

#: The controller's address when every host is this machine.
LOOPBACK_IP = "127.0.0.1"
#: Any port does: connecting a UDP socket only picks the route.
PROBE_PORT = 22
#: How long ``ssh -G`` (which only reads ssh's configuration) may take.
SSH_CONFIG_SECONDS = 10


class RouteError(Exception):
    """The route to a host could not be worked out; the message says why."""


@dataclass(frozen=True)
class Route:
    #: The host as ssh is given it (``gold2``, ``me@gold2``, an alias).
    host: str
    #: The host's address.
    address: str
    #: This machine's address on the route to the host.
    source: str

    @property
    def local(self) -> bool:
        """The host is this machine: a loopback address, or one of this machine's own."""
        return is_loopback(self.address) or self.address == self.source


def is_loopback(address: str) -> bool:
    if address.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def ssh_hostname(location: str, ssh_args: list[str] | None = None) -> str:
    """The real host name behind an ssh alias (``ssh -G`` applies ~/.ssh/config)."""
    host = location.rsplit("@", 1)[-1].split(":")[0]  # ipyparallel also takes host:port
    try:
        output = subprocess.run(
            ["ssh", *(ssh_args or []), "-G", host],
            capture_output=True,
            text=True,
            timeout=SSH_CONFIG_SECONDS,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return host
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        if key == "hostname":
            return value
    return host


def resolve(hostname: str) -> str:
    """The IPv4 address of a host name (or the address itself)."""
    address = socket.getaddrinfo(hostname, PROBE_PORT, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
    return str(address[0])


def source_address(address: str) -> str:
    """The address of this machine that the kernel would use to reach ``address``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((address, PROBE_PORT))  # UDP: picks a route, sends nothing
        return str(probe.getsockname()[0])


def route_to(
    location: str,
    ssh_args: list[str] | None = None,
    *,
    hostname_of: Callable[[str, list[str] | None], str] | None = None,
    resolver: Callable[[str], str] | None = None,
    source_for: Callable[[str], str] | None = None,
) -> Route:
    """The route to one host (the I/O is injectable: ``ssh -G``, DNS, the routing table)."""
    hostname_of = hostname_of or ssh_hostname
    resolver = resolver or resolve
    source_for = source_for or source_address
    try:
        address = resolver(hostname_of(location, ssh_args))
        return Route(host=location, address=address, source=source_for(address))
    except OSError as error:
        raise RouteError(f"{location}: {error}") from None


def choose_controller_ip(routes: list[Route]) -> str:
    """The one address of this machine that every host reaches.

    Hosts that are this machine reach any of its addresses; the others decide. Loopback
    only when every host is this machine.
    """
    remote = [route for route in routes if not route.local]
    if not remote:
        return LOOPBACK_IP
    sources = sorted({route.source for route in remote})
    if len(sources) > 1:
        via = ", ".join(f"{route.host} via {route.source}" for route in remote)
        raise RouteError(
            f"this machine reaches the hosts from different addresses ({via}), and no one "
            "of them is sure to be reachable from every host. Give the address of this "
            "machine that all hosts reach with --controller-ip=ADDRESS."
        )
    if is_loopback(sources[0]):  # e.g. an alias that goes through a local tunnel
        raise RouteError(
            f"this machine reaches {remote[0].host} ({remote[0].address}) over loopback, "
            "which its engines cannot connect back to. Give this machine's address on the "
            "hosts' network with --controller-ip=ADDRESS."
        )
    return sources[0]


def loopback_problem(controller_ip: str, routes: list[Route]) -> str | None:
    """Why a loopback controller cannot work with these hosts (``None`` if it can)."""
    if not is_loopback(controller_ip):
        return None
    remote = [route for route in routes if not route.local]
    if not remote:
        return None
    names = ", ".join(
        route.host if route.host.endswith(route.address) else f"{route.host} ({route.address})"
        for route in remote
    )
    sources = sorted({route.source for route in remote if not is_loopback(route.source)})
    example = sources[0] if len(sources) == 1 else "192.168.1.10"
    one = len(remote) == 1
    return (
        f"the controller would listen on {controller_ip}, a loopback address that only this "
        f"machine reaches, but {names} {'is another machine' if one else 'are other machines'}"
        f": {'its' if one else 'their'} engines could never connect. Use the address of "
        f"this machine that the hosts reach, e.g. --controller-ip={example}."
    )
