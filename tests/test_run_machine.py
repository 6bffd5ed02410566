"""The pure run state machine (pytest_gold.policy.run): rules and invariants.

A hypothesis ``RuleBasedStateMachine`` drives a :class:`Run` through random interleavings
of engines registering, passing or failing their check, batches coming back (whole, cut
short, with a pytest.exit()), engines lost with and without retries left, stops (-x,
Ctrl-C), a lost controller, engines whose Slurm jobs end (and the jobs ending), and time
passing, and checks after every step that no case is
lost or ended twice, that nothing is dispatched after a stop or to an engine that may not
get work, that retries happen only for lost engines and at most ``retries`` times (cases
of an ended job move without counting), and that no batch goes to an engine whose job ends
before the batch can finish.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pytest_gold.policy.run import (
    BATCHES_IN_FLIGHT,
    EVERY_ENGINE_LOST,
    Abandoned,
    BatchSummary,
    CheckEngine,
    Dispatch,
    EngineLostNotice,
    EngineReleased,
    EngineState,
    FailCase,
    GiveUpWaiting,
    Interrupt,
    Phase,
    Run,
    StopKind,
    summary_of,
)
from pytest_gold.policy.scheduling import DispatchQueue, InOrderRelease
from pytest_gold.policy.walltime import Margin
from pytest_gold.protocol.messages import Batch

#: Batches an engine holds in these tests (the Run's default may be fewer).
HELD = max(BATCHES_IN_FLIGHT, 2)


def make_run(
    cases: int,
    engines_needed: int = 1,
    retries: int = 1,
    in_order: bool = False,
    known: dict[int, float] | None = None,
    **kwargs,
) -> Run:
    """A run of ``cases`` cases; ``in_order``: one that stops on failures (-x, --maxfail,
    --sw), which sends one case per batch and replays results in pytest's order."""
    nodeids = [f"t.py::test[{i}]" for i in range(cases)]
    queue = DispatchQueue(
        nodeids,
        engine_count=2,
        target_batch_seconds=0.5,
        max_batch_cases=1 if in_order else None,
        keep_order=in_order,
        known_seconds={nodeids[i]: seconds for i, seconds in (known or {}).items()},
    )
    release = InOrderRelease(nodeids) if in_order else None
    kwargs.setdefault("batches_in_flight", HELD)
    return Run(queue=queue, min_engines=engines_needed, retries=retries, in_order=release, **kwargs)


def join(run: Run, eid: int, now: float = 0.0) -> None:
    assert run.engine_registered(eid, now) == [CheckEngine(eid)]
    run.engine_checked(eid, [], now)


def dispatched(actions) -> dict[int, list[str]]:
    """The cases sent to each engine (those of every batch it got, in order)."""
    sent: dict[int, list[str]] = {}
    for action in actions:
        if isinstance(action, Dispatch):
            sent.setdefault(action.engine_id, []).extend(action.batch.nodeids)
    return sent


# -- examples -------------------------------------------------------------------------


def test_nothing_is_dispatched_before_min_engines_passed_the_check():
    run = make_run(4, engines_needed=2)
    join(run, 0)
    assert run.phase is Phase.WAITING and dispatched(run.tick(1.0)) == {}
    run.engine_registered(1, 1.0)
    assert dispatched(run.tick(2.0)) == {}  # still checking
    run.engine_checked(1, [], 3.0)
    sent = dispatched(run.tick(3.0))
    assert set(sent) == {0, 1}


def test_the_first_wait_gives_up_after_the_wait():
    run = make_run(2, engines_needed=2, wait_seconds=10.0)
    join(run, 0)
    assert run.tick(5.0) == []
    assert run.tick(10.5) == [GiveUpWaiting(usable=1, needed=2)]
    assert run.over


def test_an_unanswered_check_leaves_the_engine_out():
    run = make_run(2, wait_seconds=10.0)
    join(run, 0)
    run.engine_registered(1, now=1.0)
    run.tick(5.0)
    assert run.engines[1].state is EngineState.CHECKING
    run.tick(11.5)
    assert run.engines[1].state is EngineState.LEFT_OUT
    assert run.engine_checked(1, [], 12.0) == []  # a late answer changes nothing


