"""ipyparallel profiles for SSH engines: what ``python -m pytest_gold profile`` writes and shows.

The profile is ordinary ipyparallel configuration (``ipcluster_config.py``), so
``ipcluster start --profile=NAME`` and ``pytest --gold --gold-profile=NAME`` start the
same cluster with ipyparallel's own SSH launchers. The pure parts (parsing hosts,
rendering the config text, summarising a loaded config) have no I/O.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_gold.protocol.messages import HOST_ENV
from pytest_gold.settings import DEFAULT_WORKER_ENV

#: Thread counts of numerical libraries: one engine per core must not start a thread per
#: core. The workers' defaults, and those of two more libraries.
BLAS_THREAD_ENV = {
    **DEFAULT_WORKER_ENV,
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
CONFIG_FILE = "ipcluster_config.py"
#: pytest-gold's SSH engine launcher (:mod:`pytest_gold.launch.sshlauncher`), as profiles name it.
LAUNCHER_PATH = "pytest_gold.launch.sshlauncher.GoldSSHEngineSetLauncher"
#: The controller's own configuration: ipyparallel starts the controller as a process of
#: its own, which reads this file of the profile (not ipcluster_config.py).
CONTROLLER_CONFIG_FILE = "ipcontroller_config.py"
#: The controller's heartbeat, in ms, and how many beats in a row an engine may miss before
#: it counts as lost: about 10 s to notice a lost host (ipyparallel's 3000 ms and 10 misses
#: take 33 s), and a registering engine is seen within a second.
HEARTBEAT_PERIOD_MS = 1000
HEARTBEAT_MISSES = 9
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
        """The short host name shown in reports (``gold3``, not ``me@gold3.example.org``);
        an IP address is a name of its own (``192.0.2.2``, never ``192``)."""
        return host_name(self.location)


def host_name(location: str) -> str:
    host = location.rsplit("@", 1)[-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.split(".")[0]
    return host


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

# ipyparallel's SSH launcher as pytest-gold runs it on a shared filesystem: one ssh
# command per host starts (watches, stops) all of its engines, every host at once, and
# the engines' logs stay in this profile's log directory (nothing fetched over scp).
# It takes all of c.SSHEngineSetLauncher's settings below; "ssh" is ipyparallel's own.
c.Cluster.engine_launcher_class = {LAUNCHER_PATH!r}
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
# For ipyparallel's own launcher (engine_launcher_class = "ssh"): no pause between engines.
c.SSHEngineSetLauncher.delay = 0
"""


def render_controller_config(command: str, now: datetime.datetime) -> str:
    """The profile's ``ipcontroller_config.py``: a heartbeat that notices a lost host soon."""
    seconds = HEARTBEAT_PERIOD_MS * (HEARTBEAT_MISSES + 1) / 1000
    return f"""\
# Written by pytest-gold on {now:%Y-%m-%d %H:%M} with:
#   {command}
c = get_config()  # noqa: F821

# The controller pings every engine every {HEARTBEAT_PERIOD_MS} ms; an engine that misses
# {HEARTBEAT_MISSES + 1} pings in a row ({seconds:g} s) counts as lost, and the cases it was running
# go to other engines. ipyparallel's default (every 3000 ms, lost after 11 missed) takes 33 s.
# Raise max_heartmonitor_misses where the network or the hosts can pause longer than that:
# an engine that is only slow to answer is dropped too.
c.HeartMonitor.period = {HEARTBEAT_PERIOD_MS}
c.HeartMonitor.max_heartmonitor_misses = {HEARTBEAT_MISSES}
"""


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
    #: As configured; ``None``: ipyparallel's default, 127.0.0.1.
    controller_ip: str | None
    remote_python: str | None
    ssh_args: list[str]
    copies_files: bool
    running: bool
    #: pytest-gold's SSH launcher (one ssh command per host) rather than ipyparallel's.
    gold_launcher: bool = False
    #: From the profile's ipcontroller_config.py; ``None``: ipyparallel's defaults.
    heartbeat_ms: int | None = None
    heartbeat_misses: int | None = None

    @property
    def capped(self) -> bool:
        """No explicit count: ipyparallel would start at most this machine's CPU count."""
        return self.engine_count is None

    @property
    def ssh(self) -> bool:
        return self.engine_launcher == "ssh"

    @property
    def host_names(self) -> dict[str, int]:
        """Engines by the host name runs show (``PYTEST_GOLD_HOST`` where the profile sets
        it, else the short host name)."""
        names: dict[str, int] = {}
        for host, count in self.engines_by_host.items():
            name = self.environment_by_host.get(host, {}).get(HOST_ENV) or host_name(host)
            names[name] = names.get(name, 0) + count
        return names


