import pytest

from marsseg.pipeline import budget


def test_test_time_arithmetic():
    assert budget.test_seconds(100, 2, False, 50.0) == pytest.approx(4.0)
    assert budget.test_seconds(100, 2, True, 50.0) == pytest.approx(8.0), "flip TTA is a second pass"
    assert budget.safety_seconds(10.0) == 2.0 and budget.safety_seconds(1000.0) == pytest.approx(20.0)
    # 10% over the estimate (PREDICTION_SLACK) must fit in what is left after a quarter of the margin; the
    # skip message quotes the same figure.
    assert budget.needed_seconds(10.0, safety=4.0) == pytest.approx(12.0)
    assert budget.fits(10.0, 12.0, safety=4.0) and not budget.fits(10.0, 11.9, safety=4.0)


def test_stage_2_reserve_and_need():
    assert budget.stage2_epoch_seconds(10.0, 100, 150) == pytest.approx(15.0)
    assert budget.stage2_reserve(100, 10, False, 50.0, safety=5.0) == pytest.approx(
        2.0 * budget.PREDICTION_SLACK + 0.4 + 5.0
    )
    # Stage 2's own flip TTA is reserved only on request: the plan reserves its prediction without it.
    assert budget.stage2_reserve(100, 10, True, 50.0, safety=5.0) == pytest.approx(
        2.0 * budget.PREDICTION_SLACK + 0.4 + 5.0
    )
    assert budget.stage2_reserve(100, 10, True, 50.0, safety=5.0, own_tta=True) == pytest.approx(
        4.0 * budget.PREDICTION_SLACK + 0.4 + 5.0
    )
    # With TTA, stage 2's test input needs stage 1's flipped pass first: 3 models x 100 images at 50/s.
    assert budget.stage2_reserve(100, 10, True, 50.0, 5.0, stage1_models=3) == pytest.approx(
        8.0 * budget.PREDICTION_SLACK + 0.4 + 5.0
    )
    assert budget.stage2_reserve(100, 10, True, 50.0, 5.0, stage1_models=3, own_tta=True) == pytest.approx(
        10.0 * budget.PREDICTION_SLACK + 0.4 + 5.0
    )
    assert budget.stage2_reserve(100, 10, False, 50.0, 5.0, own_tta=True) == budget.stage2_reserve(
        100, 10, False, 50.0, 5.0
    ), "no TTA possible: nothing to reserve for it"
    assert budget.stage2_reserve(100, 10, False, 50.0, 5.0, stage1_models=3) == pytest.approx(
        2.0 * budget.PREDICTION_SLACK + 0.4 + 5.0
    )
    assert budget.stage2_needed(20.0, residual=True) == pytest.approx(20.0 * budget.RESIDUAL_MIN_EPOCH)
    assert budget.stage2_needed(20.0, residual=False) == 20.0


@pytest.mark.parametrize(
    ("left", "runs", "says"),
    [
        (50.0, True, ""),  # 10 s of work needs 13 s with its margin (10 x 1.1 + 8 / 4): it fits
        (5.0, True, "ends about 8s past the budget (up to 4%, 16s, is allowed rather than discard trained work)"),
        (-4.0, False, "needs about 13s with its margin (10s of work), -4s left and 16s allowed past the budget"),
    ],
)
def test_a_last_prediction_may_end_a_little_past_the_budget_rather_than_discard_trained_work(left, runs, says):
    now = [0.0]
    run_budget = budget.Budget(400.0, log=lambda *_: None, clock=lambda: now[0])
    now[0] = 400.0 - left
    ok, why = budget.last_prediction(10.0, run_budget, safety=8.0)
    assert (ok, why) == (runs, says)


@pytest.mark.parametrize(("seconds", "factor"), [(45.0, 2.25), (10.0, 1.0), (20.0, 1.0), (600.0, 3.0)])
def test_the_test_pass_scales_later_test_estimates_between_1_and_3(seconds, factor):
    # 20 s estimated at the hold-out's rate: a pass that took 45 s (post-processing, a slower machine) makes every
    # later test-time estimate 2.25x; a faster pass never shrinks them; a stall counts at most 3x.
    assert budget.test_slowdown(20.0, seconds) == pytest.approx(factor)
