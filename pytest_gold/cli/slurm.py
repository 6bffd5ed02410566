"""``python -m pytest_gold profile create NAME --slurm ...``: the options and the command.

The profile itself is :mod:`pytest_gold.launch.slurmprofile`; this module reads the command line,
asks Slurm (through :class:`~pytest_gold.launch.slurmprofile.SlurmSite`) and writes the files.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from pytest_gold.launch.profiles import (
    CONFIG_FILE,
    CONTROLLER_CONFIG_FILE,
    ProfileError,
    parse_env,
    render_controller_config,
    write_configs,
)
from pytest_gold.launch.routes import RouteError, choose_controller_ip, is_loopback, route_to
from pytest_gold.launch.slurmprofile import (
    Partition,
    SlurmProfileError,
    SlurmSite,
    SlurmSpec,
    check_site,
    render_config,
)


def add_arguments(create: argparse.ArgumentParser) -> None:
    """The Slurm options of ``profile create`` (``--remote-python``, ``--controller-ip``
    and ``--env`` are shared with SSH profiles)."""
    slurm = create.add_argument_group(
        "Slurm engines (--slurm)",
        "engines as Slurm jobs: the controller runs on this machine (a login node), the "
        "engines are submitted with sbatch as one job array of --jobs jobs",
    )
    slurm.add_argument(
        "--slurm", action="store_true", help="start the engines as Slurm jobs (no --ssh-host)"
    )
    slurm.add_argument("--engines", type=int, metavar="N", help="engines in all, e.g. 96")
    slurm.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="Slurm jobs the engines are shared out over (default: %(default)s)",
    )
    slurm.add_argument(
        "--time", metavar="LIMIT", help="each job's time limit, as sbatch takes it: 02:00:00"
    )
    slurm.add_argument("--partition", default="", help="default: Slurm's default partition")
    slurm.add_argument("--account", default="", help="the account the jobs are charged to")
    slurm.add_argument("--qos", default="", help="the jobs' quality of service")
    slurm.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="ARG",
        help="another sbatch option for the jobs, e.g. --slurm-option=--constraint=haswell "
        "(repeatable)",
    )


def check_usage(args: argparse.Namespace) -> None:
    """Options that do not go together (argparse cannot say it)."""
    if args.slurm and args.ssh_host:
        raise SlurmProfileError(
            "--slurm and --ssh-host do not go together: the engines are Slurm jobs or SSH hosts."
        )
    if args.slurm and (args.engines is None or args.time is None):
        raise SlurmProfileError(
            "--slurm needs --engines N and --time LIMIT (e.g. --engines 96 --time 02:00:00)."
        )
    if not args.slurm and not args.ssh_host:
        raise ProfileError(
            "give the engines' hosts with --ssh-host HOST:ENGINES, or --slurm for Slurm jobs."
        )


def create(
    args: argparse.Namespace,
    ipython_dir: str,
    describe: Callable[[str, Path], list[str]],
    site: SlurmSite | None = None,
) -> int:
    """Check everything, then write the profile (nothing is written on bad input)."""
    from IPython.core.profiledir import ProfileDir

    site = site or SlurmSite()
    spec = SlurmSpec(
        engines=args.engines,
        jobs=args.jobs,
        time_limit=args.time,
        controller_ip=args.controller_ip or "",
        partition=args.partition,
        account=args.account,
        qos=args.qos,
        slurm_options=list(args.slurm_option),
        remote_python=args.remote_python,
        environment=parse_env(args.env),
    )
    spec.check()
    partition = check_site(spec, site)
    spec.controller_ip = controller_ip(args.controller_ip, partition)
    command = shlex.join(["python", "-m", "pytest_gold", *sys.argv[1:]])
    now = datetime.datetime.now()
    directory = Path(ipython_dir, f"profile_{args.name}")
    texts = {
        CONFIG_FILE: render_config(spec, command, now, str(directory)),
        CONTROLLER_CONFIG_FILE: render_controller_config(command, now),
    }
    os.makedirs(ipython_dir, mode=0o700, exist_ok=True)
    directory = Path(ProfileDir.create_profile_dir_by_name(ipython_dir, args.name).location)
    for path in write_configs(directory, texts, args.force):
        print(f"wrote {path}")
    for line in describe(args.name, directory):
        print(line)
    print(
        f"\nstart it:   ipcluster start --profile={args.name}    (or let pytest start it)"
        f"\nrun on it:  pytest --gold --gold-profile={args.name}"
        f"\nstop it:    ipcluster stop --profile={args.name}    (scancels the jobs)"
    )
    return 0


def controller_ip(given: str | None, partition: Partition) -> str:
    """Where the controller listens: given, or the address of this machine on the route to
    the partition's nodes (loopback only when they are all this machine)."""
    if given:
        if given in ("*", "0.0.0.0"):
            raise SlurmProfileError(
                f"--controller-ip {given!r} would let the controller listen on every "
                "interface of this machine, reachable by anyone on every network it is on. "
                "Give the address of this machine on the compute nodes' network instead."
            )
        remote = [node for node in partition.node_addresses if not is_loopback(node)]
        if is_loopback(given) and _any_remote(remote):
            raise SlurmProfileError(
                f"--controller-ip {given} is a loopback address, but the nodes of partition "
                f"{partition.name!r} ({', '.join(remote[:3])}) are other machines: their "
                "engines could never connect. Give this machine's address on their network."
            )
        return given
    try:
        routes = [route_to(node, hostname_of=lambda n, _: n) for node in partition.node_addresses]
        return choose_controller_ip(routes)
    except RouteError as error:
        raise SlurmProfileError(
            "could not work out the address of this machine that the compute nodes of "
            f"partition {partition.name!r} reach ({error}); give it with --controller-ip, "
            "e.g. --controller-ip=10.1.0.5."
        ) from None


def _any_remote(addresses: list[str]) -> bool:
    try:
        return any(not route_to(node, hostname_of=lambda n, _: n).local for node in addresses)
    except RouteError:
        return True