#: ipyparallel's heartbeat: 3000 ms, an engine lost after more than 10 misses in a row.
IPYPARALLEL_HEARTBEAT = (3000, 10)


def launcher_name(value: Any, default: str) -> str:
    if not value:
        return default
    if _is_gold_launcher(value):
        return "ssh"
    text = value if isinstance(value, str) else f"{value.__module__}.{value.__name__}"
    return (
        text.rsplit(".", 1)[-1]
        .removesuffix("EngineSetLauncher")
        .removesuffix("ControllerLauncher")
        .lower()
        or default
    )


def _is_gold_launcher(value: Any) -> bool:
    text = value if isinstance(value, str) else f"{value.__module__}.{value.__name__}"
    return text.replace(":", ".") == LAUNCHER_PATH


def summarize(
    name: str, directory: Path, config: Any, running: bool, controller_config: Any = None
) -> ProfileSummary:
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
    gold_launcher = _is_gold_launcher(cluster.get("engine_launcher_class") or "")
    heart = (controller_config or {}).get("HeartMonitor", {})
    return ProfileSummary(
        name=name,
        directory=directory,
        controller=launcher_name(cluster.get("controller_launcher_class"), "local"),
        engine_launcher=engine_launcher,
        engine_count=None if count is None else int(count),
        engines_by_host=engines_by_host,
        environment_by_host=environment_by_host,
        controller_ip=str(cluster["controller_ip"]) if cluster.get("controller_ip") else None,
        remote_python=ssh_set.get("remote_python"),
        ssh_args=list(ssh_set.get("ssh_args", [])),
        copies_files=engine_launcher == "ssh" and not gold_launcher and to_send != [],
        running=running,
        gold_launcher=gold_launcher,
        heartbeat_ms=int(heart["period"]) if "period" in heart else None,
        heartbeat_misses=(
            int(heart["max_heartmonitor_misses"]) if "max_heartmonitor_misses" in heart else None
        ),
    )


def describe(
    summary: ProfileSummary, cpu_count: int, loopback_problem: str | None = None
) -> list[str]:
    """The lines of ``profile show``; ``loopback_problem``: why the controller's loopback
    address cannot work with the profile's hosts (see :func:`routes.loopback_problem`)."""
    listening = summary.controller_ip or "127.0.0.1 (ipyparallel's default)"
    lines = [
        f"profile {summary.name!r} in {summary.directory}",
        f"  cluster: {'running' if summary.running else 'not running'}",
        f"  controller: {summary.controller} launcher, listening on {listening}",
    ]
    if loopback_problem:
        lines.append(
            f"  warning: {loopback_problem} Set c.Cluster.controller_ip in {CONFIG_FILE}, or "
            f"recreate the profile with 'python -m pytest_gold profile create {summary.name} "
            "... --force'."
        )
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
    if summary.ssh:
        lines.append(
            "  ssh launcher: "
            + (
                "pytest-gold's (one ssh command per host, all hosts at once)"
                if summary.gold_launcher
                else "ipyparallel's"
            )
        )
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
        if not summary.gold_launcher:
            lines.append(
                "  note: ipyparallel's own SSH launcher starts and stops the engines one "
                "after another, fetching each engine's log over scp when it stops (minutes "
                "for a few dozen engines); 'python -m pytest_gold profile create' writes "
                "profiles with pytest-gold's, which does each host in one ssh command."
            )
    period, misses = IPYPARALLEL_HEARTBEAT
    default = summary.heartbeat_ms is None and summary.heartbeat_misses is None
    period = summary.heartbeat_ms or period
    misses = summary.heartbeat_misses if summary.heartbeat_misses is not None else misses
    lines.append(
        f"  lost engines noticed after: {period * (misses + 1) / 1000:g} s (heartbeat "
        f"{period} ms, {misses + 1} missed in a row"
        + (", ipyparallel's default)" if default else f"; {CONTROLLER_CONFIG_FILE})")
    )
    return lines


def profile_exists_message(path: Path) -> str:
    return (
        f"{path} exists already; pass --force to replace it (the old file is kept as "
        f"{path.name}.bak)."
    )


def write_configs(directory: Path, texts: dict[str, str], force: bool) -> list[Path]:
    """Write the profile's config files; never one that exists, unless ``force`` (then the
    old one is kept as ``.bak``)."""
    paths = [directory / name for name in texts]
    existing = [path for path in paths if path.exists()]
    if existing and not force:
        raise ProfileError(profile_exists_message(existing[0]))
    for path in existing:
        os.replace(path, path.with_name(path.name + ".bak"))
    for path in paths:
        path.write_text(texts[path.name])
    return paths
