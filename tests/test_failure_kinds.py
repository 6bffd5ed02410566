"""Failures grouped by kind (pure: no cluster)."""

from __future__ import annotations

import pytest

from pytest_gold.policy.failurekinds import MAX_GROUPS, case_function, classify, summarize


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (
            "pytest-gold: t.py::x crashed its worker on vm:e1 (pid 24598): the worker "
            "process was killed by SIGSEGV",
            ("SIGSEGV", ""),
        ),
        ("SIGSEGV: the worker of t.py::x on vm:e1 (pid 3) was killed", ("SIGSEGV", "")),
        (
            "pytest-gold: t.py::x exceeded its time limit of 2 s on vm:e2 and was stopped: "
            "the worker process was killed by SIGKILL",
            ("time limit", ""),
        ),
        (
            "pytest-gold: engine lost: vm:e2 (pid 24813) died while running this case",
            ("lost with their engine", ""),
        ),
        (
            "pytest-gold: the ipyparallel controller stopped answering (61 s without a reply",
            ("unfinished when the controller was lost", ""),
        ),
        ("the worker process exited with code 3", ("exit code 3", "")),
        ("AssertionError: too warm", ("AssertionError", "too warm")),
        ("assert 1 == 2", ("AssertionError", "assert 1 == 2")),
        ("numpy.linalg.LinAlgError: Singular matrix", ("LinAlgError", "Singular matrix")),
        ("Failed: gave up", ("Failed", "gave up")),
        ("fixture 'grid' not found", ("other", "fixture 'grid' not found")),
    ],
)
def test_classify(message, kind):
    assert classify(message) == kind


def test_summary_counts_kinds_most_frequent_first():
    failures = (
        [(f"sims/test_rt.py::test_rt[{i}]", "... was killed by SIGSEGV") for i in range(12)]
        + [(f"sims/test_heat.py::test_heat[{i}]", "exceeded its time limit") for i in range(3)]
        + [("sims/test_rt.py::TestX::test_fp[a]", "FloatingPointError: overflow in exp")]
    )
    assert summarize(failures) == [
        "12 SIGSEGV in test_rt",
        " 3 time limits in test_heat",
        " 1 FloatingPointError in test_fp: overflow in exp",
    ]


def test_summary_names_a_few_tests_and_counts_the_other_kinds():
    many_tests = [(f"t.py::test_{i}", "ValueError: bad grid") for i in range(5)]
    assert summarize(many_tests) == ["5 ValueError in test_0, test_1, test_2 and 2 more: bad grid"]
    kinds = [(f"t.py::test_x[{i}]", f"Error{i}: boom") for i in range(MAX_GROUPS + 3)]
    lines = summarize(kinds)
    assert len(lines) == MAX_GROUPS + 1 and lines[-1] == "3 more in 3 other kinds"
    assert summarize([]) == []


def test_long_messages_are_cut():
    (line,) = summarize([("t.py::test_x", "ValueError: " + "x" * 200)])
    assert line.endswith("x...") and len(line) < 100


def test_case_function():
    assert case_function("a/b.py::TestX::test_bt[ch1-ocean]") == "test_bt"
    assert case_function("a/b.py::test_plain") == "test_plain"
