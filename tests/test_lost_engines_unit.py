"""What a run knows about the engines its cluster should have, and about those it lost.

Fakes in place of ipyparallel: the profile's engine count against --gold-min-engines, the
announce line of a cluster with fewer engines than its profile defines, and the end-of-run
recap, per-host summary and status of engines lost during the run.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_gold.controller.faults import FaultHandling
from pytest_gold.controller.progress import Progress, format_host_table
from pytest_gold.controller.session import RunState
from pytest_gold.policy.scheduling import DispatchQueue
from pytest_gold.protocol.messages import EngineInfo

from .test_pool_unit import FakeClient, Pool

HOSTS = [f"gold{n}" for n in range(2, 8)]
PROFILE_HOSTS = dict.fromkeys(HOSTS, 2)


def handle(**changes) -> SimpleNamespace:
    base = dict(
        description="attached to the cluster of profile 'gold'",
        owned=False,
        started_seconds=0.0,
        expected_engines=None,
        profile_engines=12,
        profile_hosts=PROFILE_HOSTS,
        warnings=[],
    )
    return SimpleNamespace(**{**base, **changes})


def engine(eid: int, host: str) -> EngineInfo:
    return EngineInfo(
        engine_id=eid, host=host, pid=1000 + eid, python="", executable="", platform=""
    )


def pool_with(need: int, **handle_changes) -> Pool:
    pool = Pool()
    pool.settings = SimpleNamespace(wait_seconds=600.0, min_engines=need, profile="gold")
    pool.handle = handle(**handle_changes)
    return pool


def test_min_engines_above_what_the_profile_defines_fails_at_once():
    pool, client = pool_with(need=13), FakeClient()
    client.ids = list(range(10))
    with pytest.raises(pytest.UsageError) as failure:
        pool.wait_for_engines(client)  # FakeResult asserts if it waited for any engine
    text = str(failure.value)
    assert "--gold-min-engines=13" in text
    assert "the profile 'gold' defines only 12 (gold2: 2, gold3: 2" in text
    assert "'python -m pytest_gold profile create gold ... --force'" in text
    assert not pool.lines  # no "waiting for engines" line: nothing was waited for


def test_more_engines_than_the_profile_defines_are_fine_once_registered():
    pool, client = pool_with(need=13), FakeClient()
    client.ids = list(range(14))  # e.g. started with 'ipcluster engines' on top
    pool.discover_engines = lambda client, initial=False: pool.state.engines.update(
        {eid: engine(eid, "gold2") for eid in client.ids}
    )
    pool.wait_for_engines(client)
    assert len(pool.state.engines) == 14


def test_a_run_that_started_the_cluster_knows_how_many_it_started():
    pool = pool_with(need=5, owned=True, expected_engines=4, profile_engines=4, profile_hosts={})
    with pytest.raises(pytest.UsageError, match="defines only 4, so the run would wait"):
        pool.wait_for_engines(FakeClient())


def test_waiting_in_vain_names_the_real_profile():
    ssh = pool_with(need=4).too_few_engines(usable=1, registered=1)
    assert "'python -m pytest_gold profile engines gold HOST'" in ssh and "NAME" not in ssh
    local = pool_with(need=4, profile_hosts={}).too_few_engines(usable=1, registered=1)
    assert "'ipcluster engines --profile=gold -n 3'" in local and "NAME" not in local


def test_announce_says_what_the_profile_defines_when_engines_are_missing():
    pool = pool_with(need=1)
    for eid in range(10):
        pool.state.engines[eid] = engine(eid, HOSTS[eid // 2])
    pool.announce()
    assert pool.lines == [
        "gold: attached to the cluster of profile 'gold': 10 engines on 5 hosts (gold2: 2, "
        "gold3: 2, gold4: 2, gold5: 2, gold6: 2); the profile defines 12 (gold7: 0 of 2)"
    ]
    full = pool_with(need=1)
    full.state.engines = {eid: engine(eid, HOSTS[eid // 2]) for eid in range(12)}
    full.announce()
    assert "the profile defines" not in full.lines[0]


class Faults(FaultHandling):
    def __init__(self) -> None:
        self.state = RunState()
        self.settings = SimpleNamespace(retries=1)
        self.progress = Progress(total=40)
        self.lines: list[str] = []
        #: Calls of the pytest_gold_engine_lost hook.
        self.lost_calls: list[dict] = []
        self.config = SimpleNamespace(
            hook=SimpleNamespace(pytest_gold_engine_lost=lambda **kw: self.lost_calls.append(kw))
        )

    def write_line(self, text: str, *, problem: bool = False) -> None:
        self.lines.append(text)


def test_lost_engines_are_recapped_and_marked_per_host():
    faults = Faults()
    for eid in range(4):
        info = engine(eid, HOSTS[eid // 2])
        faults.state.engines[eid] = info
        faults.state.idle.append(eid)
        faults.progress.add_engine(info.host)
    faults.progress.finished("gold2", "passed", 1.0)
    client = FakeClient()
    client.ids = [0, 1]  # gold3's engines 2 and 3 were unregistered while idle
    queue = DispatchQueue(["t::a", "t::b"], engine_count=4, target_batch_seconds=1.0)
    faults.drop_lost_idle(client, queue)
    assert faults.state.idle == [0, 1] and set(faults.state.engines) == {0, 1}
    assert faults.lines == [
        "gold: lost engine gold3:e2 (pid 1002) while it was idle",
        "gold: lost engine gold3:e3 (pid 1003) while it was idle",
    ]
    # The hook hears of every lost engine, here with no case of its own.
    assert [(c["engine"].tag, c["cases"]) for c in faults.lost_calls] == [
        ("gold3:e2", []),
        ("gold3:e3", []),
    ]
    faults.state.cases_resent = 3
    recap = faults.lost_recap()
    assert (
        recap[0]
        == "gold: 2 engines lost during the run (every engine of gold3: gold3:e2, gold3:e3)"
    )
    assert recap[1].startswith("gold: 3 cases running on them went to other engines;")
    table = format_host_table(faults.progress.hosts, wall_seconds=10.0)
    assert table[0].split() == ["host", "engines", "cases", "failed", "busy", "use", "lost"]
    assert table[2].split()[0] == "gold3" and table[2].split()[-1] == "2"
    snapshot = faults.progress.snapshot(
        running=0, engines_busy=0, engines_available=2, queued_seconds=[]
    )
    assert snapshot.hosts["gold3"].lost == 2 and snapshot.hosts["gold2"].lost == 0


def test_no_recap_and_no_lost_column_when_nothing_was_lost():
    faults = Faults()
    faults.progress.add_engine("gold2")
    assert faults.lost_recap() == []
    assert "lost" not in format_host_table(faults.progress.hosts, wall_seconds=1.0)[0]


def test_losing_every_engine_while_idle_stops_the_run():
    faults = Faults()
    faults.state.engines[0] = engine(0, "gold2")
    faults.state.idle.append(0)
    queue = DispatchQueue(["t::a", "t::b"], engine_count=1, target_batch_seconds=1.0)
    faults.drop_lost_idle(FakeClient(), queue)
    assert faults.state.stop_reason == "every engine was lost"
    assert faults.state.not_run == ["t::a", "t::b"] and not queue
