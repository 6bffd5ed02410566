"""``python -m pytest_gold profile engines NAME HOST[:ENGINES] ...``: a host's engines again.

A host whose engines were lost (rebooted, its engines killed) does not come back by itself:
this starts the engines the profile defines on it, as a new engine set of the profile's
running cluster, recorded in the cluster's file so that ``ipcluster stop`` stops them too.
(``ipcluster engines`` would start them, but replaces the running cluster's file with one
that knows only the new engines: ``ipcluster stop`` would then leave the controller and the
other engines running.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pytest_gold.launch.profiles import HOST_ENV, ProfileError, host_name


def pick_hosts(configured: dict[str, Any], requested: list[str]) -> dict[str, dict[str, Any]]:
    """The ``SSHEngineSetLauncher.engines`` entries to start: each requested host (its ssh
    location, short name or ``PYTEST_GOLD_HOST``), with its count from the profile unless
    given as ``HOST:ENGINES``."""
    by_name: dict[str, str] = {}
    for location, value in configured.items():
        env = value.get("environment", {}) if isinstance(value, dict) else {}
        for alias in (location, host_name(location), env.get(HOST_ENV)):
            if alias:
                by_name.setdefault(alias, location)
    picked: dict[str, dict[str, Any]] = {}
    for text in requested:
        name, _, count = text.partition(":")
        found = by_name.get(name)
        if found is None:
            known = ", ".join(host_name(location) for location in configured) or "none"
            raise ProfileError(f"{name!r} is not a host of the profile (its hosts: {known}).")
        location = found
        value = configured[location]
        entry = dict(value) if isinstance(value, dict) else {"n": int(value)}
        entry.setdefault("n", 1)
        if count:
            if not count.isdigit() or int(count) < 1:
                raise ProfileError(f"{text!r}: expected HOST or HOST:ENGINES, e.g. gold7:2.")
            entry["n"] = int(count)
        picked[location] = entry
    return picked


def add_engines(name: str, directory: Path, hosts: list[str], cluster_id: str) -> list[str]:
    """Start the hosts' engines in the profile's running cluster; what to tell the user."""
    import ipyparallel as ipp

    try:
        cluster = ipp.Cluster.from_file(
            profile_dir=str(directory), cluster_id=cluster_id, log_level=logging.WARNING
        )
    except FileNotFoundError:
        raise ProfileError(
            f"the cluster of profile {name!r} is not running ('ipcluster list' shows the "
            f"running clusters); start it with 'ipcluster start --profile={name}'."
        ) from None
    configured = dict(cluster.config.get("SSHEngineSetLauncher", {}).get("engines", {}))
    if "ssh" not in str(cluster.engine_launcher_class).lower() or not configured:
        raise ProfileError(
            f"profile {name!r} does not start engines over SSH; start more engines with "
            f"'ipcluster engines --profile={name}'."
        )
    picked = pick_hosts(configured, hosts)
    count = sum(entry["n"] for entry in picked.values())
    try:
        cluster.start_engines_sync(n=count, engines=picked)
    except Exception as error:
        raise ProfileError(f"could not start the engines: {error}") from None
    on = ", ".join(f"{host_name(location)}: {e['n']}" for location, e in picked.items())
    return [
        f"started {count} engine{'s' if count != 1 else ''} in the cluster of profile "
        f"{name!r} ({on}); runs take them in as they register.",
        f"'ipcluster stop --profile={name}' stops them with the others.",
    ]
