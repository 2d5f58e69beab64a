"""Stage 2's test pass at the end of a run: with its flip TTA where it fits, without it rather than not at all."""

from types import SimpleNamespace

import numpy as np
import pytest

from marsseg.pipeline import budget
from marsseg.pipeline.stage2_phase import prediction_that_fits, training_reserve


def fake_run(left: float, tta_on: bool = False, stage1_miou: float = 0.60):
    """100 test images; stage 2 predicts 10 images/s (10 s a pass, 20 s with flip TTA); stage 1 50 images/s;
    a 400 s budget with `left` seconds remaining; a margin of 8 s (so a pass of E s needs E x 1.1 + 2 s)."""
    now = [0.0]
    run_budget = budget.Budget(400.0, log=lambda *_: None, clock=lambda: now[0])
    now[0] = 400.0 - left
    notes = []
    plain_choice = {"tta": {"used": False}, "miou_final": 0.70}
    holdout = SimpleNamespace(without_tta=lambda choice, probs, post: {**plain_choice, "from": (choice, probs, post)})
    run = SimpleNamespace(
        budget=run_budget,
        safety=8.0,
        tta_on=tta_on,
        test_rate=lambda rate=None: 50.0 if rate is None else rate,
        stage2=SimpleNamespace(infer_rate=10.0, holdout_probs=("plain", "tta")),
        stage1=SimpleNamespace(models=["one"]),
        stage1_test_tta=None,
        loaded=SimpleNamespace(test_images=np.zeros((100, 4, 4), np.uint8)),
        split=SimpleNamespace(holdout=holdout),
        cfg=SimpleNamespace(post="post"),
        note=notes.append,
        stage1_choice={"miou_final": stage1_miou},
        full_cfg=None,
    )
    return run, notes


WITH_TTA = {"tta": {"used": True}, "miou_final": 0.71}


def test_with_time_left_stage_2_predicts_with_its_flip_tta():
    run, notes = fake_run(left=50.0)
    assert prediction_that_fits(run, WITH_TTA) == (True, "", WITH_TTA)
    assert notes == []


def test_without_time_for_its_tta_stage_2_predicts_without_it_rather_than_not_at_all():
    # With TTA: 20 s of work needs 24 s; 5 s left and 16 s (4% of 400) allowed past: no. Without: 13 s: yes.
    run, notes = fake_run(left=5.0)
    ok, why, choice = prediction_that_fits(run, WITH_TTA)
    assert ok and why.startswith("ends about 8s past the budget")
    assert choice["tta"]["used"] is False and choice["miou_final"] == 0.70, "the choice rescored without its TTA"
    assert choice["from"] == (WITH_TTA, ("plain", "tta"), "post"), "rescored from stage 2's hold-out probabilities"
    (note,) = notes
    assert note.startswith("stage 2's flip TTA dropped at test time: with it the prediction needs about 24s")
    assert note.endswith("tuning hold-out mIoU 0.7100 with it, 0.7000 without")


def test_stage_1s_flipped_pass_counts_in_both_estimates():
    # Stage 2's input needs stage 1's flipped pass first (100 images at 50/s: 2 s): 22 s with TTA, 12 s without.
    run, _ = fake_run(left=0.0, tta_on=True)
    ok, why, choice = prediction_that_fits(run, WITH_TTA)
    assert ok and choice["tta"]["used"] is False and "15s past" in why  # 12 x 1.1 + 2 = 15.2 s needed, 0 s left


@pytest.mark.parametrize("choice", [WITH_TTA, {"tta": {"used": False}, "miou_final": 0.71}])
def test_with_no_time_even_without_tta_stage_2_is_skipped_and_says_why(choice):
    run, notes = fake_run(left=-10.0)
    ok, why, kept = prediction_that_fits(run, choice)
    assert not ok and kept is choice and notes == []
    assert why.startswith("needs about")
    assert ("without its flip TTA it needs about 13s" in why) is choice["tta"]["used"]


def test_a_tta_that_ends_only_past_the_budget_gives_way_to_the_pass_without_it():
    # With TTA: 20 s of work needs 24 s; 20 s left: it would end 4 s past (allowed for a last prediction), but the
    # pass without it (13 s) ends within the budget, and that is the one stage 2's reserve was planned for.
    run, notes = fake_run(left=20.0)
    ok, why, choice = prediction_that_fits(run, WITH_TTA)
    assert ok and why == "" and choice["tta"]["used"] is False
    (note,) = notes
    assert note.startswith("stage 2's flip TTA dropped to end within the budget (with it the prediction would end 4s")
    assert note.endswith("tuning hold-out mIoU 0.7100 with it, 0.7000 without")


def test_a_tta_that_fits_past_the_budget_stays_where_stage_2_without_it_would_lose_to_stage_1():
    run, notes = fake_run(left=20.0, stage1_miou=0.705)  # stage 1 0.705: stage 2 0.71 with its TTA, 0.70 without
    ok, why, choice = prediction_that_fits(run, WITH_TTA)
    assert ok and choice is WITH_TTA and why.startswith("ends about 4s past the budget") and notes == []


def test_stage_2s_training_reserve_holds_stage_1s_flipped_pass_only_until_it_has_run():
    # Self-training runs stage 1's flipped test pass (100 images at 50/s: 2 s) before stage 2 trains; the reserve
    # stage 2's training leaves must not hold it a second time.
    run, _ = fake_run(left=100.0, tta_on=True)
    run.plan = SimpleNamespace(tta=True, choice=lambda: 3.0)
    run.split.holdout.images = np.zeros((20, 4, 4), np.uint8)
    before = training_reserve(run, 10.0)
    run.stage1_test_tta = np.zeros((100, 4, 4, 5), np.float16)
    after = training_reserve(run, 10.0)
    assert before - after == pytest.approx(2.0 * budget.PREDICTION_SLACK)
    assert after == pytest.approx(10.0 * budget.PREDICTION_SLACK + 20 * 2 / 10.0 + 3.0 + 8.0)
