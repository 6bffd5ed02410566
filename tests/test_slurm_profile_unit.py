"""Slurm profiles without Slurm: time limits, shares, the rendered batch script, bad input.

The batch script is rendered by ipyparallel's own ``SlurmEngineSetLauncher`` from the
written profile (no ``sbatch`` involved), so what is checked is what Slurm would be given.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ipyparallel.cluster.launcher import SlurmEngineSetLauncher
from traitlets.config.loader import PyFileConfigLoader

from pytest_gold.cli.main import main
from pytest_gold.launch import slurmprofile
from pytest_gold.launch.slurmprofile import (
    Partition,
    SlurmProfileError,
    SlurmSpec,
    check_site,
    describe_slurm,
    engines_per_job,
    format_seconds,
    render_config,
    slurm_seconds,
    summarize_slurm,
)
from tests.test_slurm import DOCS_PAGE, SITE_EXAMPLE, WALKTHROUGH

NOW = datetime.datetime(2026, 1, 1, 12, 0)
GOLD = Partition(name="gold", max_time="10:00", node_addresses=("127.0.0.1",))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 5400),
        ("90:30", 5430),
        ("02:00:00", 7200),
        ("1-12", 129600),
        ("1-12:30", 131400),
        ("1-00:00:05", 86405),
    ],
)
def test_slurm_time_formats(text: str, seconds: int) -> None:
    assert slurm_seconds(text) == seconds


@pytest.mark.parametrize("text", ["2h", "", "1:2:3:4", "-5", "1-", "01:00:00x"])
def test_not_a_slurm_time(text: str) -> None:
    assert slurm_seconds(text) is None


@given(st.integers(min_value=0, max_value=400 * 86400))
def test_formatted_seconds_read_back(seconds: int) -> None:
    assert slurm_seconds(format_seconds(seconds)) == seconds


@given(st.integers(min_value=1, max_value=5000), st.integers(min_value=1, max_value=200))
def test_engines_are_shared_out_evenly(engines: int, jobs: int) -> None:
    shares = engines_per_job(engines, max(1, min(jobs, engines)))
    assert sum(shares) == engines
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)  # the first jobs take one more


def spec(**changes: object) -> SlurmSpec:
    values: dict[str, object] = dict(
        engines=10, jobs=4, time_limit="00:05:00", controller_ip="127.0.0.1"
    )
    values.update(changes)
    return SlurmSpec(**values)  # type: ignore[arg-type]


def batch_script(tmp_path: Path, profile_spec: SlurmSpec, n: int | None = None) -> str:
    """Write the profile, load it as ipyparallel does, let its launcher write the script."""
    profile = tmp_path / "profile_hpc"
    (profile / "log").mkdir(parents=True)
    (profile / "ipcluster_config.py").write_text(
        render_config(profile_spec, "python -m pytest_gold ...", NOW, str(profile))
    )
    config = PyFileConfigLoader("ipcluster_config.py", path=str(profile)).load_config()
    launcher = SlurmEngineSetLauncher(
        work_dir=str(tmp_path), config=config, profile_dir=str(profile), cluster_id="c1"
    )
    launcher.write_batch_script(n or config.Cluster.n)
    assert Path(launcher.batch_file) == profile / slurmprofile.BATCH_FILE  # not in the cwd
    return Path(launcher.batch_file).read_text()


def test_batch_script_is_one_array_of_the_jobs(tmp_path: Path) -> None:
    script = batch_script(
        tmp_path,
        spec(
            partition="gold",
            account="proj1",
            qos="short",
            slurm_options=["--constraint={a}"],
            environment={"OMP_NUM_THREADS": "2"},
        ),
    )
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh"
    for expected in (
        "#SBATCH --array=0-3",
        "#SBATCH --ntasks=3",  # 10 engines over 4 jobs: 3, 3, 2, 2
        "#SBATCH --time=00:05:00",
        "#SBATCH --partition=gold",
        "#SBATCH --account=proj1",
        "#SBATCH --qos=short",
        "#SBATCH --constraint={a}",  # literal braces survive ipyparallel's formatting
        "#SBATCH --job-name=ipengine-c1",
        "#SBATCH --export=ALL",
        "export OMP_NUM_THREADS=2",
        "export MKL_NUM_THREADS=1",
        "engines=$(( (10 + 4 - 1 - SLURM_ARRAY_TASK_ID) / 4 ))",
    ):
        assert expected in lines
    assert lines[-1].startswith(
        'srun --ntasks="$engines" python3 -m pytest_gold.launch.slurmengine '
    )
    assert lines[-1].endswith("-m ipyparallel.engine")


def test_engine_count_of_the_start_decides_the_shares(tmp_path: Path) -> None:
    """``ipcluster start -n 2`` of a profile with 4 jobs: jobs with no engine exit."""
    script = batch_script(tmp_path, spec(), n=2)
    assert "#SBATCH --ntasks=1" in script.splitlines()
    assert '[ "$engines" -gt 0 ] || exit 0' in script.splitlines()


def test_profile_show_describes_the_jobs(tmp_path: Path) -> None:
    profile = tmp_path / "profile_hpc"
    profile.mkdir()
    (profile / "ipcluster_config.py").write_text(
        render_config(spec(partition="gold"), "...", NOW, str(profile))
    )
    config = PyFileConfigLoader("ipcluster_config.py", path=str(profile)).load_config()
    assert describe_slurm(summarize_slurm(config), 10) == [
        "  slurm jobs: 4 (job array), 3 or 2 engines per job",
        "  time limit: 00:05:00 per job",
        "  partition: gold",
    ]


def test_hand_written_profile_with_ipyparallels_options() -> None:
    from traitlets.config import Config

    config = Config()
    config.SlurmLauncher.timelimit = "90"
    config.SlurmEngineSetLauncher.queue = "short"
    assert describe_slurm(summarize_slurm(config), 3) == [
        "  slurm jobs: 1 (job array), 3 engines per job",
        "  time limit: 90 per job (01:30:00)",
        "  partition: short",
    ]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"jobs": 5, "engines": 4}, "--jobs 5 is more than --engines 4"),
        ({"jobs": 0}, "both must be at least 1"),
        ({"time_limit": "2h"}, "is not a Slurm time limit"),
        ({"slurm_options": ["constraint=x"]}, "expected an sbatch option"),
    ],
)
def test_bad_spec(changes: dict[str, object], says: str) -> None:
    with pytest.raises(SlurmProfileError, match=says):
        spec(**changes).check()


class FakeSite(slurmprofile.SlurmSite):
    def __init__(self, sbatch: str | None = "/usr/bin/sbatch", partition=GOLD) -> None:
        self._sbatch, self._partition = sbatch, partition

    def sbatch_path(self) -> str | None:
        return self._sbatch

    def partition(self, name: str) -> Partition | None:
        return self._partition if name in ("", "gold") else None


@pytest.mark.parametrize(
    ("site", "changes", "says"),
    [
        (FakeSite(sbatch=None), {}, "sbatch is not on the PATH"),
        (FakeSite(), {"partition": "nope"}, "Slurm has no partition 'nope'"),
        (FakeSite(), {"time_limit": "11"}, r"longer than partition 'gold' allows \(MaxTime"),
    ],
)
def test_bad_site(site: FakeSite, changes: dict[str, object], says: str) -> None:
    with pytest.raises(SlurmProfileError, match=says):
        check_site(spec(**changes), site)


def test_unlimited_partition_takes_any_time() -> None:
    site = FakeSite(partition=Partition("long", "infinite", ("127.0.0.1",)))
    assert check_site(spec(time_limit="30-00:00:00"), site).name == "long"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--engines", "4", "--jobs", "5", "--time", "5"], "--jobs 5 is more than --engines 4"),
        (["--engines", "4", "--time", "2h"], "is not a Slurm time limit"),
        (["--engines", "4"], "--slurm needs --engines N and --time LIMIT"),
        (["--engines", "4", "--time", "5", "--ssh-host", "a:1"], "do not go together"),
        (["--engines", "4", "--time", "5", "--controller-ip", "*"], "every interface"),
        (["--engines", "4", "--time", "5", "--partition", "nope"], "no partition 'nope'"),
    ],
)
def test_bad_input_exits_4_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    fake = FakeSite()
    monkeypatch.setattr(slurmprofile.SlurmSite, "sbatch_path", fake.sbatch_path)
    monkeypatch.setattr(slurmprofile.SlurmSite, "partition", fake.partition)
    ipython_dir = tmp_path / "ipython"
    code = main(["profile", "create", "hpc", "--slurm", "--ipython-dir", str(ipython_dir), *argv])
    error = capsys.readouterr().err
    assert code == 4
    assert says in error
    assert len(error.strip().splitlines()) == 1  # one paragraph, no traceback
    assert not (ipython_dir / "profile_hpc").exists()


def documented_commands(text: str) -> list[str]:
    """The ``$ command`` lines of a page (continued lines joined)."""
    joined = text.replace("\\\n", " ")
    return [
        " ".join(line.strip()[2:].split())
        for line in joined.splitlines()
        if line.strip().startswith("$ ")
    ]


def test_docs_page_shows_only_commands_the_tests_run() -> None:
    shown = documented_commands(DOCS_PAGE.read_text())
    assert shown, f"no '$ command' lines in {DOCS_PAGE}"
    run_by_tests = {" ".join(command.split()) for command in WALKTHROUGH + SITE_EXAMPLE}
    assert set(shown) <= run_by_tests, set(shown) - run_by_tests


def test_site_example_of_the_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The docs' example for a real site, verbatim, against a site with a "compute"
    partition of remote nodes (its controller address is given by the routes)."""
    compute = Partition(name="compute", max_time="2-00:00:00", node_addresses=("127.0.0.1",))
    fake = FakeSite(partition=compute)
    monkeypatch.setattr(slurmprofile.SlurmSite, "sbatch_path", fake.sbatch_path)
    monkeypatch.setattr(slurmprofile.SlurmSite, "partition", lambda self, name: compute)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    for command in SITE_EXAMPLE:
        assert main(command.split()[3:]) == 0
    assert main(["profile", "show", "hpc"]) == 0
    shown = capsys.readouterr().out
    assert "  slurm jobs: 4 (job array), 24 engines per job" in shown
    assert "  time limit: 02:00:00 per job" in shown
    assert "  partition: compute" in shown
    config = (tmp_path / "ipython" / "profile_hpc" / "ipcluster_config.py").read_text()
    assert "c.SlurmEngineSetLauncher.account = 'proj42'" in config
