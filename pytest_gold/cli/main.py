"""``python -m pytest_gold``: ``profile create|show|engines`` (an ipyparallel profile for a
lab cluster), ``cluster status|stop`` (the kept embedded cluster), ``results show`` (what
a --gold-results dataset holds) and ``report`` (a campaign report from what a run left,
see report/cli.py)."""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
from pathlib import Path

import pytest_gold.cli.cluster as keptcli
import pytest_gold.cli.slurm as slurmcli
import pytest_gold.dataset.show as results_cli
import pytest_gold.report.cli as report_cli
from pytest_gold.cli.addengines import add_engines
from pytest_gold.launch.profiles import (
    CONFIG_FILE,
    CONTROLLER_CONFIG_FILE,
    ProfileError,
    ProfileSpec,
    ProfileSummary,
    SSHHost,
    describe,
    parse_env,
    parse_ssh_host,
    render_config,
    render_controller_config,
    summarize,
    write_configs,
)
from pytest_gold.launch.routes import (
    Route,
    RouteError,
    choose_controller_ip,
    loopback_problem,
    route_to,
)
from pytest_gold.launch.slurmprofile import describe_slurm, summarize_slurm


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_gold",
        description="Set up the ipyparallel cluster that 'pytest --gold' runs on.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    profile = commands.add_parser("profile", help="create or show an ipyparallel profile")
    actions = profile.add_subparsers(dest="action", required=True)

    create = actions.add_parser(
        "create",
        help="write a profile that starts engines on other hosts over SSH",
        description="Write an ipyparallel profile (ipcluster_config.py) with SSH engines on "
        "a shared filesystem. Start it with 'ipcluster start --profile=NAME' or let "
        "'pytest --gold --gold-profile=NAME' start it.",
    )
    create.add_argument("name", help="profile name, e.g. gold")
    create.add_argument(
        "--ssh-host",
        action="append",
        default=[],
        metavar="HOST:ENGINES",
        help="a host and how many engines to start on it (repeat for each host; or --slurm)",
    )
    create.add_argument(
        "--remote-python",
        default=sys.executable,
        help="the python on the hosts that has pytest-gold installed (default: this "
        "python, %(default)s, which a shared filesystem makes the same everywhere)",
    )
    create.add_argument(
        "--ssh-option",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument for ssh, e.g. --ssh-option=-F --ssh-option=/path/ssh_config (repeatable)",
    )
    create.add_argument(
        "--controller-ip",
        help="the address of this machine that the hosts reach (default: the one this "
        "machine uses to reach them; loopback only when every host is this machine). "
        "Avoid '*': see the security notes in the docs",
    )
    create.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for every engine (OMP_NUM_THREADS=1 and the other "
        "BLAS thread counts are set unless given here)",
    )
    create.add_argument(
        "--ipython-dir", help="IPython directory (default: $IPYTHONDIR or ~/.ipython)"
    )
    create.add_argument("--force", action="store_true", help="replace an existing config")
    slurmcli.add_arguments(create)

    engines = actions.add_parser(
        "engines",
        help="start a host's engines again in the profile's running cluster",
        description="Start the engines the profile defines on the given hosts (e.g. a host "
        "whose engines were lost and that is back) in the profile's running cluster. "
        "'ipcluster stop --profile=NAME' stops them with the others.",
    )
    engines.add_argument("name", help="profile name, e.g. gold")
    engines.add_argument(
        "hosts",
        nargs="+",
        metavar="HOST[:ENGINES]",
        help="a host of the profile, and how many engines to start there (default: as many "
        "as the profile defines for it)",
    )
    engines.add_argument("--cluster-id", default="", help="the cluster's id, if it has one")
    engines.add_argument(
        "--ipython-dir", help="IPython directory (default: $IPYTHONDIR or ~/.ipython)"
    )

    show = actions.add_parser("show", help="print what a profile will start")
    show.add_argument("name", help="profile name, e.g. gold")
    show.add_argument(
        "--ipython-dir", help="IPython directory (default: $IPYTHONDIR or ~/.ipython)"
    )
    results_cli.add_parser(commands)
    report_cli.add_parser(commands)
    keptcli.add_parser(commands)
    return parser


def _ipython_dir(given: str | None) -> str:
    from IPython.paths import get_ipython_dir

    return os.path.expanduser(given) if given else get_ipython_dir()


