"""The documented commands whose output the docs show: one maker per scenario.

Each maker runs its commands in a fresh :class:`scratch.Scratch` and returns the texts
of the samples it makes, by name (``output/NAME.txt``). Quickstart, campaign and fault
scenarios are here; errors of options are in catalog_errors.py.
"""

from __future__ import annotations

import json
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from scratch import (
    RUN_SECONDS,
    SHOWN_CHECKOUT,
    SHOWN_PROJECT,
    Scratch,
    excerpt,
    lines,
    section,
    wait_until,
)

Maker = Callable[[Scratch], dict[str, str]]
#: Sample makers by name, in the order they run.
SAMPLES: dict[str, Maker] = {}
#: The fix that makes the sweep's failing case pass ("after fixing the model").
FAILING_ASSERT = 'assert not (surface == "land" and channel == 89.0), "too warm"'
#: pytest's rules between the sections of its summary.
RULES = ("====", "----", "____")
GOLD2 = ("--gold", "--gold-engines", "2")


def sample(name: str, shown: str = SHOWN_PROJECT) -> Callable[[Maker], Maker]:
    def register(maker: Maker) -> Maker:
        maker.shown = shown  # type: ignore[attr-defined]
        SAMPLES[name] = maker
        return maker

    return register


def fix_the_model(scratch: Scratch) -> None:
    path = scratch.path / "sims" / "test_sweep.py"
    path.write_text(path.read_text().replace(FAILING_ASSERT, "assert channel > 0"))


def status(scratch: Scratch, name: str = "status.json") -> dict | None:
    try:
        return json.loads((scratch.path / name).read_text())
    except (OSError, ValueError):
        return None


@sample("quickstart", shown=SHOWN_CHECKOUT)
def quickstart(s: Scratch) -> dict[str, str]:
    run = s.run("--gold", "example_sims/")
    verbose = s.run("--gold", "-v", "example_sims/test_heat_diffusion.py")
    # Three cases, the same every time, in the order they finished this time.
    results = [line for line in verbose.splitlines() if line.startswith("[")]
    chosen = set(sorted(results, key=lambda line: line.split()[-1])[:3])
    results = [line for line in results if line in chosen]
    (s.path / "test_fails.py").write_text("def test_fails():\n    assert 1 + 1 == 3\n")
    failing = s.run("--gold", "--gold-engines", "2", "-p", "no:cacheprovider", "test_fails.py")
    four = s.run("--gold", "--gold-engines", "4", "example_sims/", "-k", "ch183")
    return {
        "quickstart-run": run,
        "quickstart-verbose": "\n".join([verbose.splitlines()[0], "...", *results, "..."]) + "\n",
        "quickstart-failure": section(failing, "_ test_fails _", RULES),
        "how-it-works-joining": lines(four, "gold: embedded cluster on"),
    }


LOCAL_PROFILE = """\
c = get_config()
c.Cluster.n = 2
c.Cluster.controller_ip = "127.0.0.1"
c.LocalEngineSetLauncher.delay = 0
"""


@sample("profile")
def profile(s: Scratch) -> dict[str, str]:
    """A profile's cluster started with ipcluster, attached to; then errors about it."""
    (s.ipython / "profile_gold").mkdir(parents=True)
    (s.ipython / "profile_gold" / "ipcluster_config.py").write_text(LOCAL_PROFILE)
    client_file = s.ipython / "profile_gold" / "security" / "ipcontroller-client.json"
    s.run("start", "--profile=gold", "--daemonize", program="ipcluster")
    try:
        wait_for_engines(client_file, 2)
        attached = s.run("--gold", "--gold-profile", "gold", "sims/test_sweep.py")
        too_few = s.run(
            "--gold",
            "--gold-profile",
            "gold",
            "--gold-min-engines",
            "6",
            "--gold-wait",
            "5",
            "sims/",
        )
        old = s.path / "old" / "ipcontroller-client.json"
        old.parent.mkdir()
        old.write_bytes(client_file.read_bytes())
    finally:
        s.run("stop", "--profile=gold", program="ipcluster")
    stale = s.run(
        "--gold",
        "--gold-connection-file",
        "old/ipcontroller-client.json",
        "--gold-wait",
        "5",
        "sims/",
    )
    return {
        "quickstart-attach": excerpt(attached, "gold: the cluster", "gold: attached", first=1),
        "options-cluster-running": excerpt(stale, "ERROR", first=1)
        + "\n"
        + excerpt(too_few, "ERROR", first=1),
    }


