"""The budget plan under a simulated clock: a run ends within 5% of its budget on a slow machine as on a fast one.

The simulation drives the real StageGuard (its deadline, cut epoch and replans), `plan.Stage1Plan` and the stage-2
decision with a clock that advances by the work done at a machine speed: `slow` times fewer images a second, in
training and in prediction alike. Its figures are the cpu preset's shape on the bench (2615 images: 1700 fold
training rows, 570 out of fold, 345 hold-out, 2000 test) at one core's speeds.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from marsseg.config import preset
from marsseg.pipeline.budget import Budget, last_prediction, safety_seconds, stage2_reserve
from marsseg.pipeline.plan import Stage1Plan
from marsseg.training.callbacks import StageGuard

TRAIN1, PREDICT1 = 12.0, 60.0  # stage-1 images/s on one core of the bench machine at full speed
TRAIN2, PREDICT2 = 40.0, 200.0  # stage 2 (depth 2, base 8) is several times faster
FOLD_TRAIN, OUT_OF_FOLD, N_VAL, N_TEST, BATCH = 1700, 570, 345, 2000, 16
TRACE = 8.4  # seconds the first training batch traces for (BENCHMARKS compile: train, test and predict steps)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Net:
    stop_training = False

    def get_weights(self):
        return []

    def set_weights(self, weights):
        pass


def train(guard: StageGuard, clock: Clock, rows: int, val_rows: int, train_rate: float, predict_rate: float):
    """Epochs as Keras runs them with BatchDeadline: batches until the guard's training time is up, then the
    validation pass, until the guard stops. Returns the epoch seconds."""
    guard.set_model(Net())
    guard.steps, guard.batch_size = rows // BATCH, BATCH
    epoch = 0
    while not guard.model.stop_training:
        guard.on_epoch_begin(epoch)
        for batch in range(rows // BATCH):
            clock.now += BATCH / train_rate + (TRACE if epoch == batch == 0 else 0.0)
            guard.probe(batch)
            until = guard.train_until()
            if until is not None and clock.now > until:
                guard.cut_epoch, guard.stop_reason, guard.model.stop_training = True, "budget", True
                break
        guard.on_test_begin()
        clock.now += val_rows / predict_rate + (TRACE / 2 if epoch == 0 and not guard.baseline_traced else 0.0)
        guard.on_test_end()
        guard.on_epoch_end(epoch, {"val_miou": 0.5 + 0.01 * epoch})
        epoch += 1
    return guard.epoch_seconds


def simulate(slow: float, budget_seconds: float = 900.0, loading: float = 20.0, step: float = 1.0) -> dict:
    """A run at `slow` times the bench's one-core speed that, from stage 1's test pass on, runs `step` times slower
    still (the machine's speed steps; the run scales its later estimates by its test pass, `Run.test_rate`)."""
    cfg = preset("cpu")
    clock, notes = Clock(), []
    budget = Budget(budget_seconds, log=notes.append, clock=clock)
    safety = safety_seconds(budget_seconds)
    clock.now += loading * slow
    fold_of = np.repeat(np.arange(4), [OUT_OF_FOLD, 570, 565, 565])
    plan = Stage1Plan.for_run(cfg, budget, safety, fold_of, N_TEST, N_VAL)
    r1, r2 = PREDICT1 / slow, PREDICT2 / slow
    guard = StageGuard("val_miou", 5, plan.initial_end(), clock, passes_after=2, replan=None, validation_rows=570)
    guard.replan = lambda rate, train_s, steady: plan.replan_end(rate, train_s, steady)
    epochs = train(guard, clock, FOLD_TRAIN, OUT_OF_FOLD, TRAIN1 / slow, r1)
    clock.now += 2 * OUT_OF_FOLD / r1  # the out-of-fold prediction, flip TTA
    clock.now += 2 * N_VAL / r1  # the hold-out under TTA
    r1, r2 = r1 / step, r2 / step
    clock.now += N_TEST / r1  # the test set without TTA (stage 2 to come), at the speed it meets
    result = types.SimpleNamespace(extra={"full_epoch_seconds": epochs}, seconds=sum(epochs))
    s1 = types.SimpleNamespace(folds=[types.SimpleNamespace(train_index=np.arange(FOLD_TRAIN), result=result)])
    available, skip = plan.stage2_time(s1, OUT_OF_FOLD, r1)
    stage2_tta = False
    if skip:
        clock.now += N_TEST / r1  # stage 1's flipped test pass (its TTA)
    else:
        guard2 = StageGuard("val_miou", 60, clock() + available, clock, validation_rows=86)
        guard2.replan = lambda rate, _, steady: (
            budget.deadline(stage2_reserve(N_TEST, N_VAL, True, r1, safety, 1, stage2_rate=rate)) if steady else None
        )
        guard2.validation_seconds = 86 / r2  # the residual baseline's evaluation
        guard2.baseline_traced = True
        train(guard2, clock, 484, 86, TRAIN2 / slow / step, r2)
        clock.now += 2 * N_VAL / r2  # its hold-out, plain and under TTA
        # Its test pass (after stage 1's flip) with its own TTA where that ends within the budget, else without
        # (`stage2_phase.prediction_that_fits`): the reserve was planned for the one without.
        with_tta, plain = 2 * N_TEST / r2 + N_TEST / r1, N_TEST / r2 + N_TEST / r1
        ok, past = last_prediction(with_tta, budget, safety)
        stage2_tta = ok and not past
        clock.now += with_tta if stage2_tta else plain
    return {
        "end": clock.now,
        "stage2": not skip,
        "skip": skip,
        "notes": notes,
        "plan": plan.summary(),
        "stage2_tta": stage2_tta,
    }


@pytest.mark.parametrize(("slow", "seconds"), [(1.0, 900.0), (2.7, 900.0), (1.0, 600.0), (2.7, 600.0)])
def test_a_run_ends_within_five_percent_of_its_budget_and_runs_stage_2_on_a_fast_and_a_slow_machine(slow, seconds):
    outcome = simulate(slow, seconds)
    assert outcome["stage2"], outcome["skip"]
    assert 0.95 * seconds <= outcome["end"] <= seconds, outcome


@pytest.mark.parametrize(("slow", "seconds", "step"), [(1.0, 600.0, 1.5), (1.0, 900.0, 2.0), (2.7, 900.0, 1.5)])
def test_a_machine_that_slows_down_after_stage_1_still_gets_stage_2_and_the_budget_used(slow, seconds, step):
    outcome = simulate(slow, seconds, step=step)
    assert outcome["stage2"], outcome["skip"]
    assert 0.95 * seconds <= outcome["end"] <= seconds, outcome


def test_stage_2_is_planned_on_its_prediction_without_its_own_tta():
    # A 1.5x slower step from stage 1's test pass on, at 2.7x the bench's one-core speed: reserving stage 2's own
    # flip TTA planned it out ("-31s left after reserving 275s") and the run ended at 82% of its 600 s; reserved
    # without it, stage 2 trains, predicts without its TTA and the run ends at 94% (a 5% miss left open: a gap the
    # plan made at the faster rate and the slack of every estimate at the slower one).
    outcome = simulate(2.7, 600.0, step=1.5)
    assert outcome["stage2"] and not outcome["stage2_tta"], outcome["skip"]
    assert outcome["end"] <= 600.0


def test_stage_2_is_planned_out_only_when_it_cannot_fit_and_then_stage_1_uses_the_budget():
    outcome = simulate(slow=2.7, budget_seconds=400.0)
    assert not outcome["stage2"] and "measured" in outcome["skip"]
    assert any("stage 2 cannot fit" in n and "images/s" in n for n in outcome["notes"])
    assert outcome["plan"]["stage2_planned"] is False
    assert 0.95 * 400 <= outcome["end"] <= 400, outcome


def test_measured_speeds_move_stage_1s_end_and_a_probe_does_not_override_a_measured_rate():
    cfg, clock = preset("cpu"), Clock()
    budget = Budget(900.0, log=lambda m: None, clock=clock)
    fold_of = np.repeat(np.arange(4), [OUT_OF_FOLD, 570, 565, 565])
    plan = Stage1Plan.for_run(cfg, budget, safety_seconds(900.0), fold_of, N_TEST, N_VAL)
    first = plan.initial_end()
    fast = plan.replan_end(60.0, 140.0, True)
    assert fast != pytest.approx(first, abs=1.0)
    assert plan.replan_end(5.0, 140.0, None) == pytest.approx(fast), "a probe's guess after a measured pass"
    assert plan.replan_end(20.0, 140.0, False) < fast, "a slower measured pass leaves more for the predictions"
