"""Bad input, said before anything is submitted: a Slurm profile whose jobs are too short
for every case whose duration is known (no case could ever start on their engines)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from pytest_gold.controller.campaign import Durations
from pytest_gold.launch.attaching import client_file, profile_dir_of
from pytest_gold.launch.cluster import ClusterError
from pytest_gold.launch.profiles import CONFIG_FILE
from pytest_gold.launch.slurmprofile import format_seconds, slurm_seconds, summarize_slurm
from pytest_gold.policy.walltime import Margin, shortest_known_case
from pytest_gold.settings import GoldSettings


def profile_time_limit(profile_dir: Path) -> int | None:
    """The time limit in seconds of the profile's Slurm jobs (``None``: not a Slurm
    profile, or none set: the partition's default, unknown here)."""
    from traitlets.config.loader import PyFileConfigLoader

    if not (profile_dir / CONFIG_FILE).is_file():
        return None
    try:
        config = PyFileConfigLoader(CONFIG_FILE, path=str(profile_dir)).load_config()
    except Exception:  # the cluster's start says what is wrong with the file
        return None
    limit = summarize_slurm(config).time_limit
    return slurm_seconds(limit) if limit else None


def check_time_limit(
    profile: str,
    time_limit: int | None,
    nodeids: Sequence[str],
    known: Mapping[str, float],
    limits: Mapping[str, float],
    margin: Margin,
) -> None:
    """Raise a UsageError when even the shortest known case does not fit in a job of the
    profile's time limit."""
    if time_limit is None:
        return
    shortest = shortest_known_case(nodeids, known, limits)
    if shortest is None:
        return
    nodeid, expected = shortest
    needed = margin.needed(expected)
    if needed <= time_limit:
        return
    how = "in its last run" if nodeid in known else "by its time limit (--gold-timeout, marker)"
    raise pytest.UsageError(
        f"--gold-profile {profile}: the profile's Slurm jobs have a time limit of "
        f"{format_seconds(time_limit)} ({time_limit} s), shorter than the shortest case this "
        f"run knows the duration of: {nodeid} takes {expected:.0f} s {how}, {needed:.0f} s "
        f"with the margin ({margin.fraction:.0%} + {margin.seconds:g} s, "
        "--gold-walltime-margin). No case could start on the jobs' engines, so nothing "
        "was submitted. Give the jobs a longer time limit ('python -m pytest_gold profile "
        f"create {profile} --slurm ... --time HH:MM:SS', or the profile's timelimit), or "
        "lower --gold-walltime-margin."
    )


def check_profile_jobs(
    settings: GoldSettings,
    nodeids: Sequence[str],
    durations: Durations,
    limits: Mapping[str, float],
) -> None:
    """Before a run starts a Slurm profile's cluster (attaching submits nothing: the
    engines' own end times rule there)."""
    if not settings.profile or settings.connection_file:
        return
    try:
        profile_dir = profile_dir_of(settings.profile)
    except ClusterError:
        return  # said when the cluster is opened
    if client_file(profile_dir, settings.cluster_id).is_file():
        return
    check_time_limit(
        settings.profile,
        profile_time_limit(profile_dir),
        nodeids,
        durations.recorded(),
        limits,
        Margin(seconds=settings.walltime_margin_seconds),
    )
