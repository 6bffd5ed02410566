"""ipyparallel's SSH engine launcher, made fast and quiet for hosts on a shared filesystem.

Profiles written by ``python -m pytest_gold profile create`` name
:class:`GoldSSHEngineSetLauncher`. It takes the same configuration as ipyparallel's
``SSHEngineSetLauncher`` (``engines``, ``remote_python``, ``ssh_args``, ...) and starts the
same engines, but:

- one ssh command per host starts all of its engines, every host at once (ipyparallel
  runs four ssh commands per engine, two of them importing Python on the host, one engine
  after another);
- one ssh command per host watches its engines, and one stops them, every host at once
  (ipyparallel fetches and deletes each engine's log over scp, one engine after another,
  which took minutes for 24 engines);
- the engines' logs are read where they are, in the profile's ``log`` directory on the
  shared filesystem, never copied;
- ssh's and the hosts' messages go to the cluster's log, never to the terminal of the
  command that started or stopped the cluster.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal as signals
import subprocess
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ipyparallel.cluster.launcher import SSHEngineLauncher, SSHEngineSetLauncher
from traitlets import Float

import pytest_gold.launch.hostscripts as hostscripts
from pytest_gold.launch.hostscripts import explain_ssh_error, run_on_host
from pytest_gold.launch.profiles import LAUNCHER_PATH

#: At most this many hosts are started, stopped or signalled at the same time (each one
#: ssh process here): enough for a lab, not a flood for a big cluster.
MAX_PARALLEL_HOSTS = 32

#: The watchers' ssh commands of each engine set of this process: ended when the set
#: stops, and when the process exits (e.g. a pytest run that keeps the cluster it
#: started), so that none outlives it by a watch period.
_WATCHING: dict[int, set[subprocess.Popen[str]]] = {}


def _end_watchers(key: int | None = None) -> None:
    for owner, processes in list(_WATCHING.items()):
        if key is None or owner == key:
            for process in list(processes):
                try:
                    process.kill()
                except OSError:
                    pass


atexit.register(_end_watchers)


class GoldSSHEngineLauncher(SSHEngineLauncher):
    """One engine: its set starts, watches and stops it with the host's other engines."""

    def _reconstruct_process(self, d: dict[str, Any]) -> None:
        # Restored from a cluster file (e.g. by 'ipcluster stop'): no watcher per engine.
        pass

    @property
    def ssh_command(self) -> list[str]:
        # BatchMode: a prompt (password, unknown host key) fails at once rather than wait
        # for an answer nobody gives; the user's own -o BatchMode=no comes first and wins.
        return [*self.ssh_cmd, *self.ssh_args, "-o", "BatchMode=yes", self.location]

    @property
    def local_output_file(self) -> str:
        """The engine's output file here (ipyparallel's remote paths may be relative to
        the home directory, which the shared filesystem makes the same)."""
        path = self.remote_output_file
        return path if os.path.isabs(path) else os.path.join(os.path.expanduser("~"), path)

    def get_output(self, remove: bool = False) -> str:
        if self._output is None:  # type: ignore[has-type]  # (set by ipyparallel's launcher)
            try:
                with open(self.local_output_file, errors="replace") as output:
                    self._output = output.read()
            except OSError:
                self._output = ""
        if remove:
            try:
                os.remove(self.local_output_file)
            except OSError:
                pass
        return self._output

    def signal(self, sig: int) -> None:
        if self.state == "running":
            _signal_hosts({self.location: [self]}, sig, self.stop_seconds_until_kill)

    def wait_one(self, timeout: float) -> int:
        result = run_on_host(
            self.ssh_command, hostscripts.watch_script([self.pid], timeout), timeout + 30
        )
        if ("exited", str(self.pid)) in hostscripts.parse_marks(result.output):
            return -1  # the exit code of a process that is not our child is unknown
        raise TimeoutError("still running")


