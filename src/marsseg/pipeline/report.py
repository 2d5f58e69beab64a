"""What a run reports in metrics.json, and its closing log line, assembled from the run's results.

metrics["stage1"] = stage1_metrics(stage1, stage1_infer_rate)
metrics.update(final_metrics(metrics, final_stage, final_choice, stage1_choice, stage2_choice, reported))
metrics["seconds"] = phase_seconds(budget)
budget.note(done_note(metrics, out_dir))
"""

from __future__ import annotations

import numpy as np


def stage1_metrics(stage1, infer_rate: float) -> dict:
    """The stage-1 fold models (a `stages.Stage1Outcome`): how many trained, how far, how fast."""
    return {
        "folds_planned": stage1.planned_folds,
        "folds_trained": len(stage1.folds),
        "oof_covered": int(stage1.covered.sum()),
        "fold_best_val_miou": [f.result.best_val_miou for f in stage1.folds],
        "fold_epochs": [f.result.epochs_run for f in stage1.folds],
        "fold_epoch_seconds": [[round(t, 1) for t in f.result.extra.get("epoch_seconds", [])] for f in stage1.folds],
        "fold_stop_reason": [f.result.stop_reason for f in stage1.folds],
        # Which stage1.model_cycle network each fold trained (an index into model_variants; all 0 without a cycle).
        "fold_model_variant": [f.variant for f in stage1.folds],
        "model_variants": list(stage1.variants),  # each as stage1.model_cycle wrote it; "": stage1.model unchanged
        "train_samples_per_s": float(np.median([f.result.train_samples_per_s for f in stage1.folds])),
        "infer_samples_per_s": float(infer_rate),
    }


def stage2_metrics(result, residual: bool, infer_rate: float) -> dict:
    """The stage-2 model (a `fit.StageResult`): its epochs, its scores before and after training, its rates."""
    return {
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "epoch_seconds": [round(t, 1) for t in result.extra.get("epoch_seconds", [])],
        "residual": residual,
        "before_training_val_miou": result.extra.get("baseline_val_miou"),
        "stop_reason": result.stop_reason,
        "early_stopping_val_miou": result.best_val_miou,
        "train_samples_per_s": result.train_samples_per_s,
        "infer_samples_per_s": float(infer_rate),
    }


def final_metrics(
    metrics: dict, final_stage: int, choice: dict, stage1_choice: dict, stage2_choice: dict | None, reported: dict
) -> dict:
    """The keys the final choice sets: its stage, its reporting-part scores (`holdout.reported`) and the tuning
    part's (labelled tuned), and each stage's post-processing choice (made on the tuning part)."""
    return {
        "final_stage": final_stage,
        "val_miou_final": reported["miou"],
        "val_iou_final": reported["iou"],
        "val_miou_final_ci95": reported["ci95"],
        "val_miou_final_tuned": choice["miou_final"],
        "confusion_report": reported["confusion"],
        "final_tta": bool(choice["tta"]["used"]),
        "val_miou_stage2": metrics.get("val_miou_stage2"),
        "post": {
            f"stage{s}": {"tta": c["tta"], "class_bias": c["class_bias"], "morphology": c["morphology"]}
            for s, c in ((1, stage1_choice), (2, stage2_choice))
            if c is not None
        },
    }


def phase_seconds(budget) -> dict:
    """Seconds per phase of a `budget.Budget`, and the total."""
    return {**{k: round(v, 2) for k, v in budget.phase_seconds.items()}, "total": round(budget.elapsed(), 2)}


def done_note(metrics: dict, out_dir) -> str:
    """The run's last log line: the final stage and the reporting hold-out's mIoU of the final choice and each
    stage, then the tuning part's figure of the final choice."""
    stage2 = metrics.get("val_miou_stage2")
    lo, hi = metrics["val_miou_final_ci95"]
    return (
        f"done: final stage {metrics['final_stage']}, reporting hold-out ({metrics['holdout']['n_report']} images) "
        f"mIoU {metrics['val_miou_final']:.4f} [95% {lo:.4f}-{hi:.4f}] "
        f"(stage 1 {metrics['val_miou_stage1']:.4f}"
        + (f", stage 2 {stage2:.4f}" if stage2 is not None else "")
        + f"; tuned {metrics['val_miou_final_tuned']:.4f}); {out_dir}"
    )
