"""Stage 2's phase in a run (`run.Run`): trained if the budget allows, validated on the hold-out, submitted only if
its tuning-part mIoU is not below stage 1's and its test prediction fits; on any failure the stage-1 submission
stands and metrics.json's `stage2_status` says why.

    try_stage2(run)          # sets run.stage2 (a Stage2Outcome) once stage 2 has trained
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from marsseg.pipeline import report, testset
from marsseg.pipeline.budget import last_prediction, needed_seconds, stage2_reserve, test_seconds
from marsseg.pipeline.canary import result_timing
from marsseg.pipeline.figures import plot_curves
from marsseg.pipeline.selftrain import pseudo_rows
from marsseg.pipeline.stage1_submission import flip_seconds, stage1_flip
from marsseg.pipeline.stages import Stage2Data, stage2_fit, stage2_probs

if TYPE_CHECKING:
    from marsseg.pipeline.run import Run
    from marsseg.training.fit import StageResult


@dataclass
class Stage2Outcome:
    """Stage 2 in a run: the trained network's `fit.StageResult`, then, once validated, its hold-out probabilities,
    its inference rate and the post-processing the tuning part chose for it (None until then)."""

    result: StageResult
    holdout_probs: tuple | None = None  # (plain, flip-TTA'd or None)
    infer_rate: float | None = None  # images/s of its fastest hold-out pass
    choice: dict | None = None  # `holdout.choose`'s

    @property
    def model(self):
        return self.result.model


def try_stage2(run: Run) -> None:
    """Stage 2 if the budget allows; on any failure keep the stage-1 submission and say why."""
    try:
        status = run_stage2(run)
    except Exception as exc:  # noqa: BLE001 - the stage-1 submission must survive anything stage 2 does
        status = f"failed: {type(exc).__name__}: {exc}"
        run.log("".join(traceback.format_exception(exc)).rstrip())
    run.metrics["stage2_status"] = status
    if status != "ok":
        run.note(f"stage 2 {status}; the stage-1 submission stands")


def stage1_test_input(run: Run):
    """Stage 1's test probabilities as stage 2 and self-training read them: flip-TTA'd where TTA is on."""
    return run.stage1_test_tta if run.tta_on else run.stage1_test_probs


def self_training_rows(run: Run) -> tuple:
    """Stage 1's confident test pixels for stage 2 (`selftrain`); its test input is the TTA'd one where TTA is on,
    whose flipped pass stage 2's test prediction needs anyway."""
    if run.tta_on:
        stage1_flip(run, " for self-training")
    *rows, run.metrics["self_training"] = pseudo_rows(run.loaded.test_images, stage1_test_input(run), run.cfg)
    run.note(f"self-training: {run.metrics['self_training']['images']} pseudo-labelled test images join stage 2")
    return tuple(rows)


def training_reserve(run: Run, rate2: float) -> float:
    """Seconds stage 2's training leaves at the budget's end once its own inference rate (`rate2`) is measured:
    its test and hold-out passes, and stage 1's flipped test pass only while that has yet to run. (Self-training
    runs it before stage 2 trains; reserving it again stopped stage 2 about 25 s early in a 600 s run, whose end
    then fell outside 5% of the budget.)"""
    flips_left = 0 if run.stage1_test_tta is not None else len(run.stage1.models)
    return stage2_reserve(
        len(run.loaded.test_images),
        len(run.split.holdout.images),
        run.plan.tta,
        run.test_rate(),
        run.safety,
        flips_left,
        run.test_rate(rate2),
        run.plan.choice(),
    )


