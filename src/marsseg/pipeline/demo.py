"""`make demo`: the whole two-stage pipeline on synthetic data, its submission scored against the synthetic truth."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from marsseg.competition import MARS
from marsseg.data.load import load_dataset, load_masks
from marsseg.data.synth import ensure_synthetic
from marsseg.pipeline.outputs import SUBMISSION, write_submissions
from marsseg.submission.formats import read_submission
from marsseg.submission.scoring import score_masks


def run_baseline_demo(out_dir: Path, n_train: int = 2615, n_test: int = 10022, seed: int = 0, log=print) -> dict:
    """Synthetic data -> nearest-centroid prediction -> validated submissions (both layouts) -> score."""
    from marsseg.pipeline.baseline import fit_centroids, predict_centroids

    out_dir = Path(out_dir)
    data_path, truth_path = out_dir / "synthetic_mars.npz", out_dir / "synthetic_truth.npz"
    ensure_synthetic(data_path, truth_path, n_train, n_test, seed, log)
    dataset = load_dataset(data_path)
    model = fit_centroids(dataset.images, dataset.masks)
    prediction = predict_centroids(dataset.test_images, model)
    write_submissions(out_dir, prediction)  # as a run writes them: the profile's layout, and RLE beside it
    submission_path = out_dir / SUBMISSION
    info = read_submission(submission_path, dataset.n_test)
    truth = np.load(truth_path)["test_labels"]
    score = score_masks(truth, info.masks)
    log(f"submission: {submission_path} ({info.layout}, {info.n_images} images, valid)")
    names = MARS.class_names
    log(
        "test mIoU (leaderboard rule) against the synthetic truth: "
        f"{score['miou']:.4f}  [" + ", ".join(f"{names[c]} {v:.3f}" for c, v in score["iou"].items()) + "]"
    )
    return score


def run_pipeline_demo(out_dir: Path, cfg, n_train: int = 1600, n_test: int = 1000, seed: int = 0, log=print) -> dict:
    """Synthetic data -> `pipeline.run` (cleaning, folds, both stages, post-processing) -> test-set score.

    The synthetic data lives in `out_dir/data-<train>x<test>/` and is reused; each run gets `out_dir/run/`.
    """
    from marsseg.pipeline.run import run

    started = time.perf_counter()
    out_dir = Path(out_dir)
    data_dir = out_dir / f"data-{n_train}x{n_test}-seed{seed}"
    data_path, truth_path = data_dir / "synthetic_mars.npz", data_dir / "synthetic_truth.npz"
    ensure_synthetic(data_path, truth_path, n_train, n_test, seed, log)
    metrics = run(cfg, data_path, out_dir / "run", log=log, submissions_dir=None)
    truth = load_masks(truth_path, key="test_labels")[: metrics["data"]["n_test"]]  # presets may cap the test set
    info = read_submission(Path(metrics["submission"]), len(truth))
    score = score_masks(truth, info.masks)
    names = MARS.class_names
    log(
        f"submission: {metrics['submission']} ({info.layout}, {info.n_images} images, valid; "
        f"stage {metrics['final_stage']})"
    )
    log(
        f"reporting hold-out ({metrics['holdout']['n_report']} images) mIoU: stage 1 {metrics['val_miou_stage1']:.4f}"
        + (f", stage 2 {metrics['val_miou_stage2']:.4f}" if metrics.get("val_miou_stage2") is not None else "")
        + f", final (stage {metrics['final_stage']}) {metrics['val_miou_final']:.4f}"
        + f"; tuning part, which made the choices: {metrics['val_miou_final_tuned']:.4f}"
    )
    log(
        "test mIoU (leaderboard rule) against the synthetic truth: "
        f"{score['miou']:.4f}  ["
        + ", ".join(f"{names[c]} {v:.3f}" for c, v in score["iou"].items())
        + "]"
        + f"  ({time.perf_counter() - started:.0f}s)"
    )
    return {"test": score, "metrics": metrics}