def create(args: argparse.Namespace) -> int:
    from IPython.core.profiledir import ProfileDir

    slurmcli.check_usage(args)
    if args.slurm:
        return slurmcli.create(args, _ipython_dir(args.ipython_dir), _describe)
    hosts = [parse_ssh_host(text) for text in args.ssh_host]
    spec = ProfileSpec(
        hosts=hosts,
        controller_ip=controller_ip(args.controller_ip, hosts, args.ssh_option),
        remote_python=args.remote_python,
        ssh_args=list(args.ssh_option),
        environment=parse_env(args.env),
    )
    command = shlex.join(["python", "-m", "pytest_gold", *sys.argv[1:]])
    now = datetime.datetime.now()
    texts = {
        CONFIG_FILE: render_config(spec, command, now),
        CONTROLLER_CONFIG_FILE: render_controller_config(command, now),
    }
    ipython_dir = _ipython_dir(args.ipython_dir)
    os.makedirs(ipython_dir, mode=0o700, exist_ok=True)
    directory = Path(ProfileDir.create_profile_dir_by_name(ipython_dir, args.name).location)
    for path in write_configs(directory, texts, args.force):
        print(f"wrote {path}")
    for line in _describe(args.name, directory):
        print(line)
    print(
        f"\nstart it:   ipcluster start --profile={args.name}    (in tmux; or let pytest start it)"
        f"\nrun on it:  pytest --gold --gold-profile={args.name}"
        f"\nstop it:    ipcluster stop --profile={args.name}"
    )
    return 0


def show(args: argparse.Namespace) -> int:
    for line in _describe(args.name, _existing_profile(args)):
        print(line)
    return 0


def engines(args: argparse.Namespace) -> int:
    for line in add_engines(args.name, _existing_profile(args), args.hosts, args.cluster_id):
        print(line)
    return 0


def _existing_profile(args: argparse.Namespace) -> Path:
    from IPython.core.profiledir import ProfileDir, ProfileDirError

    ipython_dir = _ipython_dir(args.ipython_dir)
    try:
        return Path(ProfileDir.find_profile_dir_by_name(ipython_dir, args.name).location)
    except ProfileDirError:
        raise ProfileError(
            f"there is no profile {args.name!r} in {ipython_dir}; create it with "
            f"'python -m pytest_gold profile create {args.name} --ssh-host HOST:ENGINES ...'."
        ) from None


def controller_ip(given: str | None, hosts: list[SSHHost], ssh_args: list[str]) -> str:
    """The controller's address: the one every host reaches (never loopback when a host
    is another machine), checked when given."""
    if given:
        problem = loopback_problem(given, _known_routes(hosts, ssh_args))
        if problem:
            raise ProfileError(problem)
        return given
    try:
        routes = [route_to(host.location, ssh_args) for host in hosts]
        return choose_controller_ip(routes)
    except RouteError as error:
        raise ProfileError(
            f"could not work out the address of this machine that the hosts reach ({error}); "
            "give it with --controller-ip, e.g. --controller-ip=192.168.1.10."
        ) from None


def _known_routes(hosts: list[SSHHost], ssh_args: list[str]) -> list[Route]:
    """The routes that can be worked out (a host that does not resolve is left out)."""
    routes = []
    for host in hosts:
        try:
            routes.append(route_to(host.location, ssh_args))
        except RouteError:
            continue
    return routes


def _describe(name: str, directory: Path) -> list[str]:
    from traitlets.config.loader import Config, PyFileConfigLoader

    configs = {}
    for file in (CONFIG_FILE, CONTROLLER_CONFIG_FILE):
        configs[file] = Config()
        if (directory / file).is_file():
            configs[file] = PyFileConfigLoader(file, path=str(directory)).load_config()
    running = (directory / "security" / "ipcontroller-client.json").is_file()
    summary = summarize(
        name, directory, configs[CONFIG_FILE], running, configs[CONTROLLER_CONFIG_FILE]
    )
    lines = describe(summary, os.cpu_count() or 1, _loopback_problem(summary))
    if summary.engine_launcher == "slurm":  # after the "engines:" line
        at = next(i for i, line in enumerate(lines) if line.startswith("  engines:")) + 1
        slurm = summarize_slurm(configs[CONFIG_FILE])
        lines[at:at] = describe_slurm(slurm, summary.engine_count)
    return lines


def _loopback_problem(summary: ProfileSummary) -> str | None:
    hosts = [SSHHost(location=host, engines=n) for host, n in summary.engines_by_host.items()]
    routes = _known_routes(hosts, summary.ssh_args)
    return loopback_problem(summary.controller_ip or "127.0.0.1", routes)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "results":
        return results_cli.run(args)
    if args.command == "report":
        return report_cli.run(args)
    if args.command == "cluster":
        return keptcli.run(args)
    actions = {"create": create, "show": show, "engines": engines}
    try:
        return actions[args.action](args)
    except ProfileError as error:
        print(f"python -m pytest_gold profile {args.action}: {error}", file=sys.stderr)
        # Bad input for a Slurm profile exits 4 (pytest's usage error), as the issue asks.
        return getattr(error, "exit_code", 2)


if __name__ == "__main__":
    sys.exit(main())