def wait_for_engines(client_file: Path, count: int) -> None:
    """Until the cluster that writes ``client_file`` has ``count`` engines."""
    import ipyparallel as ipp

    deadline = time.monotonic() + RUN_SECONDS
    while not client_file.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{client_file} never appeared")
        time.sleep(0.1)
    client = ipp.Client(str(client_file), timeout=60)
    try:
        client.wait_for_engines(count, timeout=RUN_SECONDS)
    finally:
        client.close()


@sample("campaign-order")
def campaign_order(s: Scratch) -> dict[str, str]:
    def results(text: str) -> str:
        return excerpt(text, "] [", first=1)

    first = s.run(*GOLD2, "-v", "sims/test_sweep.py")
    second = s.run(*GOLD2, "-v", "sims/test_sweep.py")
    cache = s.run("--cache-show", "gold/*", shown="pytest --cache-show 'gold/*'")
    durations = section(cache, "gold/durations contains", ("gold/passed",))
    fix_the_model(s)
    resumed = s.run(*GOLD2, "--gold-resume", "-v", "--junitxml=out.xml", "sims/test_sweep.py")
    done = s.run(*GOLD2, "--gold-resume", "sims/test_sweep.py")
    case = next(ET.parse(s.path / "out.xml").getroot().iter("testcase"))
    case.tail = None
    ET.indent(case)
    return {
        "campaign-order-first": results(first),
        "campaign-order-second": results(second),
        "campaign-cache-show": f"{cache.splitlines()[0]}\n...\n{durations}"
        "gold/passed contains:\n  ...\n",
        "campaign-resume": s.prompt([], "", _first(resumed)) + "...\n" + _from(resumed, "collect"),
        "campaign-resume-junit": ET.tostring(case, encoding="unicode") + "\n",
        "campaign-resume-done": s.prompt([], "", _first(done)) + "...\n" + _from(done, "collected"),
    }


def _first(text: str) -> str:
    """The command of a text that starts with ``$ command``."""
    return text.splitlines()[0].removeprefix("$ ")


def _from(text: str, start: str) -> str:
    lines = text.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.startswith(start))
    return "\n".join(lines[begin:]) + "\n"


@sample("campaign-results")
def campaign_results(s: Scratch) -> dict[str, str]:
    def last(text: str) -> str:
        return f"{text.splitlines()[0]}\n...\n{text.splitlines()[-1]}\n"

    first = s.run(*GOLD2, "-q", "sims/test_sweep.py", "--gold-results", "results.csv")
    table = (s.path / "results.csv").read_text()
    refused = s.run(*GOLD2, "sims/test_sweep.py", "--gold-results", "results.csv")
    fix_the_model(s)
    resumed = s.run(
        *GOLD2, "-q", "sims/test_sweep.py", "--gold-resume", "--gold-results", "results.csv"
    )
    count = s.run(
        "-c",
        "import csv; print(len(list(csv.DictReader(open('results.csv')))))",
        program="python",
        shown="""python -c "import csv; print(len(list(csv.DictReader(open('results.csv')))))\"""",
    )
    elsewhere = s.run(*GOLD2, "sims/test_sweep.py", "--gold-resume", "--gold-results", "run2.csv")
    grid = s.run(
        "--gold", "example_sims/", "-k", "toa_brightness", "--gold-results", "out/rt.zarr", "-q"
    )
    opened = (
        "import xarray as xr; ds = xr.open_zarr('out/rt.zarr', "
        "group='test_toa_brightness_temperature'); print(dict(ds.layer_weights.sizes))"
    )
    sizes = s.run("-c", opened, program="python", shown=f'python -c "{opened}"')
    return {
        "campaign-results-csv": table,
        "campaign-results-refused": excerpt(refused, "ERROR", first=1),
        "campaign-resume-table": last(first) + last(resumed) + count,
        "campaign-resume-elsewhere": lines(elsewhere, "no recorded values"),
        "campaign-dataset": last(grid) + sizes,
    }


@sample("campaign-interrupt")
def campaign_interrupt(s: Scratch) -> dict[str, str]:
    args = [*GOLD2, "--gold-status-file", "status.json", "sims/test_long.py"]
    run = s.start(*args)
    wait_until(lambda: (status(s) or {}).get("done", 0) >= 7, "7 cases done", run)
    run.send_signal(signal.SIGTERM)
    output, _ = run.communicate(timeout=120)
    interrupted = s.prompt([*GOLD2, "sims/test_long.py"], "pytest", None) + output
    resumed = s.run(*GOLD2, "--gold-resume", "sims/test_long.py")
    return {
        "campaign-interrupted": f"{interrupted.splitlines()[0]}\n...\n"
        + _from(interrupted, "sims/test_long.py"),
        "campaign-interrupted-resume": f"{resumed.splitlines()[0]}\n...\n"
        + _from(resumed, "sims/test_long.py"),
        "faults-interrupted": lines(interrupted, "did not run"),
    }