class GoldSSHEngineSetLauncher(SSHEngineSetLauncher):
    """Engines on SSH hosts that share this machine's filesystem (see the module)."""

    launcher_class = GoldSSHEngineLauncher
    #: What ipyparallel writes in the cluster file for this class (``ipcluster stop``
    #: and pytest-gold's watchdog find it again by this dotted path: no entry point).
    entrypoint_name = LAUNCHER_PATH

    start_timeout = Float(
        120.0,
        config=True,
        help="Seconds the ssh command that starts one host's engines may take.",
    )
    watch_seconds = Float(
        30.0,
        config=True,
        help="Seconds one ssh command watches a host's engines before the next one takes "
        "over (a watcher whose launcher went away ends after at most this long).",
    )

    _watchers: dict[str, threading.Event]

    def start(self, n: int) -> list[str]:
        """Start up to ``n`` engines (``engines`` assigns them to hosts): one ssh command
        per host, all hosts at once."""
        self.loop  # noqa: B018  # the IOLoop of this thread, for the watchers' callbacks
        by_host = self._create_launchers(n)
        if not by_host:
            raise RuntimeError("no engines to start: c.SSHEngineSetLauncher.engines is empty")
        with ThreadPoolExecutor(max_workers=min(len(by_host), MAX_PARALLEL_HOSTS)) as pool:
            outcomes = list(pool.map(self._start_host, by_host.values()))
        started: list[str] = []
        failures = []
        for launchers, (pids, error) in zip(by_host.values(), outcomes, strict=True):
            for index, launcher in enumerate(launchers):
                pid = pids.get(index)
                if pid is None:
                    del self.launchers[launcher.identifier]
                    continue
                launcher.pid = pid
                launcher.notify_start({"host": launcher.location, "pid": pid})
                started.append(launcher.identifier)
            if error:
                failures.append(error)
                self.log.error(error)
        if not started:
            raise RuntimeError("; ".join(failures))
        self.notify_start(started)
        self.n = len(started)
        self._watch(self._running_by_host())
        return started

    def _create_launchers(self, requested: int) -> dict[str, list[GoldSSHEngineLauncher]]:
        """The engines' launchers, as ipyparallel's SSHEngineSetLauncher makes them."""
        engine_traits = self.launcher_class.class_traits(config=True)
        shared = set(self.traits(config=True)).intersection(engine_traits)
        inherited = shared.difference({"location", "user", "hostname", "to_send", "to_fetch"})
        inherited |= {"profile_dir", "cluster_id"}
        stamp = f"{time.time():.0f}"
        by_host: dict[str, list[GoldSSHEngineLauncher]] = {}
        count = 0
        for host, n_or_config in self.engines.items():
            overrides = dict(n_or_config) if isinstance(n_or_config, dict) else {}
            n = int(overrides.pop("n", 1) if isinstance(n_or_config, dict) else n_or_config)
            user, _, hostname = host.rpartition("@")
            hostname, _, port = hostname.partition(":")
            for index in range(min(n, requested - count)):
                kwargs = {name: getattr(self, name) for name in inherited}
                kwargs.update(overrides)
                identifier = f"{host}/{index}"
                launcher = self.launcher_class(parent=self, identifier=identifier, **kwargs)
                launcher.hostname = hostname
                if user:
                    launcher.user = user
                if port:
                    launcher.ssh_args = [*launcher.ssh_args, "-p", port]
                safe_host = hostname.replace("/", "_")
                launcher.remote_output_file = os.path.join(
                    launcher.remote_profile_dir,
                    "log",
                    f"ipengine-{self.cluster_id}-{self.engine_set_id}-{safe_host}-{index}-"
                    f"{stamp}.out",
                )
                launcher.on_stop(self._notice_engine_stopped)
                self.launchers[identifier] = launcher
                by_host.setdefault(host, []).append(launcher)
                count += 1
            if count >= requested:
                break
        return by_host

    def _start_host(
        self, launchers: list[GoldSSHEngineLauncher]
    ) -> tuple[dict[int, int], str | None]:
        """Start one host's engines: their pids by index, and what went wrong, if anything."""
        first = launchers[0]
        engines = [
            (
                [*launcher.program, *launcher.program_args],
                {key: str(value) for key, value in launcher.get_env().items()},
                launcher.remote_output_file,
            )
            for launcher in launchers
        ]
        self.log.info("starting %d engine(s) on %s", len(engines), first.location)
        result = run_on_host(
            first.ssh_command, hostscripts.start_script(engines), self.start_timeout
        )
        pids = {
            int(key.removeprefix("pid_")): int(value)
            for key, value in hostscripts.parse_marks(result.output)
            if key.startswith("pid_") and value.isdigit()
        }
        if len(pids) == len(launchers):
            return pids, None
        return pids, (
            f"could not start {len(launchers) - len(pids)} of the {len(launchers)} engines on "
            f"{first.location}: ssh exited with {result.returncode}: "
            + explain_ssh_error(first.location, result.error)
        )

    def _running_by_host(self) -> dict[str, list[GoldSSHEngineLauncher]]:
        by_host: dict[str, list[GoldSSHEngineLauncher]] = {}
        for launcher in list(self.launchers.values()):
            if launcher.state == "running":
                by_host.setdefault(launcher.location, []).append(launcher)
        return by_host

    # -- watching -------------------------------------------------------------------------

    def _watch(self, by_host: dict[str, list[GoldSSHEngineLauncher]]) -> None:
        self._watchers = {}
        for location, launchers in by_host.items():
            stop = self._watchers[location] = threading.Event()
            threading.Thread(
                target=self._watch_host,
                args=(launchers, stop),
                name=f"pytest-gold-watch({location})",
                daemon=True,
            ).start()

    def _watch_host(self, launchers: list[GoldSSHEngineLauncher], stop: threading.Event) -> None:
        """Until the host's engines exit or the set stops: tell the launcher of each engine
        that exits. A failing ssh is said once and tried again a watch period later."""
        by_pid = {launcher.pid: launcher for launcher in launchers}
        location = launchers[0].location
        complained = False
        while by_pid and not stop.is_set():
            result = run_on_host(
                launchers[0].ssh_command,
                hostscripts.watch_script(by_pid, self.watch_seconds),
                self.watch_seconds + self.start_timeout,
                running=_WATCHING.setdefault(id(self), set()),
            )
            for key, value in hostscripts.parse_marks(result.output):
                if key == "exited" and value.isdigit() and int(value) in by_pid:
                    self.loop.add_callback(self._engine_exited, by_pid.pop(int(value)))
            if result.returncode != 0 and not stop.is_set():
                log = self.log.debug if complained else self.log.warning
                log(
                    "cannot watch the engines on %s: %s",
                    location,
                    explain_ssh_error(location, result.error),
                )
                complained = True
                stop.wait(self.watch_seconds)

    def _engine_exited(self, launcher: GoldSSHEngineLauncher) -> None:
        launcher.notify_stop(
            {"exit_code": -1, "pid": launcher.pid, "identifier": launcher.identifier}
        )

    def _stop_watching(self) -> None:
        watchers = getattr(self, "_watchers", {})
        for stop in watchers.values():
            stop.set()
        _end_watchers(id(self))
        _WATCHING.pop(id(self), None)

    # -- signals and stopping -------------------------------------------------------------

    def signal(self, sig: int) -> None:
        _signal_hosts(self._running_by_host(), sig, self.stop_seconds_until_kill)

    async def stop(self) -> None:
        """SIGTERM every engine, SIGKILL what is left after ``stop_seconds_until_kill``:
        one ssh command per host, all hosts at once."""
        self._stop_watching()
        by_host = self._running_by_host()
        with ThreadPoolExecutor(max_workers=max(1, min(len(by_host), MAX_PARALLEL_HOSTS))) as pool:
            loop = asyncio.get_running_loop()
            killed = await asyncio.gather(
                *(
                    loop.run_in_executor(pool, self._stop_host, launchers)
                    for launchers in by_host.values()
                )
            )
        for launchers, killed_pids in zip(by_host.values(), killed, strict=True):
            for launcher in launchers:
                # Stopped on purpose: 0 where SIGTERM did it (its real exit code is the
                # host's to know), -SIGKILL where it took that.
                code = -signals.SIGKILL if launcher.pid in killed_pids else 0
                launcher.notify_stop(
                    {"exit_code": code, "pid": launcher.pid, "identifier": launcher.identifier}
                )

    def _stop_host(self, launchers: list[GoldSSHEngineLauncher]) -> set[int]:
        """Stop one host's engines; the pids that took SIGKILL."""
        first = launchers[0]
        script = hostscripts.stop_script(
            [launcher.pid for launcher in launchers], self.stop_seconds_until_kill
        )
        result = run_on_host(
            first.ssh_command, script, self.stop_seconds_until_kill + self.start_timeout
        )
        killed = {
            int(value)
            for key, value in hostscripts.parse_marks(result.output)
            if key == "killed" and value.isdigit()
        }
        if killed:
            self.log.info(
                "engines %s on %s did not stop within %s s of SIGTERM and were killed",
                ", ".join(map(str, sorted(killed))),
                first.location,
                self.stop_seconds_until_kill,
            )
        if result.returncode != 0:
            self.log.warning(
                "could not stop the engines on %s: %s",
                first.location,
                explain_ssh_error(first.location, result.error),
            )
        return killed


def _signal_hosts(
    by_host: dict[str, list[GoldSSHEngineLauncher]], sig: int, timeout: float
) -> None:
    """One ssh command per host, all hosts at once; engines that are gone are no error."""
    name = signals.Signals(int(sig)).name.removeprefix("SIG")

    def signal_host(launchers: list[GoldSSHEngineLauncher]) -> None:
        pids: Iterable[int] = [launcher.pid for launcher in launchers]
        result = run_on_host(
            launchers[0].ssh_command, hostscripts.signal_script(pids, name), timeout + 30
        )
        if result.returncode != 0:
            launchers[0].log.warning(
                "could not signal the engines on %s: %s",
                launchers[0].location,
                explain_ssh_error(launchers[0].location, result.error),
            )

    if by_host:
        with ThreadPoolExecutor(max_workers=min(len(by_host), MAX_PARALLEL_HOSTS)) as pool:
            list(pool.map(signal_host, by_host.values()))
