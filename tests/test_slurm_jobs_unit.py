"""The Slurm jobs of a run (squeue's answer as a sentence) and the engines' wrapper,
without Slurm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from pytest_gold.launch.slurmjobs import (
    describe_queue,
    queue_note,
    queue_rows,
    submission_problem,
    submitted_line,
)

#: How long the wrapper and its engine may take to start and exit (a busy machine).
WRAPPER_SECONDS = 60


def fake_squeue(stdout: str):
    def run(args, **kwargs):
        assert args[:4] == ["squeue", "-h", "-j", "12,13"]
        return SimpleNamespace(stdout=stdout)

    return run


def test_queue_rows_and_sentence() -> None:
    rows = queue_rows(["12", "13"], fake_squeue("12_[0-3]|PENDING|Priority\n13|RUNNING|None\n"))
    assert rows == [("12_[0-3]", "PENDING", "Priority"), ("13", "RUNNING", "None")]
    assert describe_queue(rows) == "squeue says: job 12_[0-3] PENDING (Priority); job 13 RUNNING"


def test_jobs_gone_from_the_queue() -> None:
    note = queue_note(["12", "13"], fake_squeue(""))
    assert "Slurm jobs 12, 13: squeue lists none of them any more" in note


def test_squeue_missing() -> None:
    def run(args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "squeue")

    assert "squeue could not be asked" in queue_note(["12"], run)
    assert queue_note([], run) == ""  # no Slurm jobs: nothing to say


def test_sbatch_refusal_is_quoted_from_the_log(tmp_path: Path) -> None:
    log = tmp_path / "pytest-gold-cluster.log"
    log.write_text("INFO starting\nsbatch: error: Batch job submission failed: Invalid account\n")
    refused = subprocess.CalledProcessError(1, ["sbatch", "/p/slurm_engines.sbatch"])
    assert "'sbatch: error: Batch job submission failed: Invalid account'" in (
        submission_problem(refused, log)
    )
    other = subprocess.CalledProcessError(1, ["ssh", "gold2"])
    assert submission_problem(other, log) == ""


ENGINE = """
    import os, subprocess, sys, time
    # A helper in a session of its own that outlives the engine, as ipyparallel's nanny can.
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                              start_new_session=True)
    print(helper.pid, os.environ["PYTEST_GOLD_HOST"], flush=True)
    if sys.argv[1] == "wait":
        time.sleep(600)
    sys.exit(3)
"""


def start_wrapper(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], int, str]:
    engine = tmp_path / "engine.py"
    engine.write_text(textwrap.dedent(ENGINE))
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "pytest_gold.launch.slurmengine", sys.executable, str(engine), mode],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SLURMD_NODENAME": "node17"},
    )
    assert wrapper.stdout is not None
    helper, host = wrapper.stdout.readline().split()
    return wrapper, int(helper), host


def assert_ended(pid: int) -> None:
    """The helper is gone (if not, it is killed here, then the test fails)."""
    try:
        helper = psutil.Process(pid)
        alive = helper.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return
    if alive:
        helper.kill()
    assert not alive, f"the engine's helper {pid} outlived the wrapper"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a child subreaper is Linux's")
def test_wrapper_ends_what_the_engine_left_behind(tmp_path: Path) -> None:
    wrapper, helper, host = start_wrapper(tmp_path, "exit")
    assert wrapper.wait(WRAPPER_SECONDS) == 3  # the engine's exit code
    assert host == "node17"  # PYTEST_GOLD_HOST: Slurm's node name
    assert_ended(helper)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a child subreaper is Linux's")
def test_wrapper_passes_scancels_signal_on(tmp_path: Path) -> None:
    wrapper, helper, _ = start_wrapper(tmp_path, "wait")
    wrapper.send_signal(signal.SIGTERM)  # what scancel sends every task
    assert wrapper.wait(WRAPPER_SECONDS) == 128 + signal.SIGTERM
    assert_ended(helper)


def test_submitted_line() -> None:
    assert submitted_line(["12"]) == (
        "gold: submitted Slurm job 12 for the engines (squeue -j 12); the run cancels it "
        "when it ends"
    )
    assert submitted_line(["12", "13"], kept=True).endswith(
        "(squeue -j 12,13); they stay running with the cluster (--gold-keep-cluster)"
    )
