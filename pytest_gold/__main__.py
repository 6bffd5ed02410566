"""``python -m pytest_gold``: ``profile create|show`` (an ipyparallel profile for a lab
cluster) and ``report`` (a campaign report from what a run left, see report/cli.py)."""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
from pathlib import Path

from .profiles import (
    CONFIG_FILE,
    ProfileError,
    ProfileSpec,
    default_controller_ip,
    describe,
    parse_env,
    parse_ssh_host,
    render_config,
    summarize,
    write_config,
)
from .report import cli as report_cli


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
        required=True,
        help="a host and how many engines to start on it (repeat for each host)",
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
        help="the address of this machine that the hosts reach (default: the one used to "
        "reach the first host). Avoid '*': see the security notes in the docs",
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

    show = actions.add_parser("show", help="print what a profile will start")
    show.add_argument("name", help="profile name, e.g. gold")
    show.add_argument(
        "--ipython-dir", help="IPython directory (default: $IPYTHONDIR or ~/.ipython)"
    )
    report_cli.add_parser(commands)
    return parser


def _ipython_dir(given: str | None) -> str:
    from IPython.paths import get_ipython_dir

    return os.path.expanduser(given) if given else get_ipython_dir()


def create(args: argparse.Namespace) -> int:
    from IPython.core.profiledir import ProfileDir

    hosts = [parse_ssh_host(text) for text in args.ssh_host]
    spec = ProfileSpec(
        hosts=hosts,
        controller_ip=args.controller_ip
        or default_controller_ip(hosts[0].location, args.ssh_option),
        remote_python=args.remote_python,
        ssh_args=list(args.ssh_option),
        environment=parse_env(args.env),
    )
    command = shlex.join(["python", "-m", "pytest_gold", *sys.argv[1:]])
    text = render_config(spec, command, datetime.datetime.now())
    ipython_dir = _ipython_dir(args.ipython_dir)
    os.makedirs(ipython_dir, mode=0o700, exist_ok=True)
    directory = Path(ProfileDir.create_profile_dir_by_name(ipython_dir, args.name).location)
    path = write_config(directory, text, args.force)
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
    from IPython.core.profiledir import ProfileDir, ProfileDirError

    ipython_dir = _ipython_dir(args.ipython_dir)
    try:
        directory = Path(ProfileDir.find_profile_dir_by_name(ipython_dir, args.name).location)
    except ProfileDirError:
        raise ProfileError(
            f"there is no profile {args.name!r} in {ipython_dir}; create it with "
            f"'python -m pytest_gold profile create {args.name} --ssh-host HOST:ENGINES ...'."
        ) from None
    for line in _describe(args.name, directory):
        print(line)
    return 0


def _describe(name: str, directory: Path) -> list[str]:
    from traitlets.config.loader import Config, PyFileConfigLoader

    config = Config()
    if (directory / CONFIG_FILE).is_file():
        config = PyFileConfigLoader(CONFIG_FILE, path=str(directory)).load_config()
    running = (directory / "security" / "ipcontroller-client.json").is_file()
    return describe(summarize(name, directory, config, running), os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "report":
        return report_cli.run(args)
    try:
        return create(args) if args.action == "create" else show(args)
    except ProfileError as error:
        print(f"python -m pytest_gold profile {args.action}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