def test_a_lost_engine_s_cases_go_elsewhere_once_then_fail():
    run = make_run(1, retries=1)
    join(run, 0)
    join(run, 1)
    (eid, nodeids), *_ = dispatched(run.tick(0.0)).items()
    actions = run.engine_lost(eid, "engine lost", now=1.0)
    assert EngineLostNotice(eid, 1, 1, tuple(nodeids)) in actions
    (other, again), *_ = dispatched(run.tick(1.0)).items()
    assert other != eid and again == nodeids
    actions = run.engine_lost(other, "engine lost", now=2.0)
    assert [a for a in actions if isinstance(a, FailCase)] == [
        FailCase(nodeids[0], other, "engine lost (2 time(s))")
    ]
    assert run.over and run.ended == {nodeids[0]: "failed"}


def test_a_stop_names_every_queued_case_not_run_and_interrupts_the_busy_engines():
    run = make_run(6)
    join(run, 0)
    join(run, 1)
    sent = dispatched(run.tick(0.0))
    actions = run.stop_requested(StopKind.FAILURES, "stopping after 1 failures", now=1.0)
    assert actions == [Interrupt((0, 1))]
    assert dispatched(run.tick(2.0)) == {}
    queued = {n for n in run.selected} - {n for ids in sent.values() for n in ids}
    assert set(run.not_run) == queued


def test_batches_that_do_not_answer_after_a_stop_are_given_up():
    run = make_run(2, stop_grace_seconds=5.0)
    join(run, 0)
    sent = dispatched(run.tick(0.0))
    run.stop_requested(StopKind.FAILURES, "x", now=1.0)
    assert run.tick(5.0) == []
    assert run.tick(6.5) == [Abandoned((0,), 5.0)]
    assert run.engines[0].state is EngineState.UNRESPONSIVE
    assert set(sent[0]) <= set(run.not_run) and run.over
    assert run.engines_to_finish() == []


def test_pytest_exit_stops_the_run():
    run = make_run(4)
    join(run, 0)
    first, queued = [a.batch.nodeids for a in run.tick(0.0) if isinstance(a, Dispatch)]
    actions = run.batch_done(0, summary_of(first[:1], exit_nodeid=first[0]), now=1.0)
    assert run.stop_kind is StopKind.EXIT and run.exit_nodeid == first[0]
    # The batch queued behind it on the engine starts nothing.
    assert Interrupt((0,)) in actions and not run.over
    run.batch_done(0, summary_of([], not_run=queued), now=1.5)
    assert run.over and set(queued) <= set(run.not_run)
    assert not any(nodeid in queued for nodeid, _ in run.cut_short)


def test_every_engine_lost_stops_the_run():
    run = make_run(4, retries=0)
    join(run, 0)
    run.tick(0.0)
    run.engine_lost(0, "lost", now=1.0)
    assert run.stop_reason == EVERY_ENGINE_LOST and run.over
    assert run.ended.keys() == run.selected


def test_a_case_the_engine_forgot_still_ends_as_a_failure():
    run = make_run(2)
    join(run, 0)
    first = next(a.batch for a in run.tick(0.0) if isinstance(a, Dispatch))
    actions = run.batch_done(0, BatchSummary(), now=1.0)
    assert [a.nodeid for a in actions if isinstance(a, FailCase)] == first.nodeids


def test_the_controller_lost_fails_every_unfinished_case():
    run = make_run(5)
    join(run, 0)
    run.tick(0.0)
    actions = run.controller_lost("gone")
    assert {a.nodeid for a in actions if isinstance(a, FailCase)} == set(run.selected)
    assert run.over


def test_only_engines_that_ran_and_are_still_there_are_finished():
    run = make_run(3)
    for eid in range(3):
        join(run, eid)
    sent = dispatched(run.tick(0.0))
    assert len(sent) >= 2
    first, second = sorted(sent)[:2]
    run.batch_done(first, summary_of(sent[first]), now=1.0)
    run.engine_lost(second, "lost", now=1.0)
    run.tick(1.0)
    for eid, batch in list(run.busy.items()):
        run.batch_done(eid, summary_of(batch.nodeids), now=2.0)
    assert first in run.engines_to_finish() and second not in run.engines_to_finish()


