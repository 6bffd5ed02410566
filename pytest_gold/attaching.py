"""Clusters of ipyparallel profiles: attach to a running one, or start it from the profile.

A cluster the run attached to is never stopped by it. One it started from the profile is
stopped at the end, unless ``--gold-keep-cluster`` leaves it for the next run.
"""

from __future__ import annotations

import logging
import stat
import time
from pathlib import Path
from typing import Any

import ipyparallel as ipp

from .cluster import ClusterError, ClusterHandle, Watchdog, _launcher_process_groups, abort_start

#: Permission bits that let someone other than the owner read (or list) a path.
OTHERS_READ = stat.S_IRWXG | stat.S_IRWXO


def profile_dir_of(profile: str) -> Path:
    from IPython.core.profiledir import ProfileDir, ProfileDirError
    from IPython.paths import get_ipython_dir

    ipython_dir = get_ipython_dir()
    try:
        return Path(ProfileDir.find_profile_dir_by_name(ipython_dir, profile).location)
    except ProfileDirError:
        raise ClusterError(
            f"--gold-profile {profile}: there is no IPython profile of that name in "
            f"{ipython_dir}. Check the name ('ipython profile list' shows them), or create "
            f"one: 'python -m pytest_gold profile create {profile} --ssh-host HOST:ENGINES "
            f"...' for SSH engines, or 'ipython profile create --parallel {profile}'."
        ) from None


def client_file(profile_dir: Path, cluster_id: str | None) -> Path:
    suffix = f"-{cluster_id}" if cluster_id else ""
    return profile_dir / "security" / f"ipcontroller{suffix}-client.json"


def permission_warnings(path: Path) -> list[str]:
    """A connection file holds the cluster's key: only its owner may read it."""
    warnings = []
    try:
        file_mode = path.stat().st_mode
        dir_mode = path.parent.stat().st_mode
    except OSError:
        return warnings
    if file_mode & OTHERS_READ:
        warnings.append(
            f"the connection file {path} can be read by others than its owner "
            f"(mode {stat.filemode(file_mode)}); it holds the key that lets anyone run code "
            f"on the engines. Fix it with: chmod 600 {path}"
        )
    if dir_mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        warnings.append(
            f"the directory {path.parent} of the connection file can be read or written by "
            f"others than its owner (mode {stat.filemode(dir_mode)}). Fix it with: "
            f"chmod 700 {path.parent}"
        )
    return warnings


def attach(
    *,
    connection_file: str | None,
    profile: str | None,
    cluster_id: str | None,
    wait_seconds: float,
    keep_cluster: bool = False,
) -> ClusterHandle:
    """Connect to a running cluster through a connection file or a profile; start the
    profile's cluster when it is not running."""
    if connection_file:
        path = Path(connection_file).expanduser()
        if not path.is_file():
            raise ClusterError(
                f"--gold-connection-file {connection_file}: no such file. Pass the "
                "ipcontroller-client.json of a running cluster (it is in the profile's "
                "security/ directory, e.g. ~/.ipython/profile_gold/security/)."
            )
        what = f"connection file {path}"
        kwargs: dict[str, Any] = {}
        args: tuple[Any, ...] = (str(path),)
    else:
        assert profile
        profile_dir = profile_dir_of(profile)
        path = client_file(profile_dir, cluster_id)
        if not path.is_file():
            return start_from_profile(profile, profile_dir, cluster_id, wait_seconds, keep_cluster)
        what = f"profile {profile!r}" + (f", cluster id {cluster_id!r}" if cluster_id else "")
        args = ()
        kwargs = {"profile": profile}
        if cluster_id:
            kwargs["cluster_id"] = cluster_id
    warnings = permission_warnings(path)
    try:
        client = ipp.Client(*args, timeout=wait_seconds, **kwargs)
    except (OSError, TimeoutError, ValueError, KeyError) as error:
        raise ClusterError(
            f"pytest-gold could not attach to the cluster of {what} "
            f"({type(error).__name__}: {error}). Check that the cluster is running "
            "('ipcluster start --profile=NAME') and that its connection file is current; "
            "a connection file left from a stopped cluster cannot be used (remove it, and "
            "with --gold-profile the run starts the profile's cluster itself)."
        ) from None
    return ClusterHandle(
        client=client, description=f"attached to the cluster of {what}", warnings=warnings
    )


def explicit_engine_count(cluster: Any) -> int | None:
    """The engines a profile declares. ipyparallel starts at most this machine's CPU count
    when ``Cluster.n`` is unset, even when its SSH hosts list more: use the hosts' sum."""
    if cluster.n is not None:
        return int(cluster.n)
    hosts = cluster.config.get("SSHEngineSetLauncher", {}).get("engines", {})
    if "ssh" not in str(cluster.engine_launcher_class).lower() or not hosts:
        return None
    return sum(
        int(value.get("n", 1)) if isinstance(value, dict) else int(value)
        for value in dict(hosts).values()
    )


def start_from_profile(
    profile: str, profile_dir: Path, cluster_id: str | None, wait_seconds: float, keep: bool
) -> ClusterHandle:
    """Start the profile's cluster with its own launchers (SSH, MPI, Slurm, local)."""
    started = time.monotonic()
    handle: ClusterHandle | None = None
    try:
        cluster = ipp.Cluster(
            profile_dir=str(profile_dir),
            cluster_id=cluster_id or "",
            shutdown_atexit=not keep,
            log_level=logging.WARNING,
        )
        expected = explicit_engine_count(cluster)
        if expected is not None:
            cluster.n = expected
        handle = ClusterHandle(
            client=None,  # type: ignore[arg-type]  # set below, once connected
            description="",
            cluster=cluster,
            owned=True,
            profile_dir=str(profile_dir),
            expected_engines=expected,
            keep=keep,
        )
        cluster.start_cluster_sync()
        handle.process_groups = _launcher_process_groups(cluster)
        if not keep:
            handle.watchdog = Watchdog(cluster.cluster_file, "", handle.process_groups)
        handle.client = cluster.connect_client_sync()
    except BaseException as error:
        abort_start(
            handle,
            error,
            f"--gold-profile {profile}: the profile has no running cluster, and starting it "
            f"from its configuration failed ({type(error).__name__}: {error}). The cluster's "
            f"logs are in {profile_dir / 'log'}; 'python -m pytest_gold profile show "
            f"{profile}' prints what the profile starts. Or start it yourself with "
            f"'ipcluster start --profile={profile}' and run again.",
        )
    handle.started_seconds = time.monotonic() - started
    handle.description = f"the cluster of profile {profile!r}"  # ", started in N s" follows
    return handle


def keep_message(profile: str, cluster_id: str | None) -> str:
    which = f" --cluster-id={cluster_id}" if cluster_id else ""
    return (
        f"gold: the cluster of profile {profile!r} stays running (--gold-keep-cluster); the "
        f"next run attaches to it. Stop it with: ipcluster stop --profile={profile}{which}"
    )
