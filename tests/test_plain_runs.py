"""Installed but not asked for: a plain ``pytest`` run is not changed by pytest-gold, and
pytest-gold's cache entries cannot break a run, whatever they hold.

Most tests here need no cluster; those with ``gold_args`` run an inner ``--gold`` run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_gold.policy import resume

#: pytest-gold's cache entries, and the plugins a plain run registers (by name).
DURATIONS_CACHE_KEY = "gold/durations"
PLAIN_RUN_PLUGINS = ["gold-recording", "gold-recording-switch"]

#: A parameter that fails the run if anything converts it (iterates over it).
UNTOUCHABLE_PARAMETER = """
    import pytest

    class Untouchable(list):
        def __iter__(self):
            raise AssertionError("a parametrize value was converted")

    @pytest.mark.parametrize("value", [Untouchable([1, 2])], ids=["untouchable"])
    def test_untouched(value):
        pass
"""

SELF_REFERENCE = """
    import pytest

    loop = [1]
    loop.append(loop)

    @pytest.mark.parametrize("value", [loop], ids=["loop"])
    def test_loop(value):
        assert value[1] is value
"""


def _cache_entry(pytester: pytest.Pytester, key: str) -> Path:
    return pytester.path / ".pytest_cache" / "v" / key


def _gold_plugins(config: pytest.Config) -> list[str]:
    names = [name for name, _ in config.pluginmanager.list_name_plugin()]
    return sorted(name for name in names if name and name.startswith("gold-"))


def test_names_of_what_a_plain_run_registers() -> None:
    from pytest_gold.records import cachedata, recording

    assert [recording.FIXTURE_PLUGIN, recording.SWITCH_PLUGIN] == PLAIN_RUN_PLUGINS
    assert cachedata.DURATIONS_CACHE_KEY == DURATIONS_CACHE_KEY


def test_plain_run_registers_the_fixture_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_one(gold_record):\n    gold_record['x'] = 1\n")
    seen: list[list[str]] = []

    class Spy:
        def pytest_sessionfinish(self, session: pytest.Session) -> None:
            seen.append(_gold_plugins(session.config))

    pytester.inline_run(plugins=[Spy()]).assertoutcome(passed=1)
    # The fixture, and a look at the end of collection; no per-report hook, no recorder.
    assert seen == [PLAIN_RUN_PLUGINS]
    assert not _cache_entry(pytester, resume.CACHE_KEY).exists()


def test_plain_run_never_converts_parameters(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(UNTOUCHABLE_PARAMETER)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert result.ret == 0


def test_self_referencing_parameter(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SELF_REFERENCE)
    pytester.runpytest().assert_outcomes(passed=1)
    results = pytester.runpytest("--gold-results=out.jsonl")
    results.assert_outcomes(passed=1)
    row = json.loads((pytester.path / "out.jsonl").read_text())
    assert row["value"] == "[1, [1, [1, [...]]]]"  # bounded, whatever the depth


def test_results_cells_of_unconvertible_parameters_are_text(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_cells=UNTOUCHABLE_PARAMETER)
    result = pytester.runpytest("--gold-results=out.jsonl")
    result.assert_outcomes(passed=1)
    row = json.loads((pytester.path / "out.jsonl").read_text())
    assert row["value"] == "[1, 2]"  # its repr, without iterating over it


def test_record_hook_in_a_deeper_conftest_gets_rows(pytester: pytest.Pytester) -> None:
    """Recording turns on where a pytest_gold_record hook exists, even in a conftest that
    is loaded only during collection; gold_record values reach it."""
    log = pytester.path / "rows.log"
    sub = pytester.mkpydir("sims")
    (sub / "conftest.py").write_text(
        "def pytest_gold_record(config, report, record):\n"
        f"    with open({str(log)!r}, 'a') as f:\n"
        "        f.write(f\"{record['nodeid']} {record['outcome']} {record.get('tb')}\\n\")\n"
    )
    (sub / "test_sweep.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.parametrize('i', [1, 2])\n"
        "def test_case(i, gold_record):\n"
        "    gold_record['tb'] = i * 10\n"
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    assert sorted(log.read_text().splitlines()) == [
        "sims/test_sweep.py::test_case[1] passed 10",
        "sims/test_sweep.py::test_case[2] passed 20",
    ]


def test_plain_run_keeps_a_campaigns_resume_state(pytester: pytest.Pytester) -> None:
    """Where a --gold campaign keeps its done cases, a plain run that fails one of them
    takes it off the list, so that --gold-resume runs it again."""
    pytester.makepyfile(
        test_sweep="""
        import os
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_case(i):
            assert not (i == 1 and os.path.exists("broken"))
        """
    )
    entry = _cache_entry(pytester, resume.CACHE_KEY)
    entry.parent.mkdir(parents=True)
    entry.write_text(json.dumps([f"test_sweep.py::test_case[{i}]" for i in range(3)]))
    (pytester.path / "broken").touch()
    pytester.runpytest().assert_outcomes(passed=2, failed=1)
    assert json.loads(entry.read_text()) == [
        "test_sweep.py::test_case[0]",
        "test_sweep.py::test_case[2]",
    ]


# -- corrupt cache entries --------------------------------------------------------------

TWO_CASES = "def test_one():\n    pass\n\ndef test_two():\n    pass\n"


def _corrupt(pytester: pytest.Pytester, key: str, text: str = "42") -> None:
    entry = _cache_entry(pytester, key)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(text)


@pytest.mark.parametrize("key", [resume.CACHE_KEY, DURATIONS_CACHE_KEY])
@pytest.mark.parametrize("options", [[], ["--gold-resume"], ["--gold-results=out.csv"]])
def test_corrupt_cache_entry_in_a_plain_run(
    pytester: pytest.Pytester, key: str, options: list[str]
) -> None:
    pytester.makepyfile(test_two=TWO_CASES)
    _corrupt(pytester, key)
    result = pytester.runpytest(*options)
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text
    if key == resume.CACHE_KEY:  # a plain run reads (and replaces) only gold/passed
        assert text.count(f"ignored the cache entry {key}") == 1, text
        assert json.loads(_cache_entry(pytester, key).read_text()) == [
            "test_two.py::test_one",
            "test_two.py::test_two",
        ]


@pytest.mark.cluster
@pytest.mark.parametrize("key", [resume.CACHE_KEY, DURATIONS_CACHE_KEY])
@pytest.mark.parametrize("resume_option", [[], ["--gold-resume"]])
def test_corrupt_cache_entry_in_a_gold_run(
    pytester: pytest.Pytester, gold_args: list[str], key: str, resume_option: list[str]
) -> None:
    pytester.makepyfile(test_two=TWO_CASES)
    _corrupt(pytester, key, '{"a": "b"}' if key == DURATIONS_CACHE_KEY else "42")
    result = pytester.runpytest(*gold_args, *resume_option)
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    text = result.stdout.str() + result.stderr.str()
    assert text.count(f"ignored the cache entry {key}") == 1, text
    assert "INTERNALERROR" not in text
    # Replaced by a good entry: the next run reads it without a word.
    again = pytester.runpytest(*gold_args, *resume_option)
    assert "ignored the cache entry" not in again.stdout.str()