# -- the stateful test ------------------------------------------------------------------


class RunMachine(RuleBasedStateMachine):
    """Random runs; the model checks dispatch targets and the invariants of the run."""

    @initialize(
        cases=st.integers(1, 25),
        needed=st.sampled_from([1, 1, 2, 3]),
        retries=st.integers(0, 2),
        engines=st.integers(0, 4),
        in_order=st.booleans(),
        maxfail=st.sampled_from([0, 1, 2]),
        seconds=st.lists(st.sampled_from([0.1, 1.0, 3.0, 10.0, 30.0]), min_size=25, max_size=25),
        in_flight=st.sampled_from([1, HELD, HELD]),
    )
    def start(
        self,
        cases: int,
        needed: int,
        retries: int,
        engines: int,
        in_order: bool,
        maxfail: int,
        seconds: list[float],
        in_flight: int,
    ) -> None:
        #: Every case's duration is known (the walltime rule's expectation, checked here
        #: independently of the Run).
        self.seconds = dict(enumerate(seconds[:cases]))
        self.run = make_run(
            cases,
            engines_needed=needed,
            retries=retries,
            in_order=in_order,
            maxfail=maxfail if in_order else 0,
            wait_seconds=30.0,
            stop_grace_seconds=5.0,
            interrupt_grace_seconds=3.0,
            known=self.seconds,
            margin=Margin(seconds=2.0, fraction=0.1),
            batches_in_flight=in_flight,
        )
        self.expected = {f"t.py::test[{i}]": value for i, value in self.seconds.items()}
        self.position = {nodeid: i for i, nodeid in enumerate(self.run.queue.remaining())}
        #: In-order runs: what each held result holds (failed reports, pytest.exit()).
        self.held_info: dict[str, tuple[int, bool]] = {}
        self.last_released = -1
        self.released_failures = 0
        #: Where pytest stopped the run (the release that used up --maxfail).
        self.stop_position: int | None = None
        self.now = 0.0
        self.next_engine = 0
        self.sent_counts: dict[str, int] = {}
        #: Cases moved elsewhere because their engine's job ended.
        self.moved: dict[str, int] = {}
        for _ in range(engines):
            self.register()
            self.apply(self.run.engine_checked(self.next_engine - 1, [], self.now))
        self.apply(self.run.tick(self.now))

    def apply(self, actions, *, then_tick: bool = False) -> None:
        """Carry out actions; with ``then_tick``, then run one driver step (the driver's
        loop ticks after every event, which is when idle engines get work)."""
        if then_tick:
            actions = [*actions, *self.run.tick(self.now, self.released_failures)]
        previous: Dispatch | None = None
        for action in actions:
            if isinstance(action, Dispatch) and previous is not None:
                if previous.engine_id == action.engine_id:
                    # Both to one engine: its worker looks ahead to the queued one.
                    assert previous.batch.lookahead == action.batch.nodeids[0]
            previous = action if isinstance(action, Dispatch) else None
            if isinstance(action, FailCase) and action.nodeid in self.run.held:
                self.held_info[action.nodeid] = (1, False)  # its turn comes
            if isinstance(action, Dispatch):
                record = self.run.engines[action.engine_id]
                assert record.state is EngineState.BUSY and action.batch in record.batches
                most = 1 if self.run.in_order else self.run.batches_in_flight
                assert len(record.batches) <= most
                assert not self.run.stopped, "dispatch after a stop"
                assert self.run.phase is Phase.RUNNING, "dispatch before enough engines"
                for nodeid in action.batch.nodeids:
                    self.sent_counts[nodeid] = self.sent_counts.get(nodeid, 0) + 1
                job_end = record.job_end
                if job_end is not None:
                    # Every batch it holds (the one it runs counted whole) fits.
                    held = [n for batch in record.batches for n in batch.nodeids]
                    work = sum(self.expected[n] for n in held)
                    assert self.now + work * 1.1 + 2.0 <= job_end + 1e-9, "no time to finish"
            if isinstance(action, EngineReleased):
                job_end = self.run.engines[action.engine_id].job_end
                assert job_end is not None
                assert action.seconds_left == job_end - self.now
                assert action.seconds_left < action.shortest_needs, "released with time left"
                needs = {value * 1.1 + 2.0 for value in self.expected.values()}
                assert action.shortest_needs in needs
        self.release()

    def release(self) -> None:
        """What the driver does with held results: replay them as the Run releases them,
        and stop the run (as pytest would) once --maxfail failures were replayed."""
        while (ready := self.run.release_next()) is not None:
            nodeid, eid = ready
            position = self.position[nodeid]
            assert position > self.last_released, "released out of pytest's order"
            assert self.stop_position is None, "released after pytest stopped"
            self.last_released = position
            failures, stops = self.held_info.pop(nodeid)
            summary = summary_of([nodeid], exit_nodeid=nodeid if stops else None)
            self.released_failures += failures
            maxfail = self.run.maxfail
            stops_here = maxfail and self.released_failures >= maxfail
            if stops_here and self.stop_position is None:
                # pytest decided while the result was replayed: nothing more is released
                # (what the Run's actions lead to included).
                self.stop_position = position
                self.run.hold_rest()
            self.apply(self.run.case_released(nodeid, eid, summary, self.now))
            if stops_here and not self.run.stopped:
                self.apply(self.run.stop_requested(StopKind.FAILURES, "maxfail", self.now))

    def can(self, *states: EngineState) -> bool:
        return bool(self.run.engines_in(*states)) and not self.run.over

    @precondition(lambda self: not self.run.over)
    @rule()
    def register(self) -> None:
        eid, self.next_engine = self.next_engine, self.next_engine + 1
        self.apply(self.run.engine_registered(eid, self.now))

    @precondition(lambda self: self.can(EngineState.CHECKING))
    @rule(data=st.data(), ok=st.sampled_from([True, True, True, False]))
    def answer_check(self, data, ok: bool) -> None:
        eid = data.draw(st.sampled_from(self.run.engines_in(EngineState.CHECKING)))
        left = data.draw(st.sampled_from([None, None, 1.0, 5.0, 20.0, 60.0]))
        self.run.job_ends_at(eid, None if left is None else self.now + left)
        self.apply(
            self.run.engine_checked(eid, [] if ok else ["pytest 0.1 here"], self.now),
            then_tick=True,
        )

    @precondition(lambda self: not self.run.over)
    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 4.0, 12.0, 40.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.apply(self.run.tick(self.now))

    @precondition(lambda self: bool(self.run.busy))
    @rule(data=st.data())
    def batch_returns(self, data) -> None:
        in_flight = self.run.in_flight
        eid = data.draw(st.sampled_from(sorted(in_flight)))
        # Mostly the one it ran first; the driver may take results in out of order.
        batch = data.draw(st.sampled_from([in_flight[eid][0], *in_flight[eid]]))
        nodeids = list(batch.nodeids)
        how = data.draw(st.sampled_from(["whole", "whole", "interrupted", "exit", "forgot"]))
        if self.run.in_order is not None and how in ("whole", "exit"):
            # The one case finished: its result waits for its turn.
            failed = data.draw(st.sampled_from([0, 0, 1]))
            self.held_info[nodeids[0]] = (failed, how == "exit")
            self.run.result_held(eid, nodeids[0], failed, how == "exit")
            self.apply([], then_tick=True)
            return
        done = data.draw(st.integers(0, len(nodeids)))
        finished, rest, cut, exit_at = nodeids, [], [], None
        if how == "interrupted" and done < len(nodeids):
            finished, rest = nodeids[:done], nodeids[done:]
            cut = rest[:1]
        elif how == "exit" and done > 0:
            # The exiting case has no end of its own (no LogFinish), as in a plain run.
            exit_at = nodeids[done - 1]
            finished, rest = nodeids[: done - 1], nodeids[done:]
        elif how == "forgot":
            finished = nodeids[:done]
        if self.run.in_order is not None and nodeids[0] in finished:
            # However the batch was drawn, its one case finished: the driver holds such a
            # result for its turn (controller/driver.py), never ends it at once.
            self.held_info[nodeids[0]] = (0, False)
            self.run.result_held(eid, nodeids[0], 0, False)
            self.apply([], then_tick=True)
            return
        if data.draw(st.booleans()):
            # As the driver does: the engine's next batch goes out before the replay.
            self.apply(self.run.batch_returned(eid, self.now, batch), then_tick=True)
            self.run.check_invariants()
        summary = summary_of(finished, not_run=rest, cut_short=cut, exit_nodeid=exit_at)
        actions = self.run.batch_done(eid, summary, self.now, batch)
        if how != "forgot":
            assert not any(isinstance(a, FailCase) for a in actions), "a case failed"
        self.apply(actions, then_tick=True)

    @precondition(lambda self: self.can(EngineState.IDLE, EngineState.BUSY))
    @rule(data=st.data(), busy_one=st.booleans())
    def lose_engine(self, data, busy_one: bool) -> None:
        busy = sorted(self.run.busy)
        candidates = (
            busy if busy_one and busy else self.run.engines_in(EngineState.IDLE, EngineState.BUSY)
        )
        eid = data.draw(st.sampled_from(candidates))
        batches = list(self.run.engines[eid].batches)
        losses = dict(self.run.losses)
        stopped = self.run.stopped
        actions = self.run.engine_lost(eid, "lost", self.now)
        resent = set(self.run.queue.remaining())
        for index, batch in enumerate(batches):
            for nodeid in batch.nodeids:
                if nodeid in resent:
                    assert not stopped, "a lost case sent again after a stop"
                if index == 0:
                    assert self.run.losses[nodeid] == losses.get(nodeid, 0) + 1
                    if nodeid in resent:
                        assert self.run.losses[nodeid] <= self.run.retries, "retried past"
                else:
                    # Queued behind the one it ran: never started, not charged.
                    assert self.run.losses.get(nodeid, 0) == losses.get(nodeid, 0)
                    assert nodeid in resent or self.run.ended.get(nodeid) == "not run"
                    self.moved[nodeid] = self.moved.get(nodeid, 0) + 1
        self.apply(actions, then_tick=True)

    @precondition(lambda self: self.can(EngineState.IDLE, EngineState.BUSY, EngineState.RELEASED))
    @rule(data=st.data())
    def job_ends(self, data) -> None:
        """The engine's Slurm job ended (time limit, scancel): its cases move, not
        counted against retries (after a stop: not run)."""
        eid = data.draw(
            st.sampled_from(
                self.run.engines_in(EngineState.IDLE, EngineState.BUSY, EngineState.RELEASED)
            )
        )
        held = [n for batch in self.run.engines[eid].batches for n in batch.nodeids]
        losses = dict(self.run.losses)
        stopped = self.run.stopped
        actions = self.run.job_ended(eid, self.now)
        assert self.run.losses == losses, "a job's end counted against retries"
        assert not any(isinstance(a, FailCase) for a in actions), "a job's end failed a case"
        if held:
            queued = set(self.run.queue.remaining())
            for nodeid in held:
                # Sent elsewhere; or not run: the run had stopped, or stopped now (the
                # job's engine was the last one).
                assert nodeid in queued or self.run.ended.get(nodeid) == "not run", nodeid
                assert not (stopped and nodeid in queued), nodeid
                self.moved[nodeid] = self.moved.get(nodeid, 0) + 1
        self.apply(actions, then_tick=True)

    @precondition(lambda self: self.run.phase is Phase.RUNNING)
    @rule(kind=st.sampled_from([StopKind.FAILURES, StopKind.INTERRUPT]))
    def stop(self, kind: StopKind) -> None:
        busy = set(self.run.busy)
        actions = self.run.stop_requested(kind, kind.value, self.now)
        interrupted = {e for a in actions if isinstance(a, Interrupt) for e in a.engine_ids}
        assert interrupted == busy, "a stop interrupts exactly the busy engines"
        self.apply(actions, then_tick=True)

    @precondition(lambda self: self.run.phase is Phase.RUNNING)
    @rule()
    def lose_controller(self) -> None:
        actions = self.run.controller_lost("hub gone")
        assert not any(isinstance(a, Dispatch) for a in actions)

    @precondition(lambda self: not self.run.over)
    @rule(coming=st.booleans())
    def jobs_come_and_go(self, coming: bool) -> None:
        """Slurm jobs queued or starting (engines on their way), or none any more."""
        self.apply(self.run.set_engines_coming(coming, self.now), then_tick=True)

    @precondition(lambda self: self.run.over)
    @rule()
    def an_over_run_does_nothing(self) -> None:
        self.now += 100.0
        assert self.run.tick(self.now) == []
        assert self.run.engine_registered(self.next_engine, self.now) == []

    @invariant()
    def bookkeeping_holds(self) -> None:
        self.run.check_invariants()

    @invariant()
    def a_run_never_waits_for_nothing(self) -> None:
        """Cases queued, no engine to take them and none coming: the run has stopped
        (else it would wait forever)."""
        run = self.run
        if run.phase is Phase.RUNNING and run.queue and not run.engines_coming:
            usable = (EngineState.IDLE, EngineState.BUSY, EngineState.CHECKING)
            assert run.engines_in(*usable), "running with no engine and none coming"

    @invariant()
    def nothing_after_the_stop_point_is_reported(self) -> None:
        """In-order runs: a case after the point where pytest stopped never reports (it
        is not run, or left out, as in a plain run)."""
        if self.stop_position is None:
            return
        for nodeid, how in self.run.ended.items():
            if how == "finished":
                assert self.position[nodeid] <= self.stop_position, nodeid

    @invariant()
    def a_case_is_sent_again_only_after_a_loss(self) -> None:
        for nodeid, count in self.sent_counts.items():
            assert count <= 1 + self.run.losses.get(nodeid, 0) + self.moved.get(nodeid, 0), nodeid


