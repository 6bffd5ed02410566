"""Engines whose Slurm job ends: when a lost engine's job ended (time limit, ``scancel``)
rather than the engine dying, and what the terminal says of it.

The Run (:mod:`pytest_gold.policy.runwalltime`) moves the cases of an engine whose job
ended to other engines, not counted against ``--gold-retries``; the Driver asks this
module whether that is what happened, and says it once per job, when the job's last
engine in the run is gone: ``gold: job 4711 reached its time limit; 3 cases moved to
other engines``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pytest_gold.launch.slurmstate import job_state
from pytest_gold.protocol.messages import EngineInfo

#: Slurm's job states of a job that ended by Slurm's decision or the user's, as said on
#: the terminal. Others (``NODE_FAIL``, ``FAILED``, ``COMPLETED``: the job's script ended
#: because its engines did; still ``RUNNING``: the engine died on its own) are a lost
#: engine as any other.
ENDED_STATES = {
    "TIMEOUT": "reached its time limit",
    "DEADLINE": "reached its deadline",
    "CANCELLED": "was cancelled",
    "PREEMPTED": "was preempted",
}
#: A job whose processes Slurm is ending: it ended (time limit, scancel), how is said
#: once it completed (see :mod:`pytest_gold.launch.slurmstate`).
COMPLETING = "COMPLETING"
#: What is said of a job still completing at the end of the run.
ENDED = "ended"
TIME_LIMIT_REASON = "TimeLimit"

StateOf = Callable[[str], "tuple[str, str] | None"]


def how_job_ended(job: str, state_of: StateOf = job_state) -> str:
    """How the job ended, in words (:data:`COMPLETING`: it is ending, how is not known
    yet; ``""``: it did not end, or there is no job)."""
    if not job:
        return ""
    said = state_of(job)
    if said is None:
        return ""
    state, reason = said
    state = state.split("+")[0]
    if reason == TIME_LIMIT_REASON:
        return ENDED_STATES["TIMEOUT"]
    if state == COMPLETING:
        return COMPLETING
    return ENDED_STATES.get(state, "")


@dataclass
class JobEnds:
    """Job ends seen during the run, said once per job: when the job's last engine in
    the run is gone and Slurm says how it ended (at the end of the run at the latest)."""

    state_of: StateOf = job_state
    #: job -> (how it ended, cases moved so far)
    pending: dict[str, tuple[str, int]] = field(default_factory=dict)

    def note(self, job: str, how: str, moved: int) -> None:
        """The job ended (``how``: in words; ``""``: as said before) and ``moved`` more
        of its cases went to other engines."""
        said, before = self.pending.get(job, (how, 0))
        self.pending[job] = (said or how, before + moved)

    def lines(self, live_jobs: Iterable[str], final: bool = False) -> list[str]:
        """Lines for the jobs none of whose engines is still in the run (all of them, at
        the end of the run)."""
        live = set(live_jobs)
        out = []
        for job in list(self.pending):
            how, moved = self.pending[job]
            if job in live and not final:
                continue
            if how == COMPLETING:
                how = how_job_ended(job, self.state_of)
                if how == COMPLETING and not final:
                    continue
                how = ENDED if how in (COMPLETING, "") else how
            del self.pending[job]
            out.append(ended_line(job, how, moved))
        return out


def in_run_clock(job_end: float | None, now: float, wall_now: float) -> float | None:
    """An end time in seconds since the epoch (the engine's clock) in the Run's clock
    (``now``: the Run's, at ``wall_now`` seconds since the epoch here). Clocks that
    differ between nodes are what the margin's seconds cover."""
    return None if job_end is None else job_end - wall_now + now


def ended_line(job: str, how: str, moved: int) -> str:
    cases = f"{moved} case{'s' if moved != 1 else ''} moved to other engines"
    return f"gold: job {job} {how}; {cases}" if moved else f"gold: job {job} {how}"


def released_line(engine: EngineInfo, seconds_left: float, shortest_needs: float) -> str:
    return (
        f"gold: {engine.tag} released: its Slurm job {engine.slurm_job} ends in "
        f"{max(seconds_left, 0):.0f} s, and the shortest case left needs {shortest_needs:.0f} s "
        "with the margin (--gold-walltime-margin)"
    )
