"""Clusters of ipyparallel profiles: attach to a running one, or start it from the profile.

A cluster the run attached to is never stopped by it. One it started from the profile is
stopped at the end, unless ``--gold-keep-cluster`` leaves it for the next run.
"""

from __future__ import annotations

import json
import socket
import stat
import time
from pathlib import Path
from typing import Any

import ipyparallel as ipp
from ipyparallel.util import disambiguate_ip_address

import pytest_gold.launch.clusterprocesses as clusterprocesses
from pytest_gold.launch.cluster import (
    ClusterError,
    ClusterHandle,
    Watchdog,
    abort_start,
    interrupts_deferred,
)
from pytest_gold.launch.clusterlog import ClusterLog
from pytest_gold.launch.profiles import summarize
from pytest_gold.launch.slurmjobs import forget_unsubmitted, submission_problem, submitted_jobs

#: Permission bits that let someone other than the owner read (or list) a path.
OTHERS_READ = stat.S_IRWXG | stat.S_IRWXO
#: How long the probe of a silent controller's port may take.
PROBE_SECONDS = 5.0


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


def engine_file(profile_dir: Path, cluster_id: str | None) -> Path:
    suffix = f"-{cluster_id}" if cluster_id else ""
    return profile_dir / "security" / f"ipcontroller{suffix}-engine.json"


def remove_files_since(paths: list[Path], since: float) -> None:
    """Remove those of the files that were written since ``since`` (time.time())."""
    for path in paths:
        try:
            if path.stat().st_mtime >= since:
                path.unlink()
        except OSError:
            continue


def permission_warnings(path: Path) -> list[str]:
    """A connection file holds the cluster's key: only its owner may read it."""
    warnings: list[str] = []
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
    min_engines: int = 1,
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
            return start_from_profile(
                profile, profile_dir, cluster_id, wait_seconds, keep_cluster, min_engines
            )
        what = f"profile {profile!r}" + (f", cluster id {cluster_id!r}" if cluster_id else "")
        args = ()
        kwargs = {"profile": profile}
        if cluster_id:
            kwargs["cluster_id"] = cluster_id
    warnings = permission_warnings(path)
    defined: tuple[int | None, dict[str, int]] = (None, {})
    if profile:
        defined = profile_engines(profile_dir, cluster_id)
    try:
        client = ipp.Client(*args, timeout=wait_seconds, **kwargs)
    except TimeoutError:
        raise ClusterError(no_answer_message(what, path, wait_seconds)) from None
    except (OSError, ValueError, KeyError) as error:
        raise ClusterError(
            f"pytest-gold could not attach to the cluster of {what} "
            f"({type(error).__name__}: {error}). Check that the cluster is running "
            "('ipcluster start --profile=NAME') and that its connection file is current; "
            "a connection file left from a stopped cluster cannot be used (remove it, and "
            "with --gold-profile the run starts the profile's cluster itself)."
        ) from None
    return ClusterHandle(
        client=client,
        description=f"attached to the cluster of {what}",
        warnings=warnings,
        profile_engines=defined[0],
        profile_hosts=defined[1],
    )


def no_answer_message(what: str, path: Path, wait_seconds: float) -> str:
    """Why a controller did not answer within the wait, as far as can be told: a wrong key
    (the controller drops messages signed with another key, without a reply) looks like
    a controller that listens but never answers."""
    headline = (
        f"pytest-gold could not attach to the cluster of {what}: no answer within "
        f"{wait_seconds:g} s (--gold-wait)."
    )
    address = controller_address(path)
    if address is None:  # through an SSH tunnel, or an unreadable file: cannot be probed
        return (
            f"{headline} Either the cluster is not running, or the key in {path} does not "
            "match the running controller's (a connection file kept from an earlier start "
            "of the cluster): use the file the running controller wrote, in its profile's "
            "security/ directory."
        )
    host, port = address
    try:
        with socket.create_connection(address, timeout=PROBE_SECONDS):
            pass
    except OSError:
        return (
            f"{headline} Nothing accepts connections at {host}:{port}, where {path} says the "
            "controller listens: the cluster is not running (the file is left from one that "
            "stopped) or cannot be reached from here. Start the cluster (ipcluster start), "
            "or with --gold-profile remove the stale file and the run starts it."
        )
    return (
        f"{headline} The controller at {host}:{port} accepts connections but did not answer: "
        f"the key in {path} most likely does not match the controller's (a controller "
        "ignores messages signed with another key). This happens with a connection file "
        "copied or kept from an earlier start of the cluster: use the one the running "
        "controller wrote, in its profile's security/ directory, or restart the cluster. "
        "(A controller too busy to answer in time also looks like this: a longer "
        "--gold-wait helps then.)"
    )