TestRunMachine = RunMachine.TestCase
TestRunMachine.settings = settings(
    max_examples=400,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def sent_batches(actions) -> list[tuple[int, Batch]]:
    return [(a.engine_id, a.batch) for a in actions if isinstance(a, Dispatch)]


def test_an_engine_gets_its_next_batch_before_the_last_one_is_replayed():
    run = make_run(40)
    join(run, 0)
    (_, first), (_, second) = sent_batches(run.tick(0.0))
    (_, third) = sent_batches(run.batch_returned(0, 1.0))[0]
    assert not set(first.nodeids) & set(third.nodeids)
    assert not run.over and not any(nodeid in run.ended for nodeid in first.nodeids)
    run.check_invariants()
    run.batch_done(0, summary_of(first.nodeids), now=1.0)
    assert all(run.ended[nodeid] == "finished" for nodeid in first.nodeids)
    assert run.engines[0].batches == [second, third] and run.busy == {0: second}
    run.check_invariants()


def test_an_engine_holds_its_next_batch_queued_behind_the_one_it_runs():
    run = make_run(40)
    join(run, 0)
    join(run, 1)
    sent = sent_batches(run.tick(0.0))
    assert [eid for eid, _ in sent] == [0, 0, 1, 1] and len(sent) == HELD * 2
    (_, first), (_, second) = sent[:2]
    # The worker keeps fixtures for the case it runs next: the queued batch's first.
    assert first.lookahead == second.nodeids[0]
    assert run.busy == {0: first, 1: sent[2][1]}
    assert set(run.running) == {n for _, batch in sent for n in batch.nodeids}
    # Nothing more while both engines hold two.
    assert run.tick(0.5) == []
    run.check_invariants()


def test_results_of_one_engine_taken_in_out_of_order():
    run = make_run(40)
    join(run, 0)
    (_, first), (_, second) = sent_batches(run.tick(0.0))
    run.batch_returned(0, 1.0, second)
    run.batch_done(0, summary_of(second.nodeids), 1.0, second)
    assert run.busy[0] == first and all(run.ended[n] == "finished" for n in second.nodeids)
    run.batch_done(0, summary_of(first.nodeids), 1.5, first)
    assert all(run.ended[n] == "finished" for n in first.nodeids)
    run.check_invariants()


def test_an_engine_lost_with_two_batches_charges_a_retry_only_for_the_one_it_ran():
    run = make_run(40, retries=1)
    join(run, 0)
    (_, first), (_, queued) = sent_batches(run.tick(0.0))
    join(run, 1, now=0.5)
    actions = run.engine_lost(0, "lost", now=1.0)
    every = (*first.nodeids, *queued.nodeids)
    assert EngineLostNotice(0, len(every), len(every), every) in actions
    assert run.losses == {n: 1 for n in first.nodeids}
    assert set(every) <= set(run.queue.remaining()) | set(run.running)
    run.check_invariants()


def test_an_engine_lost_with_two_batches_after_a_stop():
    run = make_run(40, retries=1)
    join(run, 0)
    (_, first), (_, queued) = sent_batches(run.tick(0.0))
    run.stop_requested(StopKind.INTERRUPT, "interrupted", now=0.5)
    actions = run.engine_lost(0, "lost", now=1.0)
    assert {a.nodeid for a in actions if isinstance(a, FailCase)} == set(first.nodeids)
    assert set(queued.nodeids) <= set(run.not_run)
    assert run.over
    run.check_invariants()


def test_a_job_that_ends_with_two_batches_moves_both_without_counting():
    run = make_run(40, retries=0)
    join(run, 0)
    (_, first), (_, queued) = sent_batches(run.tick(0.0))
    join(run, 1, now=0.5)
    actions = run.job_ended(0, now=1.0)
    every = (*first.nodeids, *queued.nodeids)
    assert EngineLostNotice(0, len(every), len(every), every, job_ended=True) in actions
    assert run.losses == {} and run.cases_moved == len(every)
    run.check_invariants()


def test_a_stop_gives_up_every_batch_of_an_engine_that_does_not_answer():
    run = make_run(40, stop_grace_seconds=5.0)
    join(run, 0)
    (_, first), (_, queued) = sent_batches(run.tick(0.0))
    assert run.stop_requested(StopKind.FAILURES, "x", now=1.0) == [Interrupt((0,))]
    assert run.tick(6.5) == [Abandoned((0,), 5.0)]
    assert set(first.nodeids) | set(queued.nodeids) <= set(run.not_run)
    assert {n for n, _ in run.cut_short} == set(first.nodeids)
    assert run.over


def test_no_second_batch_in_runs_that_stop_on_failures():
    run = make_run(10, in_order=True, maxfail=1)
    join(run, 0)
    assert len(sent_batches(run.tick(0.0))) == 1


def test_a_refused_second_batch_goes_back_and_the_first_counts_as_lost():
    run = make_run(40, retries=1)
    join(run, 0)
    (_, first), (_, second) = sent_batches(run.tick(0.0))
    run.dispatch_refused(0, 0.5, second)
    assert run.losses == {n: 1 for n in first.nodeids}
    assert run.engines[0].state is EngineState.LOST
    run.check_invariants()


def test_the_last_batch_returned_keeps_the_run_open_until_it_is_replayed():
    run = make_run(1)
    join(run, 0)
    (batch,) = dispatched(run.tick(0.0)).values()
    assert run.batch_returned(0, 1.0) == []
    assert run.tick(0.5) == [] and not run.over
    run.batch_done(0, summary_of(batch), now=1.0)
    assert run.over and run.ended == {batch[0]: "finished"}


def test_runs_that_stop_on_failures_replay_before_the_next_dispatch():
    run = make_run(4, in_order=True, maxfail=1)
    join(run, 0)
    run.tick(0.0)
    assert run.batch_returned(0, 1.0) == [] and run.busy


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_a_run_where_every_batch_returns_ends_every_case_once(retries: int) -> None:
    run = make_run(40, retries=retries)
    for eid in range(4):
        join(run, eid)
    now = 0.0
    while not run.over:
        now += 1
        run.tick(now)
        for eid, batch in list(run.busy.items()):
            run.batch_done(eid, summary_of(batch.nodeids, seconds=0.01), now)
        run.check_invariants()
    assert set(run.ended.values()) == {"finished"} and run.ended.keys() == run.selected
