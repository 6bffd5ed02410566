"""Samples of the usage errors that bad options and unusable clusters give."""

from __future__ import annotations

from catalog import sample
from scratch import Scratch, excerpt

BAD_VALUES = [
    ["--gold-engines", "0"],
    ["--gold-engines", "2.5"],
    ["--gold-wait", "-1"],
    ["--gold-timeout", "0"],
    ["--gold-batch-seconds", "abc"],
    ["--gold-retries", "-1"],
    ["--gold-order", "fastest"],
    ["--gold-status-interval", "0"],
    ["--gold-status-line", "fancy"],
    ["--gold-log", "terse"],
    ["--gold-env", "OMP_NUM_THREADS"],
    ["--gold-leftovers", "kill"],
    ["--gold-engines", "100000"],
    ["--gold-max-engines", "0"],
    ["--gold-idle-stop", "0"],
]
CONFLICTS = [
    ["-n", "2"],
    ["--pdb"],
    ["--setup-show"],
    ["--gold-profile", "gold", "--gold-connection-file", "client.json"],
    ["--gold-cluster-id", "x"],
    ["--gold-profile", "gold", "--gold-engines", "3"],
    ["--gold-keep-cluster", "--gold-connection-file", "client.json"],
    ["--gold-engines", "2", "--gold-min-engines", "4"],
    ["--gold-min-engines", "0"],
]
BAD_MARKER = """\
import pytest


@pytest.mark.gold(timeout="soon")
@pytest.mark.parametrize("channel", ["ch183"])
def test_bt(channel):
    pass
"""
BROKEN_PROFILE = 'c = get_config()\nc.Cluster.engine_launcher_class = "nosuch"\n'


def errors(s: Scratch, cases: list[list[str]], *, gold: bool = True) -> str:
    """Each command, and the ERROR paragraph it ends with."""
    texts = []
    for args in cases:
        run = s.run(*(["--gold"] if gold else []), *args, "sims/")
        texts.append(excerpt(run, "ERROR", first=1).replace("\n...\n", "\n"))
    return "\n".join(texts)


@sample("options")
def options(s: Scratch) -> dict[str, str]:
    (s.path / "out.jsonl").write_text("not a results table\n")
    (s.path / "out.csv").write_text("nodeid,outcome\n")
    # A pyarrow that cannot be imported: as on a machine without it.
    (s.path / "no-pyarrow" / "pyarrow").mkdir(parents=True)
    (s.path / "no-pyarrow" / "pyarrow" / "__init__.py").write_text("raise ImportError\n")
    results = [
        errors(s, [["--gold-results", "out.xlsx"], ["--gold-results", "out"]], gold=False),
        excerpt(
            s.run("--gold-results", "out.parquet", "sims/", PYTHONPATH=str(s.path / "no-pyarrow")),
            "ERROR",
            first=1,
        ).replace("\n...\n", "\n"),
        errors(s, [["--gold-results", "out.csv"]], gold=False),
        errors(
            s,
            [
                ["--gold-resume", "--gold-results", "out.csv", "--gold-results-overwrite"],
                ["--gold-resume", "--gold-results", "out.jsonl"],
            ],
        ),
    ]
    (s.path / "sims" / "test_rt.py").write_text(BAD_MARKER)
    marker = s.run("--gold", "sims/")
    (s.path / "sims" / "test_rt.py").unlink()
    (s.ipython / "profile_broken").mkdir(parents=True)
    (s.ipython / "profile_broken" / "ipcluster_config.py").write_text(BROKEN_PROFILE)
    cluster = errors(
        s,
        [
            ["--gold-profile", "nosuch"],
            ["--gold-profile", "broken"],
            ["--gold-connection-file", "/nonexistent.json"],
        ],
    )
    return {
        "options-bad-values": errors(s, BAD_VALUES),
        "options-results": "\n".join(results),
        "options-conflicts": errors(s, CONFLICTS),
        "options-marker": excerpt(marker, "ERROR", first=1),
        "options-cluster": cluster,
    }