def controller_address(path: Path) -> tuple[str, int] | None:
    """Where the connection file says the controller takes registrations, if it can be
    probed directly (not through an SSH tunnel)."""
    try:
        info = json.loads(path.read_text())
        if info.get("ssh"):
            return None
        ip = str(info["interface"]).partition("://")[2]
        host = disambiguate_ip_address(ip, info.get("location"))
        return host, int(info["registration"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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


def profile_engines(profile_dir: Path, cluster_id: str | None) -> tuple[int | None, dict[str, int]]:
    """How many engines the profile's configuration defines, and how many of them each
    host runs, by the names runs show; ``None`` if the profile does not say. (Not the
    running cluster's file: it keeps listing engines that were lost.)"""
    try:
        cluster = ipp.Cluster(
            profile_dir=str(profile_dir), cluster_id=cluster_id or "", shutdown_atexit=False
        )
        count = explicit_engine_count(cluster)
        hosts = summarize("", profile_dir, cluster.config, running=True).host_names
    except Exception:  # a profile that ipyparallel cannot read says nothing here
        return None, {}
    return count, hosts


def start_from_profile(
    profile: str,
    profile_dir: Path,
    cluster_id: str | None,
    wait_seconds: float,
    keep: bool,
    min_engines: int = 1,
) -> ClusterHandle:
    """Start the profile's cluster with its own launchers (SSH, MPI, Slurm, local)."""
    started = time.monotonic()
    started_at = time.time()
    handle: ClusterHandle | None = None
    log = ClusterLog(profile_dir, profile)
    try:
        cluster = ipp.Cluster(
            profile_dir=str(profile_dir),
            cluster_id=cluster_id or "",
            shutdown_atexit=not keep,
            log=log.logger,
        )
        expected = explicit_engine_count(cluster)
        hosts = summarize("", profile_dir, cluster.config, running=True).host_names
        if expected is not None and min_engines > expected:
            # Said before anything starts: waiting could never be enough.
            raise ClusterError(more_engines_than_defined(min_engines, expected, profile, hosts))
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
            log=log,
            profile_engines=expected,
            profile_hosts=hosts,
        )
        with log.capturing_stderr(), interrupts_deferred():
            cluster.start_cluster_sync()
        handle.slurm_jobs = submitted_jobs(cluster)
        handle.process_groups = clusterprocesses.launcher_process_groups(cluster)
        if not keep:
            handle.watchdog = Watchdog(cluster.cluster_file, "", handle.process_groups)
        with interrupts_deferred():
            handle.client = cluster.connect_client_sync()
    except ClusterError:
        log.close()
        raise
    except BaseException as error:
        if handle is not None:  # a job never submitted has nothing to cancel
            forget_unsubmitted(handle.cluster)
        try:
            abort_start(
                handle,
                error,
                f"--gold-profile {profile}: the profile has no running cluster, and starting it "
                f"from its configuration failed ({type(error).__name__}: {error})."
                f"{submission_problem(error, log.path)} The cluster's "
                f"logs are in {profile_dir / 'log'}; 'python -m pytest_gold profile show "
                f"{profile}' prints what the profile starts. Or start it yourself with "
                f"'ipcluster start --profile={profile}' and run again.",
            )
        finally:  # the next run must start the cluster again, not find this one's files
            remove_files_since(
                [client_file(profile_dir, cluster_id), engine_file(profile_dir, cluster_id)],
                started_at,
            )
    handle.started_seconds = time.monotonic() - started
    handle.description = f"the cluster of profile {profile!r}"  # ", started in N s" follows
    problem = log.take_problems("starting")
    if problem:
        handle.warnings.append(problem)
    return handle


def more_engines_than_defined(
    need: int, defined: int, profile: str | None, hosts: dict[str, int]
) -> str:
    """--gold-min-engines asks for more engines than the cluster can have."""
    on_hosts = f" ({', '.join(f'{h}: {n}' for h, n in hosts.items())})" if hosts else ""
    if profile:
        what = f"the profile {profile!r} defines only {defined}{on_hosts}"
        fix = (
            "add hosts or engines to the profile ('python -m pytest_gold profile create "
            f"{profile} ... --force')"
        )
        if not hosts:  # not SSH hosts: engines can be added to the running cluster
            fix += (
                f", or start more with 'ipcluster engines --profile={profile} -n {need - defined}'"
            )
    else:
        what = f"--gold-engines={defined} starts only {defined}"
        fix = f"raise --gold-engines to at least {need}"
    return (
        f"pytest-gold: --gold-min-engines={need} asks for more engines than the cluster "
        f"can have: {what}, so the run would wait --gold-wait for engines that never "
        f"come. Lower --gold-min-engines, or {fix}."
    )


def start_more_engines(profile: str | None, hosts: dict[str, int], missing: int) -> str:
    """How to get engines that did not come (the profile's real name, never NAME)."""
    if profile and hosts:
        return (
            f"'python -m pytest_gold profile engines {profile} HOST' for a host whose engines "
            "are missing"
        )
    if profile:
        return f"'ipcluster engines --profile={profile} -n {missing}'"
    return f"'ipcluster engines --profile=PROFILE -n {missing}' with the cluster's profile"


def keep_message(profile: str, cluster_id: str | None) -> str:
    which = f" --cluster-id={cluster_id}" if cluster_id else ""
    return (
        f"gold: the cluster of profile {profile!r} stays running (--gold-keep-cluster); the "
        f"next run attaches to it. Stop it with: ipcluster stop --profile={profile}{which}"
    )
