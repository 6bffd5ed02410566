"""The kept embedded cluster's pure parts: where it lives, when a run may use it, when the
idle watch stops it, the options, and ``cluster status|stop`` without a cluster."""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from pathlib import Path

import pytest

from pytest_gold.cli.cluster import find
from pytest_gold.cli.main import main as cli_main
from pytest_gold.launch.idlewatch import (
    WATCH_MAX_INTERVAL_SECONDS,
    WATCH_MIN_INTERVAL_SECONDS,
    KeptPaths,
    KeptState,
    ProcessRef,
    stop_reason,
    watch_interval,
)
from pytest_gold.launch.keptcluster import base_dir, ensure_private, fingerprint, kept_dir, misfit
from pytest_gold.settings import GoldSettings

ME = ProcessRef.of(os.getpid())
#: A process that has exited (its start time no longer matches any process's).
GONE = ProcessRef(os.getpid(), -1)


def make_state(rootdir: Path, **changes: object) -> KeptState:
    state = KeptState(
        rootdir=str(rootdir),
        engines=2,
        controller=ME,
        engine_processes=[ME],
        process_groups=[],
        connection_file=str(rootdir / "client.json"),
        fingerprint=fingerprint(),
        idle_seconds=60.0,
        started=time.time(),
    )
    return dataclasses.replace(state, **changes)


def make_settings(**changes: object) -> GoldSettings:
    settings = GoldSettings(
        engines=2,
        profile=None,
        cluster_id=None,
        connection_file=None,
        wait_seconds=60.0,
        batch_seconds=0.5,
    )
    return dataclasses.replace(settings, **changes)


