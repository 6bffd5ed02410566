"""The docs' sample outputs: included where they are shown, compared with fresh runs.

Regenerating them runs the documented commands (``python docs/samples/regenerate.py``;
CI runs it with ``--check``); here, without a cluster: that every sample file is shown
by the docs and every included one exists, and how a sample is compared with a run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
SAMPLES = DOCS / "samples"
sys.path.insert(0, str(SAMPLES))

from samplecheck import canonical, differences, presentable  # noqa: E402

INCLUDE = re.compile(r"^\s*\.\. literalinclude:: (samples/\S+)", re.M)


def _included() -> set[Path]:
    return {
        (DOCS / match).resolve()
        for page in DOCS.glob("*.rst")
        for match in INCLUDE.findall(page.read_text())
    }


def test_every_sample_is_shown_and_every_shown_sample_exists():
    included = _included()
    outputs = {path.resolve() for path in (SAMPLES / "output").glob("*.txt")}
    assert outputs, "no sample outputs: run python docs/samples/regenerate.py"
    assert not outputs - included, f"samples the docs do not show: {outputs - included}"
    assert all(path.exists() for path in included), [p for p in included if not p.exists()]


def test_every_sample_maker_writes_files_the_docs_show():
    from catalog import SAMPLES as MAKERS

    assert MAKERS, "no sample makers"
    text = (SAMPLES / "regenerate.py").read_text()
    assert "--check" in text


RUN = """\
$ pytest --gold -v sims/
gold: embedded cluster on 127.0.0.1, started in 2.3 s: 2 engines on 1 host (vm: 2)
[vm:e0] [ 50%] PASSED sims/test_a.py::test_x[1]
[vm:e1] [100%] FAILED sims/test_a.py::test_x[2]
sims/test_a.py ..F                                                     [100%]
gold: 12/100 cases done (11 passed, 1 failed), 4 running, engines 4/4 busy, ETA 0:05:10
============================= 1 passed, 1 failed in 7.79s =============================
"""


def test_a_run_that_differs_in_numbers_order_and_timing_matches():
    fresh = (
        RUN.replace(
            "2.3 s: 2 engines", "4.1 s: 1 engine of 2 registered (the others join as they start)"
        )
        .replace("[vm:e0] [ 50%] PASSED", "[vm:e1] [ 50%] PASSED")
        .replace("7.79s ===", "12.01s ==")
    )
    lines = fresh.splitlines()
    lines[2], lines[3] = lines[3], lines[2]  # results in another order
    lines[2] = lines[2].replace("[100%]", "[ 50%]")
    lines[3] = lines[3].replace("[ 50%]", "[100%]")
    del lines[5]  # no status line this time
    assert differences(RUN, "\n".join(lines)) == []


def test_a_changed_message_or_a_new_gold_line_does_not():
    changed = RUN.replace("FAILED sims", "ERROR sims")
    assert differences(RUN, changed) == [
        "not in a fresh run: [vm:eN] [N%] FAILED sims/test_a.py::test_x[N]"
    ]
    added = RUN + "gold: lost engine vm:e1 (pid 7); 1 case sent again elsewhere\n"
    assert differences(RUN, added) == [
        "not in the sample: gold: lost engine vm:eN (pid N); N cases sent again elsewhere"
    ]


def test_canonical_lines():
    assert canonical("sims/test_long.py .....F..                [ 66%]") is None
    assert canonical("...") is None
    assert canonical("=== 5 passed in 1.2s ===") == canonical("== 7 passed in 10.31s ==")
    assert canonical("1 passed in 75.12s (0:01:15)") == canonical("1 passed in 7.51s")


def test_presentable_hides_what_differs_between_machines():
    text = (
        "/tmp/x1/camp/sims/t.py (pid 4242) crashed; again (pid 4242), then (pid 99)\n"
        "Current thread 0x00007fa672a9db80 (most recent call first):\n"
        "plugins: xdist-3.8.0, gold-0.1.0, hypothesis-6.1   \n"
        "[gold9:e1] linux host gold9 engine 1\n"
    )
    shown = presentable(text, {"/tmp/x1/camp": "/home/me/camp"}, "gold9")
    assert shown == (
        "/home/me/camp/sims/t.py (pid 24101) crashed; again (pid 24101), then (pid 24102)\n"
        "Current thread 0x00007f6d1b900b80 (most recent call first):\n"
        "plugins: gold-0.1.0\n"
        "[vm:e1] linux host vm engine 1\n"
    )


#: Pages whose outputs need SSH hosts: written by hand, and labelled so.
HAND_WRITTEN = {"lab-cluster.rst"}


@pytest.mark.parametrize(
    "page", sorted(p.name for p in DOCS.glob("*.rst") if p.name not in HAND_WRITTEN)
)
def test_no_hand_written_gold_run_output_is_left(page):
    """Run output in the docs comes from samples/output: a console block that shows a
    summary line of a run is a hand-written sample."""
    text = (DOCS / page).read_text()
    blocks = re.findall(r"code-block:: (?:console|text)\n\n((?:   .*\n|\n)+)", text)
    for block in blocks:
        assert not re.search(r"^   =+ .*\d+ (passed|failed).* in [\d.]+s =+$", block, re.M), (
            f"{page}: a run's output written by hand:\n{block}"
        )


def test_cases_cut_short_are_compared_by_wording_not_by_which_or_how_many():
    sample = (
        "gold: cut short while running: sims/test_long.py::test_heat[implicit-128] (on vm:e1)\n"
        "gold: cut short while running: sims/test_long.py::test_heat[explicit-16] (on vm:e0)\n"
    )
    fresh = "gold: cut short while running: sims/test_long.py::test_heat[crank-64] (on vm:e0)\n"
    assert differences(sample, fresh) == []
    reworded = "gold: cut short: sims/test_long.py::test_heat[crank-64] (on vm:e0)\n"
    assert differences(sample, reworded)
