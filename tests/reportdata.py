"""A made-up campaign log, shaped like a real one, for the report's tests and benchmark.

A sweep ``test_bt[channel-profile-sky]`` on hosts of a few engines each: durations
lognormal, failures where ``channel == 183.31`` meets ``surface == snow`` (and a few
more at random), a crash and a time limit now and then, one engine lost mid-run and two
engines joining late.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from pytest_gold.report.campaignlog import LOG_FORMAT, LOG_VERSION

CHANNELS = [23.8, 31.4, 50.3, 89.0, 165.5, 176.31, 180.31, 183.31, 190.31, 229.0]
SURFACES = ["ocean", "land", "snow", "ice", "desert"]
SKIES = ["clear", "cloudy"]
FUNCTION = "sims/test_rt.py::test_bt"
TRACEBACK = """\
    def test_bt(channel, profile, sky, surface):
        tb = simulate(channel, profile, sky, surface)
>       assert 150 < tb < 320, f"brightness temperature {{tb:.1f}} K out of range"
E       AssertionError: brightness temperature {tb:.1f} K out of range over {surface}
E       assert 150 < {tb:.1f}

sims/test_rt.py:42: AssertionError"""


def campaign_records(
    cases: int,
    hosts: int = 6,
    engines_per_host: int = 4,
    seed: int = 0,
    start: float = 1_800_000_000.0,
    finished: bool = True,
    nodeid_prefix: str = "",
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    profiles = max(1, cases // (len(CHANNELS) * len(SKIES)))
    engines = [
        (f"gold{h + 2}", h * engines_per_host + e)
        for h in range(hosts)
        for e in range(engines_per_host)
    ]
    late = engines[-2:] if len(engines) > 4 else []
    lost_engine = engines[1] if len(engines) > 2 else None
    records: list[dict[str, Any]] = [
        {
            "event": "run",
            "format": LOG_FORMAT,
            "version": LOG_VERSION,
            "time": start,
            "utc_offset": 3600.0,
            "command": "pytest --gold --gold-profile=gold sims/",
            "cluster": "the cluster of profile 'gold'",
            "profile": "gold",
            "total": cases,
            "results": "/data/campaign/rt.csv",
            "axes": {
                FUNCTION: {
                    "channel": [json.dumps(c) for c in CHANNELS],
                    "profile": [str(p) for p in range(profiles)],
                    "sky": SKIES,
                }
            },
        }
    ]
    free = {}
    for host, engine in engines:
        joined = start + (600.0 if (host, engine) in late else 1.0)
        free[(host, engine)] = joined
        records.append({"event": "engine", "time": joined, "host": host, "engine": engine})
    lost_at = start + 1200.0
    cases_records = []
    for index in range(cases):
        channel = CHANNELS[index % len(CHANNELS)]
        sky = SKIES[(index // len(CHANNELS)) % len(SKIES)]
        profile = index // (len(CHANNELS) * len(SKIES))
        surface = SURFACES[profile % len(SURFACES)]
        live = [e for e in engines if not (e == lost_engine and free[e] >= lost_at)]
        where = min(live, key=free.__getitem__)
        begin = free[where]
        seconds = rng.lognormvariate(3.8, 0.5)
        outcome, message, longrepr = "passed", "", ""
        if (channel == 183.31 and surface == "snow") or rng.random() < 0.005:
            outcome = "failed"
            tb = rng.uniform(100, 140)
            longrepr = TRACEBACK.format(tb=tb, surface=surface)
            message = longrepr.splitlines()[3].removeprefix("E       ")
        elif rng.random() < 0.001:
            outcome, seconds = "failed", 0.0
            message = (
                f"pytest-gold: {FUNCTION}[{index}] crashed its worker on "
                f"{where[0]}:e{where[1]} (pid 4242): the worker process was killed by "
                "signal 11 (SIGSEGV)"
            )
            longrepr = message
        nodeid = f"{nodeid_prefix}{FUNCTION}[{json.dumps(channel)}-{profile}-{sky}]"
        free[where] = begin + seconds + 0.05
        record = {
            "event": "case",
            "nodeid": nodeid,
            "outcome": outcome,
            "start": begin,
            "stop": begin + seconds,
            "duration": seconds,
            "host": where[0],
            "engine": where[1],
            "params": {"channel": channel, "profile": profile, "sky": sky},
        }
        if outcome == "failed":
            record.update(message=message, longrepr=longrepr, output=f"computing {nodeid}\n")
        cases_records.append(record)
    cases_records.sort(key=lambda record: record["stop"])
    if lost_engine is not None:
        cases_records.append(
            {
                "event": "lost",
                "time": lost_at,
                "host": lost_engine[0],
                "engine": lost_engine[1],
                "cases": [f"{FUNCTION}[lost]"],
                "since": lost_at - 30.0,
            }
        )
    for record in cases_records:
        record.setdefault("time", record.get("stop", record.get("time")))
    records += sorted(cases_records, key=lambda record: record["time"])
    end = max(record["time"] for record in records)
    if finished:
        records.append({"event": "end", "time": end + 1, "state": "finished", "exit_status": 1})
    return records


def write_log(path: Path, records: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")
    return path
