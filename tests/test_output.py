"""Live output with -s: every line once, as in a plain run; crash output once."""

from __future__ import annotations

import csv
import re
import uuid

import pytest

pytestmark = pytest.mark.cluster

#: Lines the loud case prints: more than ipyparallel's stream handling kept.
MANY_LINES = 51_200
#: One line of this many characters.
HUGE_LINE_CHARS = 5 * 1024 * 1024

LOUD_SUITE = f"""
def test_many_lines():
    for i in range({MANY_LINES}):
        print(f"line {{i:05d}} of many")

def test_one_huge_line():
    print("H" * {HUGE_LINE_CHARS})

def test_later():
    print("later case output")
"""


def case_output(text: str) -> tuple[list[int], list[int], int]:
    """The numbered lines, the lengths of the H lines, and the later case's lines."""
    numbered = [int(n) for n in re.findall(r"line (\d{5}) of many", text)]
    huge = [len(run) for run in re.findall(r"H{1000,}", text)]
    return numbered, huge, text.count("later case output")


def test_every_line_arrives_once_like_a_plain_run(pytester: pytest.Pytester, leak_check):
    """51,200 lines, one 5 MB line and a later case's line, all from one engine (where
    the last batch's output used to be cut off after a 2 s wait): each exactly once, in
    order, tagged with the engine, and nothing said about missing output."""
    pytester.makepyfile(LOUD_SUITE)
    plain = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    gold = pytester.runpytest_subprocess(
        "--gold", "--gold-engines=1", "-s", "-p", "no:cacheprovider"
    )
    plain.assert_outcomes(passed=3)
    gold.assert_outcomes(passed=3)
    expected = (list(range(MANY_LINES)), [HUGE_LINE_CHARS], 1)
    assert case_output(plain.stdout.str()) == expected
    text = gold.stdout.str()
    assert case_output(text) == expected
    tagged = [line for line in gold.stdout.lines if re.match(r"\[\S+:e0\] ", line)]
    assert len(tagged) == MANY_LINES + 2  # every case line tagged, nothing else
    assert "could not be read" not in text and "were lost" not in text


def test_teardown_output_at_the_end_of_the_run_is_shown(pytester: pytest.Pytester, gold_args):
    """What a session fixture prints in its teardown comes too, also when that teardown
    runs at the end of the run (on every engine but the one that ran the last case)."""
    pytester.makepyfile(
        """
        import os
        import time

        import pytest

        @pytest.fixture(scope="session")
        def server():
            print(f"server up in {os.getpid()}")
            yield
            print(f"server down in {os.getpid()}")

        @pytest.mark.parametrize("i", range(4))
        def test_uses_it(server, i):
            time.sleep(0.3)
        """
    )
    result = pytester.runpytest(
        *gold_args, "-s", "-p", "no:cacheprovider", "--gold-order=collection"
    )
    result.assert_outcomes(passed=4)
    text = result.stdout.str()
    up = re.findall(r"^\[(\S+)\] server up in (\d+)$", text, re.MULTILINE)
    down = re.findall(r"^\[(\S+)\] server down in (\d+)$", text, re.MULTILINE)
    assert len({tag for tag, _ in up}) == 2  # both engines ran cases
    assert sorted(up) == sorted(down)


def test_a_crash_shows_its_output_once_and_leads_with_the_cause(
    pytester: pytest.Pytester, gold_args
):
    """With -s, the case's last line and Python's fatal-error traceback appear once (as
    live output); the report's first line, which the short summary and the results
    table show, names the signal, not the test id again."""
    pytester.makepyfile(
        test_c="""
        import ctypes

        def test_segfaults():
            print("solver: step 41, dt=1e-09", flush=True)
            ctypes.string_at(0)
        """
    )
    result = pytester.runpytest(
        *gold_args, "-s", "-rA", "-p", "no:cacheprovider", "--gold-results=out.csv"
    )
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert text.count("Fatal Python error: Segmentation fault") == 1
    assert len(re.findall(r"^\[\S+:e\d+\] solver: step 41", text, re.MULTILINE)) == 1
    result.stdout.fnmatch_lines(
        [
            "crashed its worker: killed by SIGSEGV (Segmentation fault) on *:e* (pid *)",
            "*live output above, in the lines tagged [[]*:e*[]]",
        ]
    )
    (summary,) = [line for line in result.stdout.lines if line.startswith("FAILED ")]
    assert re.match(r"FAILED \S+::test_segfaults - crashed its worker: killed by SIG", summary)
    with open(pytester.path / "out.csv", newline="") as table:
        (row,) = csv.DictReader(table)
    assert re.fullmatch(
        r"crashed its worker: killed by SIGSEGV \(Segmentation fault\) on \S+:e\d+ \(pid \d+\)",
        row["message"],
    )


def test_output_that_never_came_live_is_read_from_the_engine(gold_cluster):
    """Every live chunk lost on the way (IOPub may drop messages): the result says
    where the output ends, and the controller reads it all from the engine's spool."""
    from pytest_gold.controller.liveoutput import LiveOutput
    from pytest_gold.engine.supervisor import remote_read_output

    view = gold_cluster.client[0]
    run_id = f"test-{uuid.uuid4().hex}"
    written = "".join(f"line {i} ✓\n" for i in range(2000)).encode()
    end = view.apply_sync(_spool_unpublished, run_id, written)
    try:
        shown: list[str] = []
        notices: list[str] = []
        live = LiveOutput(shown.append, notices.append, wait_seconds=0)

        def fetch(start: int) -> tuple[int, bytes]:
            answer = view.apply_sync(remote_read_output, run_id, start, 10_000)
            return answer["start"], answer["data"]

        live.settle({"outputs": []}, 0, "vm:e0", end, "?", fetch)
        assert "".join(shown).splitlines() == [f"[vm:e0] line {i} ✓" for i in range(2000)]
        assert not notices
    finally:
        view.apply_sync(_close_spools)


def _spool_unpublished(run_id: str, data: bytes) -> int:
    """On an engine: output in a run's spool that was never published."""
    from pytest_gold.engine import outputspool

    spool = outputspool.spool_for(run_id)
    spool.append(data)
    spool.published = spool.end
    return spool.end


def _close_spools() -> None:
    from pytest_gold.engine import outputspool

    outputspool.close_all()
