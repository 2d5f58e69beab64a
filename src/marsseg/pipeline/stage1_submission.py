"""Stage 1's submission in a run (`run.Run`): written first, as the fallback; its flip TTA added back where stage 1
stays the final stage; the network-free one where stage 1 crashed.

With stage 2 to come, the stage-1 submission is written without flip TTA: half the prediction time, which stage 2
gets instead. The flipped pass runs once, at the end: for stage 2's input if stage 2 is submitted (`stage2_phase`),
for stage 1's TTA if stage 1 stays the final stage (`add_stage1_tta`).
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from marsseg.files import atomic_write_json
from marsseg.pipeline import outputs, report, testset
from marsseg.pipeline.budget import last_prediction, test_seconds, test_slowdown

if TYPE_CHECKING:
    from marsseg.pipeline.run import Run


def write_stage1_submission(run: Run) -> None:
    """Predict the test set with the fold models (flip TTA where chosen and no stage 2 is to come) and write the
    submission; stage 1 is the final stage until stage 2 replaces it."""
    test_images, models, choice = run.loaded.test_images, run.stage1.models, run.stage1_choice
    tta = choice["tta"]["used"]
    run.stage1_tta_pending = tta and run.cfg.two_stage
    tta = tta and not run.stage1_tta_pending
    estimate = test_seconds(len(test_images), len(models), tta, run.stage1_infer_rate)
    run.budget.phase(
        "stage1 test prediction",
        note=f"{len(test_images)} images x {len(models)} models"
        f"{' x 2 (flip TTA)' if tta else ''}, about {estimate:.0f}s",
    )
    started = run.budget.clock()
    labels, run.stage1_test_probs = testset.stage1_labels(
        models, test_images, choice, run.cfg.post, tta=tta, keep_probs=run.cfg.two_stage
    )
    run.test_slowdown = test_slowdown(estimate, run.budget.clock() - started)
    run.metrics["test_slowdown"] = round(run.test_slowdown, 2)
    run.write_submission(labels, "stage 1" + (" without TTA for now" if run.stage1_tta_pending else ""))
    run.final_stage, run.final_choice = 1, choice


def flip_seconds(run: Run) -> float:
    """Seconds for stage 1's flipped test pass; 0 once it has run."""
    if run.stage1_test_tta is not None:
        return 0.0
    return test_seconds(len(run.loaded.test_images), len(run.stage1.models), False, run.test_rate())


def stage1_flip(run: Run, why: str) -> None:
    """Stage 1's flipped test pass, once: its flip-TTA'd test probabilities (stage 2's input, stage 1's TTA)."""
    if run.stage1_test_tta is None:
        run.budget.phase(f"stage1 test prediction (flip TTA{why})", note=f"about {flip_seconds(run):.0f}s")
        run.stage1_test_tta = testset.stage1_flip(run.stage1.models, run.loaded.test_images, run.stage1_test_probs)
        run.stage1_test_probs = None  # the plain half is not read again: free it (0.8 GB for Kaggle's test set)


def add_stage1_tta(run: Run) -> None:
    """Rewrite the stage-1 submission with the flip TTA the tuning part chose, if the budget allows; otherwise
    report the hold-out score of what was written (no TTA)."""
    ok, why = last_prediction(flip_seconds(run), run.budget, run.safety)
    if not ok:
        report_stage1_without_tta(run, f"stage-1 flip TTA not added: it {why}")
        return
    if why:
        run.note(f"stage 1's flip TTA {why}")
    stage1_flip(run, "")
    labels = testset.stage1_tta_labels(run.loaded.test_images, run.stage1_test_tta, run.stage1_choice, run.cfg.post)
    run.write_submission(labels, "stage 1 with flip TTA")


def report_stage1_without_tta(run: Run, why: str) -> None:
    """The final choice is the stage-1 submission as written, without TTA: rescore it on the tuning part (the
    reporting part is scored in `Run.finish`)."""
    holdout = run.split.holdout
    run.final_choice = holdout.without_tta(run.stage1_choice, run.stage1_holdout_probs, run.cfg.post)
    run.note(f"{why}; the submission has none")


def stage1_crashed(run: Run, exc: Exception) -> None:
    """Write the network-free submission (both files, validated) and metrics.json, then raise Stage1Failed."""
    run.log("".join(traceback.format_exception(exc)).rstrip())
    crash = f"{type(exc).__name__}: {exc}"
    run.metrics.update(stage1_status=f"failed: {crash}", final_stage=0)
    run.budget.phase("fallback submission", note="stage 1 crashed: nearest-centroid model, no network")
    submission = None
    out_dir, loaded = run.out_dir, run.loaded
    try:
        outputs.fallback_submission(loaded.images, loaded.masks, loaded.test_images, out_dir)
        submission = out_dir / outputs.SUBMISSION
        run.metrics.update(submission=str(submission), submission_rle=str(out_dir / outputs.SUBMISSION_RLE))
        what = f"the network-free fallback {submission} (nearest centroid, validated) was written instead"
    except Exception as fallback_exc:  # noqa: BLE001 - report both; the crash is what gets raised
        run.log("".join(traceback.format_exception(fallback_exc)).rstrip())
        what = f"the fallback submission failed too ({type(fallback_exc).__name__}: {fallback_exc})"
    run.metrics["fallback"] = "nearest-centroid" if submission else None
    run.note(f"stage 1 crashed ({crash}); {what}")
    run.budget.end_phase()
    run.metrics["seconds"] = report.phase_seconds(run.budget)
    run.metrics["outputs"] = outputs.output_files(out_dir)
    atomic_write_json(out_dir / "metrics.json", run.metrics)
    raise outputs.Stage1Failed(f"stage 1 crashed ({crash}); {what}", run.metrics, submission) from exc
