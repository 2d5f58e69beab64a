"""The stage guard's stop rules and the budget's phase log, driven by a fake clock and a fake model."""

import numpy as np
import pytest

from marsseg.pipeline.budget import Budget, hms


class FakeClock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


class FakeModel:
    def __init__(self):
        self.weights, self.stop_training = [np.zeros(1)], False

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]


def _epochs(guard, clock, values, seconds=10.0):
    """Drive the guard like fit does; return how many epochs ran before it stopped training."""
    ran = 0
    for epoch, value in enumerate(values):
        guard.on_epoch_begin(epoch)
        clock.now += seconds
        guard.model.weights = [np.full(1, value)]
        guard.on_epoch_end(epoch, {"val_main_miou": value})
        ran += 1
        if guard.model.stop_training:
            break
    guard.on_train_end()
    return ran


def _guard(patience, deadline, clock, on_plan=None):
    from marsseg.training.callbacks import StageGuard

    guard = StageGuard("val_main_miou", patience, deadline, clock, on_plan)
    guard.set_model(FakeModel())
    return guard


def test_guard_stops_on_patience_and_restores_the_best_epoch():
    clock = FakeClock()
    guard = _guard(patience=2, deadline=None, clock=clock)
    ran = _epochs(guard, clock, [0.1, 0.5, 0.4, 0.3, 0.9])
    assert ran == 4 and guard.stop_reason == "patience"
    assert guard.best == 0.5 and guard.best_epoch == 2
    assert guard.model.weights[0][0] == 0.5, "best weights restored at the end"


@pytest.mark.parametrize("deadline, stops", [(32.0, True), (35.0, False)])
def test_guard_starts_a_last_epoch_only_if_enough_of_it_fits(deadline, stops):
    clock = FakeClock()
    plans = []
    guard = _guard(patience=100, deadline=deadline, clock=clock, on_plan=plans.append)
    ran = _epochs(guard, clock, [0.1, 0.2, 0.3], seconds=10.0)
    # At t=30, 2 s left is under 0.3 of a 10 s epoch: stop; 5 s left is worth a fourth epoch, which
    # BatchDeadline cuts short at the deadline.
    assert ran == 3 and guard.model.stop_training == stops and (guard.stop_reason == "budget") == stops
    assert plans[0] == 1 + (2 if stops else 3), "the cosine plan counts a partial last epoch"
    assert guard.model.weights[0][0] == 0.3


def test_the_cosine_plan_counts_each_epoch_with_its_validation_pass():
    clock = FakeClock()
    plans = []
    guard = _guard(patience=100, deadline=100.0, clock=clock, on_plan=plans.append)
    guard.validation_seconds = 2.0  # of each 10 s epoch
    _epochs(guard, clock, [0.1], seconds=10.0)
    # 8 s of training + 2 s of validation per epoch: 9 more epochs end exactly at t=100 (not 11 more, as
    # counting training time alone would plan, leaving the learning rate undecayed at the deadline).
    assert plans == [10]


def test_batch_deadline_stops_training_in_time_for_the_validation_pass():
    from marsseg.training.callbacks import BatchDeadline

    clock = FakeClock(40.0)
    guard = _guard(patience=5, deadline=50.0, clock=clock)
    check = BatchDeadline(guard)
    check.set_model(guard.model)
    check.on_train_batch_end(0)
    assert not guard.model.stop_training and guard.train_until() == 50.0
    guard.on_test_begin()
    clock.now = 43.0
    guard.on_test_end()  # a 3 s validation pass: steps stop at 47
    clock.now = 46.5
    check.on_train_batch_end(1)
    assert not guard.model.stop_training
    clock.now = 47.5
    check.on_train_batch_end(2)
    assert guard.model.stop_training and guard.stop_reason == "budget" and guard.cut_epoch
    guard.on_epoch_begin(0)
    guard.on_epoch_end(0, {"val_main_miou": 0.2})
    assert guard.full_epochs == [] and len(guard.epoch_seconds) == 1, "a cut epoch is no estimate of a full one"

    from marsseg.training.callbacks import StageGuard

    later = StageGuard("val_main_miou", 5, 50.0, clock, passes_after=1)  # stage 1's out-of-fold prediction
    later.validation_seconds = 3.0
    assert later.train_until() == 44.0


@pytest.mark.parametrize("baseline", [False, True])
def test_a_measured_validation_speed_moves_the_deadline_but_not_the_tracing_pass(baseline):
    """Stage 2 replans its deadline from its own inference speed: each steady validation pass (images per second
    of work) gives a new deadline; the first pass, which traces the test function, is not one unless a baseline
    evaluation already traced it."""
    from marsseg.training.callbacks import StageGuard

    clock = FakeClock()
    asked = []

    def replan(rate, train_seconds, steady):  # as stage 2's: a tracing pass keeps the deadline (None)
        asked.append((rate, train_seconds, steady))
        return 100.0 + rate if steady else None

    guard = StageGuard("val_main_miou", 5, 50.0, clock, replan=replan, validation_rows=96)
    guard.set_model(FakeModel())
    if baseline:
        guard.set_baseline(0.5, [np.full(1, 0.0)])
    for seconds in (8.0, 2.0):  # the tracing pass, then a steady one, each after 30 s of an epoch's training
        guard.on_epoch_begin(0)
        clock.now += 30.0
        guard.on_test_begin()
        clock.now += seconds
        guard.on_test_end()
    assert asked == [(12.0, 30.0, baseline), (48.0, 30.0, True)]
    assert guard.deadline == 148.0 and guard.train_until() == 148.0 - 2.0


def test_a_baseline_stands_until_an_epoch_beats_it():
    clock = FakeClock()
    guard = _guard(patience=2, deadline=None, clock=clock)
    guard.set_baseline(0.6, [np.full(1, -1.0)])
    _epochs(guard, clock, [0.4, 0.55, 0.5])
    assert guard.best_epoch == 0 and guard.best == 0.6 and guard.stop_reason == "patience"
    assert guard.model.weights[0][0] == -1.0, "the untrained weights come back"

    guard = _guard(patience=5, deadline=None, clock=clock)
    guard.set_baseline(0.6, [np.full(1, -1.0)])
    _epochs(guard, clock, [0.4, 0.7, 0.65])
    assert guard.best_epoch == 2 and guard.model.weights[0][0] == 0.7


def test_budget_logs_one_line_per_phase_and_accounts_seconds():
    clock, lines = FakeClock(), []
    budget = Budget(100, lines.append, clock)
    budget.phase("stage1", fold=2, note="12 epochs")
    clock.now = 30
    budget.phase("stage2")
    clock.now = 45
    budget.end_phase()
    assert lines[0] == "[marsseg] 00:00:00 stage1 fold 2 | 12 epochs | budget left 00:01:40"
    assert lines[1] == "[marsseg] 00:00:30 stage2 | budget left 00:01:10"
    assert budget.phase_seconds == {"stage1": 30, "stage2": 15}
    assert budget.remaining() == 55 and hms(3725) == "01:02:05"
