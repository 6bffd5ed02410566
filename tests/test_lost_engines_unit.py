"""What a run knows about the engines its cluster should have, and about those it lost.

Fakes in place of ipyparallel: the profile's engine count against --gold-min-engines, the
announce line of a cluster with fewer engines than its profile defines, and the end-of-run
recap, per-host summary and status of engines lost during the run (through the Driver and
the Run it feeds).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_gold.controller.enginepool import announce_lines, too_few_engines
from pytest_gold.controller.faults import lost_recap
from pytest_gold.controller.progress import format_host_table
from pytest_gold.controller.running import wait_for_engines
from pytest_gold.protocol.messages import EngineInfo

from .test_pool_unit import FakeClient, make_driver

HOSTS = [f"gold{n}" for n in range(2, 8)]
PROFILE_HOSTS = dict.fromkeys(HOSTS, 2)


def handle(client: FakeClient | None = None, **changes) -> SimpleNamespace:
    base = dict(
        client=client,
        description="attached to the cluster of profile 'gold'",
        owned=False,
        started_seconds=0.0,
        expected_engines=None,
        profile_engines=12,
        profile_hosts=PROFILE_HOSTS,
        warnings=[],
        slurm_jobs=[],
        keep=False,
    )
    return SimpleNamespace(**{**base, **changes})


def settings(need: int) -> SimpleNamespace:
    return SimpleNamespace(wait_seconds=600.0, min_engines=need, profile="gold")


def engine(eid: int, host: str) -> EngineInfo:
    return EngineInfo(
        engine_id=eid, host=host, pid=1000 + eid, python="", executable="", platform=""
    )


def test_min_engines_above_what_the_profile_defines_fails_at_once():
    client = FakeClient()
    client.ids = list(range(10))
    cluster = handle(client)
    driver = make_driver(client, min_engines=13, handle=cluster)
    with pytest.raises(pytest.UsageError) as failure:
        wait_for_engines(driver, cluster, settings(13))  # FakeResult asserts if it waited
    text = str(failure.value)
    assert "--gold-min-engines=13" in text
    assert "the profile 'gold' defines only 12 (gold2: 2, gold3: 2" in text
    assert "'python -m pytest_gold profile create gold ... --force'" in text
    assert not driver.terminal.lines  # no "waiting for engines" line: nothing was waited for


def test_more_engines_than_the_profile_defines_are_fine_once_registered():
    client = FakeClient(answers=True)
    client.ids = list(range(14))  # e.g. started with 'ipcluster engines' on top
    cluster = handle(client)
    driver = make_driver(client, min_engines=13, handle=cluster)
    wait_for_engines(driver, cluster, settings(13))
    assert len(driver.run.usable) == 14


def test_a_run_that_started_the_cluster_knows_how_many_it_started():
    client = FakeClient()
    cluster = handle(client, owned=True, expected_engines=4, profile_engines=4, profile_hosts={})
    driver = make_driver(client, min_engines=5, handle=cluster)
    with pytest.raises(pytest.UsageError, match="defines only 4, so the run would wait"):
        wait_for_engines(driver, cluster, settings(5))


def test_waiting_in_vain_names_the_real_profile():
    ssh = too_few_engines(handle(), settings(4), usable=1, registered=1, failed={})
    assert "'python -m pytest_gold profile engines gold HOST'" in ssh and "NAME" not in ssh
    local = too_few_engines(
        handle(profile_hosts={}), settings(4), usable=1, registered=1, failed={}
    )
    assert "'ipcluster engines --profile=gold -n 3'" in local and "NAME" not in local


def test_announce_says_what_the_profile_defines_when_engines_are_missing():
    engines = {eid: engine(eid, HOSTS[eid // 2]) for eid in range(10)}
    assert announce_lines(handle(), engines) == [
        "gold: attached to the cluster of profile 'gold': 10 engines on 5 hosts (gold2: 2, "
        "gold3: 2, gold4: 2, gold5: 2, gold6: 2); the profile defines 12 (gold7: 0 of 2)"
    ]
    full = {eid: engine(eid, HOSTS[eid // 2]) for eid in range(12)}
    assert "the profile defines" not in announce_lines(handle(), full)[0]


def joined(driver, engines: list[EngineInfo]) -> None:
    """The engines passed their checks and joined the run."""
    for info in engines:
        driver.info[info.engine_id] = info
        driver.apply(driver.run.engine_registered(info.engine_id, 0.0), 0.0)
        driver.checks.pending.clear()
        driver.apply(driver.run.engine_checked(info.engine_id, [], 0.0), 0.0)


def test_lost_engines_are_recapped_and_marked_per_host():
    client = FakeClient()
    driver = make_driver(client)
    joined(driver, [engine(eid, HOSTS[eid // 2]) for eid in range(4)])
    driver.progress.finished("gold2", "passed", 1.0)
    client.ids = [0, 1]  # gold3's engines 2 and 3 were unregistered while idle
    driver.drop_lost_idle(1.0)
    assert driver.run.idle_order == [0, 1] and driver.run.usable == [0, 1]
    assert driver.terminal.lines == [
        "gold: lost engine gold3:e2 (pid 1002) while it was idle",
        "gold: lost engine gold3:e3 (pid 1003) while it was idle",
    ]
    # The hook hears of every lost engine, here with no case of its own.
    lost_calls = [kwargs for name, kwargs in driver.hook_calls if name == "engine_lost"]
    assert [(c["engine"].tag, c["cases"]) for c in lost_calls] == [
        ("gold3:e2", []),
        ("gold3:e3", []),
    ]
    recap = lost_recap(driver.lost, driver.progress, resent=3, failed=0)
    assert (
        recap[0]
        == "gold: 2 engines lost during the run (every engine of gold3: gold3:e2, gold3:e3)"
    )
    assert recap[1].startswith("gold: 3 cases running on them went to other engines;")
    table = format_host_table(driver.progress.hosts, wall_seconds=10.0)
    assert table[0].split() == [
        "host",
        "engines",
        "cases",
        "failed",
        "busy",
        "use",
        "occupied",
        "lost",
    ]
    assert table[2].split()[0] == "gold3" and table[2].split()[-1] == "2"
    snapshot = driver.progress.snapshot(
        running=0, engines_busy=0, engines_available=2, queued_seconds=[]
    )
    assert snapshot.hosts["gold3"].lost == 2 and snapshot.hosts["gold2"].lost == 0


def test_no_recap_and_no_lost_column_when_nothing_was_lost():
    driver = make_driver(FakeClient())
    driver.progress.add_engine("gold2")
    assert lost_recap(driver.lost, driver.progress, resent=0, failed=0) == []
    assert "lost" not in format_host_table(driver.progress.hosts, wall_seconds=1.0)[0]


def test_losing_every_engine_while_idle_stops_the_run():
    driver = make_driver(FakeClient())
    joined(driver, [engine(0, "gold2")])
    driver.drop_lost_idle(1.0)
    assert driver.run.stop_reason == "every engine was lost"
    assert driver.run.not_run == ["t::a", "t::b"] and not driver.run.queue
    assert driver.run.over
