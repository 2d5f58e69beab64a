"""The whole run: data -> model -> test prediction -> validated submission, written to one run folder.

Placeholder body until the two-stage issue lands: a nearest-centroid baseline, so the kernel, the
emulator and the demo have a real, fast pipeline to exercise. The signature is the contract.
"""

from __future__ import annotations

import time
from pathlib import Path

from marsseg.config import Config, save_config
from marsseg.files import atomic_write_json


def run(cfg: Config, data_path, out_dir, log=print) -> dict:
    """Train on `data_path` under `cfg`; write config.json, metrics.json and submission.csv to `out_dir`."""
    from marsseg.baseline import fit_centroids, predict_centroids
    from marsseg.data import load_dataset
    from marsseg.folds import holdout_split
    from marsseg.scoring import score_masks
    from marsseg.submission import read_submission, write_submission

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.json")
    dataset = load_dataset(data_path)
    train_idx, val_idx = holdout_split(dataset.masks, cfg.data.val_fraction, cfg.seed)
    model = fit_centroids(dataset.images[train_idx], dataset.masks[train_idx])
    val_score = score_masks(dataset.masks[val_idx], predict_centroids(dataset.images[val_idx], model))
    log(f"[pipeline] baseline validation mIoU {val_score['miou']:.4f}")
    prediction = predict_centroids(dataset.test_images, model)
    submission = write_submission(out_dir / "submission.csv", prediction, cfg.submission.format)
    read_submission(submission, dataset.n_test)
    metrics = {"val_miou_final": val_score["miou"], "val_iou_final": val_score["iou"],
               "seconds": {"total": time.perf_counter() - started}}
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics
