"""A six-host lab cluster on one machine: sshd on 127.0.0.2 .. 127.0.0.7, named gold2 .. gold7.

Real SSH launchers, real remote engines, one shared filesystem: the topology of the lab's
gold servers. Used by ``tests/test_lab_cluster.py`` and ``benchmarks/bench_lab.py``.
Everything it starts (sshd, the ``ipcluster`` process, its controller and engines) is
stopped by :meth:`LabRig.stop`, which is safe to call after a failed start.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

HOSTS = {f"gold{n}": f"127.0.0.{n}" for n in range(2, 8)}
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
PROFILE = "gold"
#: How long sshd, the cluster and its engines get to come up.
START_SECONDS = 180.0
#: How long sshd's sessions get to end by themselves when the rig stops.
SESSION_EXIT_SECONDS = 15.0


def sshd_available() -> bool:
    return Path(SSHD).is_file() and shutil.which("ssh") is not None


def _free_port(addresses: list[str]) -> int:
    """A port free on every one of the addresses."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        try:
            for address in addresses[1:]:
                with socket.socket() as other:
                    other.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every loopback address")


class LabRig:
    def __init__(self, root: Path, engines_per_host: int = 2) -> None:
        self.root = root
        self.engines_per_host = engines_per_host
        self.ipython_dir = root / "ipython"
        self.ssh_config = root / "ssh_config"
        self.profile_dir = self.ipython_dir / f"profile_{PROFILE}"
        self.sshd: subprocess.Popen[bytes] | None = None
        self.ipcluster: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def engine_count(self) -> int:
        return self.engines_per_host * len(HOSTS)

    @property
    def connection_file(self) -> Path:
        return self.profile_dir / "security" / "ipcontroller-client.json"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "IPYTHONDIR": str(self.ipython_dir)}

    # -- start -------------------------------------------------------------------------

    def start_sshd(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for key in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.root / key)],
                check=True,
            )
        shutil.copy(self.root / "client_key.pub", self.root / "authorized_keys")
        self.port = _free_port(list(HOSTS.values()))
        listen = "".join(f"ListenAddress {address}\n" for address in HOSTS.values())
        (self.root / "sshd_config").write_text(
            f"Port {self.port}\n{listen}"
            f"HostKey {self.root / 'host_key'}\n"
            f"PidFile {self.root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nMaxStartups 200\nMaxSessions 200\n"
            "LogLevel ERROR\n"
        )
        aliases = "".join(f"Host {name}\n  HostName {address}\n" for name, address in HOSTS.items())
        self.ssh_config.write_text(
            f"{aliases}Host gold*\n  Port {self.port}\n  User {getpass.getuser()}\n"
            f"  IdentityFile {self.root / 'client_key'}\n  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
            "  BatchMode yes\n  LogLevel ERROR\n"
            # Reuse the one master connection per host that start_sshd opens (ipyparallel
            # runs several ssh commands per engine); never make a new master implicitly:
            # a persisting master would hold the pipes of the command that made it.
            f"  ControlMaster no\n  ControlPath {self.root}/cm-%h\n"
        )
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation
        self.sshd = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "sshd.log", "wb"),  # sshd keeps it
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        for host in HOSTS:
            while self.ssh(host, "true").returncode != 0:
                if self.sshd.poll() is not None or time.monotonic() > deadline:
                    log = (self.root / "sshd.log").read_text(errors="replace")
                    raise RuntimeError(f"sshd did not accept logins on {host}: {log}")
                time.sleep(0.2)
            subprocess.run(
                [
                    "ssh",
                    "-F",
                    str(self.ssh_config),
                    "-o",
                    "ControlMaster=yes",
                    "-o",
                    "ControlPersist=yes",
                    "-f",
                    "-N",
                    host,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
                check=True,
            )

    def ssh(self, host: str, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-F", str(self.ssh_config), host, command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,
        )

    def create_profile(
        self, name: str = PROFILE, hosts: list[str] | None = None, per_host: int | None = None
    ) -> Path:
        """The profile, made with the command users run."""
        hosts = hosts or list(HOSTS)
        per_host = per_host or self.engines_per_host
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest_gold",
                "profile",
                "create",
                name,
                *(f"--ssh-host={host}:{per_host}" for host in hosts),
                "--ssh-option=-F",
                f"--ssh-option={self.ssh_config}",
                # No --controller-ip: every host is this machine, so the default is loopback.
                f"--remote-python={sys.executable}",
                f"--ipython-dir={self.ipython_dir}",
                "--force",
            ],
            check=True,
            capture_output=True,
        )
        return self.ipython_dir / f"profile_{name}"

    def trace_ssh(self, profile: Path) -> Path:
        """Make the profile's launchers log every ssh and scp command they run (one line
        each, ``ssh HOST`` or ``scp ...``) to the returned file."""
        trace = profile / "ssh-commands.log"
        trace.touch()
        for tool in ("ssh", "scp"):
            wrapper = self.root / f"traced-{tool}"
            wrapper.write_text(
                "#!/bin/sh\n"
                f'host=; for arg; do case "$arg" in gold*) host=$arg ;; esac; done\n'
                f'echo "{tool} $host" >> "{trace}"\n'
                f'exec {tool} "$@"\n'
            )
            wrapper.chmod(0o755)
        with open(profile / "ipcluster_config.py", "a") as config:
            config.write(
                f"c.SSHLauncher.ssh_cmd = [{str(self.root / 'traced-ssh')!r}]\n"
                f"c.SSHLauncher.scp_cmd = [{str(self.root / 'traced-scp')!r}]\n"
            )
        return trace

    def start_cluster(self) -> None:
        """``ipcluster start --profile=gold`` in the background, as users start it."""
        self.create_profile()
        ipcluster = Path(sys.executable).with_name("ipcluster")
        self.ipcluster = subprocess.Popen(
            [str(ipcluster), "start", f"--profile={PROFILE}", "--log-level=WARN"],
            env=self.env,
            stdout=open(self.root / "ipcluster.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_for_engines(self.engine_count)

    def wait_for_engines(self, count: int) -> None:
        import ipyparallel as ipp

        deadline = time.monotonic() + START_SECONDS
        while not self.connection_file.is_file():
            if time.monotonic() > deadline or (
                self.ipcluster and self.ipcluster.poll() is not None
            ):
                raise RuntimeError("ipcluster did not start: " + self.log())
            time.sleep(0.2)
        client = ipp.Client(str(self.connection_file), timeout=30)
        try:
            client.wait_for_engines(count, timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            raise RuntimeError(
                f"{len(client.ids)} of {count} engines registered: " + self.log()
            ) from None
        finally:
            client.close()

    def log(self) -> str:
        path = self.root / "ipcluster.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # -- stop --------------------------------------------------------------------------

    def stop_cluster(self, profile: str = PROFILE) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).with_name("ipcluster")), "stop", f"--profile={profile}"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stop(self) -> None:
        """Kill what the rig started (a graceful ``ipcluster stop`` takes a minute).

        sshd's own sessions are left to end by themselves once their engines are gone:
        killing a login mid-way can leave the user's shell start-up files half done (e.g.
        a stale lock of ``pyenv rehash`` that stalls every later login for a minute).
        """
        if self.ipcluster is not None:
            _kill_group(self.ipcluster)
        # Engines started over ssh were re-parented to init; their environment names this
        # rig's directory (the ssh master connections' command lines do), as nothing else does.
        for process in self.rig_processes():
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        if self.sshd is None:
            return
        deadline = time.monotonic() + SESSION_EXIT_SECONDS
        while _descendants(self.sshd.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        for process in _descendants(self.sshd.pid):
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        _kill_group(self.sshd)

    def rig_processes(self, within: Path | None = None) -> list[psutil.Process]:
        """Live processes of the rig (or of the profile dir ``within`` it); zombies have
        exited and do not count."""
        marker = str(within or self.root)
        found = []
        for process in psutil.process_iter():
            try:
                if process.pid == os.getpid() or process.status() == psutil.STATUS_ZOMBIE:
                    continue
                # Remote engines get their profile dir in IPP_PROFILE_DIR, not as arguments.
                named = " ".join(process.cmdline()) + " " + " ".join(process.environ().values())
                if marker in named:
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