@sample("campaign-progress")
def campaign_progress(s: Scratch) -> dict[str, str]:
    shown = [*GOLD2, "--gold-status-interval", "3", "sims/test_long.py"]
    run = s.start(*shown, "--gold-status-file", "status.json")
    mid: dict = {}

    def halfway() -> bool:
        data = status(s) or {}
        if data.get("state") == "running" and data.get("done", 0) >= 6:
            mid.update(data)
            return True
        return False

    wait_until(halfway, "6 cases done", run)
    output, _ = run.communicate(timeout=300)
    text = s.prompt(shown, "pytest", None) + output
    (s.path / "mid.json").write_text(json.dumps(mid, indent=1))
    watch = s.run(
        "-c",
        "import json; s = json.load(open('mid.json')); print(s['state'], s['done'], '/', "
        "s['total'], 'failed', s['failed'], 'ETA', s['eta_seconds'])",
        program="python",
        shown="python -c \"import json; s = json.load(open('status.json')); print(s['state'], "
        "s['done'], '/', s['total'], 'failed', s['failed'], 'ETA', s['eta_seconds'])\"",
    )
    return {
        "campaign-status-lines": _from(text, "gold: embedded cluster on").split("\n---")[0] + "\n",
        "campaign-host-summary": section(text, "gold: per-host summary", ("====",)),
        "campaign-status-json": json.dumps(mid, indent=1) + "\n",
        "campaign-status-python": watch,
    }


@sample("campaign-output")
def campaign_output(s: Scratch) -> dict[str, str]:
    live = s.run(*GOLD2, "-s", "sims/test_sweep.py")
    lines = _from(live, "gold: embedded cluster on").splitlines()[:7]
    return {"campaign-live-output": f"{live.splitlines()[0]}\n...\n" + "\n".join(lines) + "\n..."}


@sample("campaign-compact")
def campaign_compact(s: Scratch) -> dict[str, str]:
    run = s.run(*GOLD2, "-q", "--gold-log", "compact", "--gold-status-interval", "2", "sims/")
    log = run.split("\n====")[0]  # up to pytest's failure sections
    summary = section(run, "gold: per-host summary", ("====",))
    return {"campaign-compact-log": f"{log}\n...\n{summary}...\n{run.splitlines()[-1]}\n"}


@sample("faults")
def faults(s: Scratch) -> dict[str, str]:
    demo = s.run(*GOLD2, "-p", "no:cacheprovider", "faults/test_demo.py")
    (s.path / "faults" / "test_engines.py").write_text(ENGINE_KILLERS)
    lost = s.run(
        "--gold",
        "--gold-engines",
        "3",
        "-p",
        "no:cacheprovider",
        "faults/test_engines.py",
        "-k",
        "kills_its_engine or fine",
    )
    every = s.run(
        *GOLD2,
        "-p",
        "no:cacheprovider",
        "--gold-batch-seconds",
        "60",
        "faults/test_engines.py",
        "-k",
        "kills_one or never",
    )
    (s.path / "faults" / "test_stop.py").write_text(STOPPING)
    stopped = s.run(*GOLD2, "-p", "no:cacheprovider", "-x", "faults/test_stop.py")
    return {
        "faults-crash": section(demo, "_ test_segfaults _", RULES, keep_lines=12),
        "faults-hang": section(demo, "_ test_hangs _", RULES, keep_lines=8),
        "faults-by-kind": section(demo, "gold: failures by kind", ("====",)),
        "faults-lost-engine": lines(lost, "gold: lost engine"),
        "faults-engine-lost-message": excerpt(lost, "died while running this case"),
        "faults-every-engine-lost": lines(every, "did not run"),
        "faults-maxfail": lines(stopped, "did not run"),
    }


ENGINE_KILLERS = """\
import os
import signal
import time

import pytest


def test_kills_its_engine():
    os.kill(os.getppid(), signal.SIGKILL)  # the worker's parent is its engine
    time.sleep(30)


@pytest.mark.parametrize("i", range(2))
def test_kills_one(i):
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)


@pytest.mark.parametrize("i", range(6))
def test_fine(i):
    time.sleep(0.2)


@pytest.mark.parametrize("i", range(5))
def test_never_reached(i):
    pass
"""

STOPPING = """\
import time

import pytest


def test_fails_first():
    time.sleep(0.5)
    assert False


@pytest.mark.parametrize("i", range(20))
def test_queued(i):
    time.sleep(0.5)
"""


import catalog_errors  # noqa: E402, F401  (registers the error samples after these)