def run_stage2(run: Run) -> str:
    """Train, validate and (where it wins on the tuning part and its prediction fits) submit stage 2; returns
    "ok", or why the stage-1 submission stands."""
    from marsseg.training.feed import network_input
    from marsseg.training.runtime import peak_gpu_bytes, reset_peak_gpu_memory

    cfg, split, stage1, test_images = run.cfg, run.split, run.stage1, run.loaded.test_images
    reset_peak_gpu_memory()
    rows = np.flatnonzero(stage1.covered)
    if len(rows) < 4:
        return "skipped: too few out-of-fold predictions"
    available, skip = run.plan.stage2_time(stage1, len(rows), run.test_rate())
    if skip:
        return skip
    pseudo = self_training_rows(run) if cfg.self_training.enabled else None
    data = Stage2Data(split.dev_images, split.dev_masks, split.dev_groups, stage1, run.temperature, pseudo)
    result = stage2_fit(
        data,
        cfg,
        run.context,
        seconds=available,
        class_weights=split.class_weights["stage2"],
        reserve=lambda rate2: training_reserve(run, rate2),
    )
    stage2 = run.stage2 = Stage2Outcome(result)
    plot_curves({"stage 2": result.history}, run.out_dir / "curves_stage2.png", "stage 2")
    run.budget.phase("stage2 validation")
    probs1 = run.stage1_holdout_probs
    x_val = network_input(split.holdout.images, probs1[1] if run.tta_on else probs1[0])
    plain, tta, stage2.infer_rate = stage2_probs(result.model, x_val, run.tta_on, clock=run.budget.clock)
    stage2.holdout_probs = (plain, tta)
    choice1, choice2 = run.stage1_choice, run.choose_post("stage2", stage2.holdout_probs)
    stage2.choice = choice2
    run.metrics["val_miou_stage2"], run.metrics["val_iou_stage2"] = split.holdout.bare(stage2.holdout_probs)
    run.metrics["stage2"] = report.stage2_metrics(result, cfg.stage2.model.residual, stage2.infer_rate)
    run.metrics["stage2"]["peak_gpu_bytes"] = peak_gpu_bytes()
    run.measured.update(
        stage2=result_timing(result, len(rows)), stage2_rows=len(rows), stage2_rows_full=len(split.dev_images)
    )
    run.measured["infer2"] = stage2.infer_rate
    if losing := below_stage1(run, choice2, choice1):
        return f"not used: {losing}"
    ok, why, choice2 = prediction_that_fits(run, choice2)
    if not ok:
        return f"skipped at test time: its prediction {why}"
    if losing := below_stage1(run, choice2, choice1):
        return f"not used: without its flip TTA (no time for it) {losing}"
    stage2.choice, tta2 = choice2, choice2["tta"]["used"]
    if why:
        run.note(f"stage 2's test prediction {why}")
    if run.tta_on:
        stage1_flip(run, ", stage 2's input")
    run.budget.phase("stage2 test prediction", note=f"{len(test_images)} images{' x 2 (flip TTA)' * tta2}")
    labels = testset.stage2_labels(result.model, test_images, stage1_test_input(run), choice2, cfg.post)
    run.write_submission(labels, "stage 2")
    run.final_stage, run.final_choice = 2, choice2
    return "ok"


def below_stage1(run: Run, choice2: dict, choice1: dict) -> str:
    """Why stage 2's choice loses to stage 1's on the tuning part, or "" (a canary goes on regardless)."""
    if choice2["miou_final"] < choice1["miou_final"] and run.full_cfg is None:
        return f"tuning hold-out mIoU {choice2['miou_final']:.4f} is below stage 1's {choice1['miou_final']:.4f}"
    return ""


def prediction_that_fits(run: Run, choice: dict) -> tuple[bool, str, dict]:
    """(whether stage 2's test prediction runs, what to say, the choice it runs with). Stage 2's own flip TTA runs
    where the prediction with it ends within the budget; otherwise the one without it (half the stage-2 passes, the
    one its reserve was planned for: `budget.stage2_reserve`) runs, up to the last prediction's allowance past the
    budget, rather than discard the trained stage 2: `choice` without its TTA, rescored on the tuning part. Where
    the TTA'd pass fits in that allowance and stage 2 without it would lose to stage 1, the TTA'd one runs. (In a
    paired run at 600 s, a stage 2 worth +0.05 on the hold-out was dropped for a TTA pass worth about +0.001.)"""
    rate, flip = run.test_rate(run.stage2.infer_rate), flip_seconds(run) if run.tta_on else 0.0

    def estimate(tta: bool) -> float:
        return test_seconds(len(run.loaded.test_images), 1, tta, rate) + flip

    tta = choice["tta"]["used"]
    ok, why = last_prediction(estimate(tta), run.budget, run.safety)
    if not tta or (ok and not why):  # no TTA chosen, or the TTA'd prediction ends within the budget
        return ok, why, choice
    plain_ok, plain_why = last_prediction(estimate(False), run.budget, run.safety)  # fits wherever the TTA'd one would
    if not plain_ok:
        return False, f"{why} (without its flip TTA it {plain_why})", choice
    plain = run.split.holdout.without_tta(choice, run.stage2.holdout_probs, run.cfg.post)
    if ok and below_stage1(run, plain, run.stage1_choice):
        return ok, why, choice  # only the TTA'd stage 2 beats stage 1, and it fits in the allowance
    if ok:
        past = needed_seconds(estimate(True), run.safety) - run.budget.remaining()
        dropped = (
            f"stage 2's flip TTA dropped to end within the budget (with it the prediction would end {past:.0f}s past)"
        )
    else:
        dropped = f"stage 2's flip TTA dropped at test time: with it the prediction {why}"
    run.note(f"{dropped}; tuning hold-out mIoU {choice['miou_final']:.4f} with it, {plain['miou_final']:.4f} without")
    return True, plain_why, plain