def test_base_dir_is_the_runtime_dir_else_the_user_cache(tmp_path: Path):
    assert base_dir({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path / "pytest-gold"
    # Unset, relative or missing: the cache dir (never the project, never /tmp).
    for runtime in ("", "relative/dir", str(tmp_path / "missing")):
        env = {"XDG_RUNTIME_DIR": runtime, "XDG_CACHE_HOME": str(tmp_path / "cache")}
        assert base_dir(env) == tmp_path / "cache" / "pytest-gold" / "kept"


def test_kept_dir_is_one_per_project(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "a").mkdir(parents=True)
    one = kept_dir(tmp_path / "a", base=tmp_path)
    assert one == kept_dir(tmp_path / "a" / ".." / "a", base=tmp_path)  # the same project
    assert one != kept_dir(tmp_path / "b" / "a", base=tmp_path)  # same name, other project
    assert one.name.startswith("a-") and one.parent == tmp_path


def test_ensure_private_makes_the_directory_0700(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    ensure_private(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o700
    created = tmp_path / "new" / "dir"
    ensure_private(created)
    assert stat.S_IMODE(created.stat().st_mode) == 0o700


def test_fingerprint_tells_what_differs():
    base = fingerprint({"HOME": "/home/a", "OMP_NUM_THREADS": "1"})
    # What a shell changes between two commands does not count.
    assert fingerprint({"HOME": "/home/a", "OMP_NUM_THREADS": "1", "OLDPWD": "/x", "_": "y"}) == (
        base
    )
    other = fingerprint({"HOME": "/home/a", "OMP_NUM_THREADS": "4"})
    assert [k for k in base if base[k] != other[k]] == ["environment variables"]
    assert "OMP_NUM_THREADS" not in str(base)  # hashed: the environment is never stored


def test_misfit_rules(tmp_path: Path):
    state = make_state(tmp_path)
    mine = fingerprint()
    assert misfit(state, make_settings(), mine) is None
    # --gold-engines not given: any kept size that has the engines the run needs.
    assert misfit(state, make_settings(engines=8), mine) is None
    assert misfit(state, make_settings(engines=8, engines_given=True), mine) == (
        "has 2 engines, --gold-engines asks for 8"
    )
    assert misfit(state, make_settings(min_engines=3), mine) == (
        "has 2 engines, --gold-min-engines asks for 3"
    )
    changed = {**mine, "pytest-gold's code": "0"}
    assert misfit(state, make_settings(), changed) == (
        "was started with other pytest-gold's code than this run's"
    )


def test_idle_watch_stops_when_idle_and_no_run_uses_it(tmp_path: Path):
    paths = KeptPaths(tmp_path / "kept")
    paths.root.mkdir()
    state = make_state(tmp_path, idle_seconds=60.0)
    paths.touch()
    now = time.time()
    assert stop_reason(paths, state, now) is None
    assert "no run used it for 1.0 min" in (stop_reason(paths, state, now + 61) or "")
    # A run using it (this process) keeps it running however long it takes.
    lease = paths.add_run(ME)
    assert stop_reason(paths, state, now + 3600) is None
    # ... and the mark of a run that is gone does not, and goes.
    lease.unlink()
    gone = paths.add_run(GONE)
    assert stop_reason(paths, state, now + 61) is not None
    assert not gone.exists()
    lost = dataclasses.replace(state, controller=GONE)
    assert stop_reason(paths, lost, now) == f"its controller (pid {GONE.pid}) is gone"


def test_watch_interval_is_bounded():
    assert watch_interval(15 * 60) == WATCH_MAX_INTERVAL_SECONDS
    assert watch_interval(0.01) == WATCH_MIN_INTERVAL_SECONDS
    assert watch_interval(40) == pytest.approx(2.0)


def test_state_round_trip_and_private_file(tmp_path: Path):
    paths = KeptPaths(tmp_path)
    state = make_state(tmp_path, watch=ME)
    paths.write_state(state)
    assert paths.read_state() == state
    assert stat.S_IMODE(paths.state.stat().st_mode) == 0o600
    paths.state.write_text("{not json")
    assert paths.read_state() is None


def test_cluster_commands_find_the_project_of_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    project = tmp_path / "project"
    (project / "sub" / "deeper").mkdir(parents=True)
    paths = KeptPaths(kept_dir(project))
    paths.root.mkdir(parents=True)
    paths.write_state(make_state(project.resolve()))
    assert find(None, project / "sub" / "deeper") == (paths, paths.read_state())
    assert find(None, tmp_path) is None
    assert find(str(project), tmp_path)[0] == paths


def test_cluster_commands_without_a_kept_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["cluster", "status"]) == 0
    assert cli_main(["cluster", "stop"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"no kept cluster is running for {tmp_path}"] * 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--gold-idle-stop=0"], "*--gold-idle-stop (ini gold_idle_stop) must be a positive*"),
        (["--gold-idle-stop=soon"], "*--gold-idle-stop*minutes*not 'soon'*"),
        (
            ["--gold-keep-cluster", "--gold-connection-file=x.json"],
            "*--gold-keep-cluster keeps a cluster the run starts*",
        ),
    ],
)
def test_bad_kept_options_are_one_clear_error(pytester: pytest.Pytester, options, message):
    pytester.makepyfile("def test_case(): pass")
    result = pytester.runpytest_subprocess("--gold", "-p", "no:cacheprovider", *options)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_idle_stop_option_and_ini(pytester: pytest.Pytester):
    from pytest_gold.settings import from_config

    pytester.makeini("[pytest]\ngold_idle_stop = 0.5\n")
    config = pytester.parseconfig("--gold", "--gold-keep-cluster")
    settings = from_config(config)
    assert settings.idle_stop_seconds == 30.0 and settings.keep_cluster
    assert not settings.engines_given
    config = pytester.parseconfig("--gold", "--gold-idle-stop=2", "--gold-engines=3")
    settings = from_config(config)
    assert settings.idle_stop_seconds == 120.0 and settings.engines_given


@pytest.fixture
def fake_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A kept cluster's files whose 'controller' and 'engine' are a sleep process (what a
    stop kills), and a _start that starts nothing."""
    import subprocess

    sleeper = subprocess.Popen(["sleep", "600"])
    ref = ProcessRef.of(sleeper.pid)
    paths = KeptPaths(tmp_path / "kept")
    paths.root.mkdir()
    (tmp_path / "client.json").write_text("{}")
    paths.write_state(make_state(tmp_path, controller=ref, engine_processes=[ref]))
    started: list[object] = []
    monkeypatch.setattr(
        "pytest_gold.launch.keptcluster._start", lambda *args: started.append(args) or "new cluster"
    )
    yield paths, ref, started
    sleeper.kill()
    sleeper.wait()


def test_a_kept_cluster_in_use_is_never_replaced(fake_kept):
    from pytest_gold.launch.keptcluster import _open_locked

    paths, ref, started = fake_kept
    lease = paths.add_run(ME)  # this process: a run using the cluster now
    notes: list[str] = []
    bigger = make_settings(engines=4, engines_given=True, keep_cluster=True)
    assert _open_locked(paths, bigger, paths.root, notes.append) is None
    assert notes == [
        f"the kept cluster of this project has 2 engines, --gold-engines asks for 4: other "
        f"runs use it (pids {os.getpid()}), so this run starts an embedded cluster of its own."
    ]
    assert ref.alive and paths.read_state() is not None and not started
    # Without --gold-keep-cluster it is left alone too, with or without runs on it.
    lease.unlink()
    notes.clear()
    assert _open_locked(paths, dataclasses.replace(bigger, keep_cluster=False), paths.root,
                        notes.append) is None  # fmt: skip
    assert notes[0].endswith("(--gold-keep-cluster would replace it).")
    assert ref.alive and not started
    # Unused, with the flag: stopped and replaced.
    notes.clear()
    assert _open_locked(paths, bigger, paths.root, notes.append) == "new cluster"
    assert notes[0].endswith(": stopped it; starting a new one.")
    wait_until_gone(ref)
    assert not paths.root.exists() or paths.read_state() is None


def test_a_dead_kept_cluster_is_cleaned_up_also_without_the_flag(fake_kept):
    from pytest_gold.launch.keptcluster import _open_locked

    paths, ref, started = fake_kept
    state = paths.read_state()
    assert state is not None
    paths.write_state(dataclasses.replace(state, controller=GONE))
    notes: list[str] = []
    assert _open_locked(paths, make_settings(), paths.root, notes.append) is None
    assert notes == [
        f"the kept cluster of this project lost its controller (pid {GONE.pid}) (stopped what "
        f"was left: 1 engine (pids {ref.pid})); starting one for this run."
    ]
    wait_until_gone(ref)
    assert not paths.root.exists() and not started


def wait_until_gone(ref: ProcessRef) -> None:
    """The sleep process was killed (a zombie until reaped counts as gone)."""
    deadline = time.monotonic() + 10
    while ref.alive:
        assert time.monotonic() < deadline, f"pid {ref.pid} still runs"
        time.sleep(0.05)
