"""What the driver does when engines leave a run: lost, their Slurm job ended, released
(nothing left fits before their job ends), left out by the engine check, or abandoned
after a stop. Part of :class:`pytest_gold.controller.driver.Driver`, split out by concern;
the rules (what a loss costs, where the cases go) are the Run's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_gold.controller.faults import abandoned_line, lost_engine_line
from pytest_gold.controller.jobends import how_job_ended, released_line
from pytest_gold.policy.enginecheck import describe
from pytest_gold.policy.run import (
    Abandoned,
    Action,
    EngineLeftOut,
    EngineLostNotice,
    EngineReleased,
    StopKind,
)
from pytest_gold.protocol.messages import EngineInfo

if TYPE_CHECKING:
    from pytest_gold.controller.driver import Driver


def check_failed(driver: Driver, action: EngineLeftOut, answer: EngineInfo | None) -> None:
    eid = action.engine_id
    failed = (answer, list(action.problems))
    driver.failed_check[eid] = failed
    if not driver.initial:
        line = describe({eid: failed})[0]
        driver.terminal.write_line(f"gold: engine check failed, left out: {line}", problem=True)


def lose_engine(driver: Driver, eid: int, message: str, now: float) -> list[Action]:
    """The engine is gone: its Slurm job ended (its cases move, see
    pytest_gold.controller.jobends), or it was lost."""
    how = how_job_ended(driver.info[eid].slurm_job) if eid in driver.info else ""
    if how:
        driver.job_ends.note(driver.info[eid].slurm_job, how, 0)
        return driver.run.job_ended(eid, now)
    return driver.run.engine_lost(eid, message, now)


def say_job_ends(driver: Driver, final: bool = False) -> None:
    live = {driver.info[eid].slurm_job for eid in driver.run.usable if eid in driver.info}
    for line in driver.job_ends.lines(live, final):
        driver.terminal.write_line(line, problem=True)


def engine_lost(driver: Driver, action: EngineLostNotice) -> None:
    engine = driver.info[action.engine_id]
    driver.config.hook.pytest_gold_engine_lost(
        config=driver.config, engine=engine, cases=list(action.nodeids)
    )
    if action.job_ended:  # not a lost engine: its job ended, as jobs do
        driver.progress.engine_left(action.engine_id)
        driver.job_ends.note(engine.slurm_job, "", action.resent)
        say_job_ends(driver)
        return
    driver.lost[action.engine_id] = engine
    driver.progress.lose_engine(engine.host, action.engine_id)
    line = lost_engine_line(engine, action.cases, action.resent)
    driver.terminal.write_line(line, problem=True)


def released(driver: Driver, action: EngineReleased) -> None:
    driver.progress.engine_left(action.engine_id)
    line = released_line(driver.info[action.engine_id], action.seconds_left, action.shortest_needs)
    driver.terminal.write_line(line)


def abandoned(driver: Driver, action: Abandoned) -> None:
    # Nothing more is waited for there (not even the end-of-run teardown).
    gone = set(action.engine_ids)
    driver.sent = {f: sent for f, sent in driver.sent.items() if sent.engine_id not in gone}
    if driver.run.stop_kind is not StopKind.INTERRUPT:  # Ctrl-C: no more waiting
        tags = [driver.tag_of(eid) for eid in action.engine_ids]
        driver.terminal.write_line(abandoned_line(tags), problem=True)
