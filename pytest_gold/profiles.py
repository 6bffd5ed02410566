"""ipyparallel profiles for SSH engines: what ``python -m pytest_gold profile`` writes and shows.

The profile is ordinary ipyparallel configuration (``ipcluster_config.py``), so
``ipcluster start --profile=NAME`` and ``pytest --gold --gold-profile=NAME`` start the
same cluster with ipyparallel's own SSH launchers. The pure parts (parsing hosts,
rendering the config text, summarising a loaded config) have no I/O.
"""

from __future__ import annotations

import datetime
import os
import re
import shlex
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .messages import HOST_ENV
from .settings import DEFAULT_WORKER_ENV

#: Thread counts of numerical libraries: one engine per core must not start a thread per
#: core. The workers' defaults, and those of two more libraries.
BLAS_THREAD_ENV = {
    **DEFAULT_WORKER_ENV,
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
CONFIG_FILE = "ipcluster_config.py"
_HOST_PATTERN = re.compile(r"^(?:[\w.+-]+@)?[A-Za-z0-9_.-]+$")


class ProfileError(Exception):
    """Bad input for a profile; the message says what to do."""


@dataclass(frozen=True)
class SSHHost:
    #: What ssh is given: ``host``, ``user@host`` or an alias from ``~/.ssh/config``.
    location: str
    engines: int

    @property
    def name(self) -> str:
        """The short host name shown in reports (``gold3``, not ``me@gold3.example.org``)."""
        return self.location.rsplit("@", 1)[-1].split(".")[0]


@dataclass
class ProfileSpec:
    hosts: list[SSHHost]
    controller_ip: str
    remote_python: str = "python3"
    ssh_args: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def engine_count(self) -> int:
        return sum(host.engines for host in self.hosts)


def parse_ssh_host(text: str) -> SSHHost:
    """``gold2.example.org:4`` → 4 engines on that host (the count is required)."""
    location, sep, count = text.rpartition(":")
    if not sep or not _HOST_PATTERN.match(location) or not count.isdigit() or int(count) < 1:
        raise ProfileError(
            f"--ssh-host {text!r}: expected HOST:ENGINES, e.g. 'gold2.example.org:4' or "
            "'me@gold2:4' (HOST as ssh takes it, ENGINES a positive number, usually the "
            "host's core count). For a non-standard ssh port, name the host in "
            "~/.ssh/config with a Port line and use that name."
        )
    return SSHHost(location=location, engines=int(count))


def parse_env(entries: list[str]) -> dict[str, str]:
    env = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key.isidentifier():
            raise ProfileError(f"--env {entry!r}: expected KEY=VALUE, e.g. OMP_NUM_THREADS=2.")
        env[key] = value
    return env


def engine_environment(spec: ProfileSpec, host: SSHHost) -> dict[str, str]:
    return {**BLAS_THREAD_ENV, **spec.environment, HOST_ENV: host.name}


def render_config(spec: ProfileSpec, command: str, now: datetime.datetime) -> str:
    """The ``ipcluster_config.py`` of a profile with SSH engines on a shared filesystem."""
    if not spec.hosts:
        raise ProfileError("give at least one --ssh-host HOST:ENGINES.")
    names = [host.location for host in spec.hosts]
    if len(set(names)) != len(names):
        raise ProfileError("each --ssh-host may be given once; add its engines up instead.")
    engines = "".join(
        f"    {host.location!r}: {{\n"
        f"        'n': {host.engines},\n"
        f"        'environment': {engine_environment(spec, host)!r},\n"
        f"    }},\n"
        for host in spec.hosts
    )
    return f"""\
# Written by pytest-gold on {now:%Y-%m-%d %H:%M} with:
#   {command}
# Plain ipyparallel configuration: 'ipcluster start --profile=NAME' and
# 'pytest --gold --gold-profile=NAME' both start this cluster.
c = get_config()  # noqa: F821

c.Cluster.engine_launcher_class = "ssh"
# Explicit: ipyparallel caps an unset count at this machine's CPU count.
c.Cluster.n = {spec.engine_count}
# Where engines on the other hosts reach the controller (and only there).
c.Cluster.controller_ip = {spec.controller_ip!r}

# Engines per host; each host's engines get one thread per numerical library and
# {HOST_ENV}, the name pytest-gold shows for them in reports.
c.SSHEngineSetLauncher.engines = {{
{engines}}}
c.SSHEngineSetLauncher.remote_python = {spec.remote_python!r}
c.SSHEngineSetLauncher.ssh_args = {spec.ssh_args!r}
# A shared filesystem: engines read the connection file from this profile; nothing is
# copied to or from the hosts.
c.SSHEngineLauncher.to_send = []
c.SSHEngineLauncher.to_fetch = []
# Engines start one host after another; no pause between them.
c.SSHEngineSetLauncher.delay = 0
"""


def default_controller_ip(first_host: str, ssh_args: list[str] | None = None) -> str:
    """The address this machine uses to reach the first host: where its engines connect."""
    hostname = _ssh_hostname(first_host, ssh_args)
    try:
        address = socket.getaddrinfo(hostname, 22, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((address, 22))  # UDP: picks a route, sends nothing
            return probe.getsockname()[0]
    except OSError as error:
        raise ProfileError(
            f"could not work out which address of this machine {first_host} reaches "
            f"({error}); give it with --controller-ip, e.g. --controller-ip=192.168.1.10."
        ) from None


def _ssh_hostname(location: str, ssh_args: list[str] | None = None) -> str:
    """The real host name behind an ssh alias (``ssh -G`` applies ~/.ssh/config)."""
    host = location.rsplit("@", 1)[-1]
    try:
        output = subprocess.run(
            ["ssh", *(ssh_args or []), "-G", host],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return host
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        if key == "hostname":
            return value
    return host


# -- reading a profile back ----------------------------------------------------------------


@dataclass
class ProfileSummary:
    name: str
    directory: Path
    controller: str
    engine_launcher: str
    engine_count: int | None
    engines_by_host: dict[str, int]
    environment_by_host: dict[str, dict[str, str]]
    controller_ip: str
    remote_python: str | None
    ssh_args: list[str]
    copies_files: bool
    running: bool

    @property
    def capped(self) -> bool:
        """No explicit count: ipyparallel would start at most this machine's CPU count."""
        return self.engine_count is None


def launcher_name(value: Any, default: str) -> str:
    if not value:
        return default
    text = value if isinstance(value, str) else f"{value.__module__}.{value.__name__}"
    return (
        text.rsplit(".", 1)[-1]
        .removesuffix("EngineSetLauncher")
        .removesuffix("ControllerLauncher")
        .lower()
        or default
    )


def summarize(name: str, directory: Path, config: Any, running: bool) -> ProfileSummary:
    """What a loaded ipyparallel config will start (never the connection keys)."""
    cluster = config.get("Cluster", {})
    ssh_set = config.get("SSHEngineSetLauncher", {})
    engine_launcher = launcher_name(cluster.get("engine_launcher_class"), "local")
    engines_by_host: dict[str, int] = {}
    environment_by_host: dict[str, dict[str, str]] = {}
    if engine_launcher == "ssh":
        for host, value in dict(ssh_set.get("engines", {})).items():
            count = value.get("n", 1) if isinstance(value, dict) else value
            engines_by_host[host] = int(count)
            if isinstance(value, dict) and value.get("environment"):
                environment_by_host[host] = dict(value["environment"])
    count = cluster.get("n")
    to_send = config.get("SSHEngineLauncher", {}).get("to_send")
    return ProfileSummary(
        name=name,
        directory=directory,
        controller=launcher_name(cluster.get("controller_launcher_class"), "local"),
        engine_launcher=engine_launcher,
        engine_count=None if count is None else int(count),
        engines_by_host=engines_by_host,
        environment_by_host=environment_by_host,
        controller_ip=str(cluster.get("controller_ip") or "127.0.0.1 (ipyparallel's default)"),
        remote_python=ssh_set.get("remote_python"),
        ssh_args=list(ssh_set.get("ssh_args", [])),
        copies_files=engine_launcher == "ssh" and to_send != [],
        running=running,
    )


def describe(summary: ProfileSummary, cpu_count: int) -> list[str]:
    lines = [
        f"profile {summary.name!r} in {summary.directory}",
        f"  cluster: {'running' if summary.running else 'not running'}",
        f"  controller: {summary.controller} launcher, listening on {summary.controller_ip}",
    ]
    if summary.capped:
        will_start = f"no explicit count: at most {cpu_count} (this machine's CPUs)"
    else:
        will_start = f"{summary.engine_count}"
    lines.append(f"  engines: {summary.engine_launcher} launcher, {will_start}")
    for host, count in summary.engines_by_host.items():
        env = summary.environment_by_host.get(host, {})
        shown = " ".join(f"{key}={shlex.quote(value)}" for key, value in sorted(env.items()))
        lines.append(f"    {host}: {count}" + (f"  ({shown})" if shown else ""))
    in_hosts = sum(summary.engines_by_host.values())
    if summary.engines_by_host and summary.capped and in_hosts > cpu_count:
        lines.append(
            f"  warning: the hosts list {in_hosts} engines but ipyparallel will start only "
            f"{cpu_count}; set c.Cluster.n = {in_hosts} in {CONFIG_FILE}."
        )
    if summary.engine_launcher == "ssh":
        lines.append(f"  remote python: {summary.remote_python or 'python3'}")
        lines.append(f"  ssh options: {shlex.join(summary.ssh_args) or '(none)'}")
        lines.append(
            "  connection files: "
            + (
                "copied to each host (scp)"
                if summary.copies_files
                else "read from the shared filesystem (nothing copied)"
            )
        )
    return lines


def profile_exists_message(directory: Path) -> str:
    return (
        f"{directory / CONFIG_FILE} exists already; pass --force to replace it (the old "
        "file is kept as ipcluster_config.py.bak)."
    )


def write_config(directory: Path, text: str, force: bool) -> Path:
    path = directory / CONFIG_FILE
    if path.exists():
        if not force:
            raise ProfileError(profile_exists_message(directory))
        os.replace(path, path.with_name(CONFIG_FILE + ".bak"))
    path.write_text(text)
    return path
