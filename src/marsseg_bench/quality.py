"""`make bench` quality sections: the kit against a plain U-Net at the same wall-clock budget.

On full-size synthetic data (2615 training images; a 2000-image synthetic test set scored against its truth),
both get the same seconds, start to test-set labels:

- kit: `pipeline.run` with the `cpu` preset (cleaning, K-fold U-Net stage 1 (at half resolution behind a strided
  stem, no attention gates or auxiliary heads in this preset: too slow on 2 cores), residual stage 2 on
  out-of-fold probabilities, light augmentation with big-rock oversampling, class-weighted cross-entropy that
  ignores background, warm-up + cosine schedules, TTA, class biases and morphology chosen on the hold-out);
- plain: one U-Net of the same depth and width at full resolution, no attention, no deep supervision,
  cross-entropy over all five classes, no augmentation, no cleaning, early stopping on the same share of
  held-out images, argmax over all classes.

Also: training and inference samples/s per stage, and augmentation throughput against stage-1 training.
The `quality_gpu` section runs the same comparison with the `gpu` preset (full resolution, attention gates, deep
supervision, focal Tversky + focal loss, 5 folds) where the Keras backend sees a GPU.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from marsseg.config import LossConfig, StageConfig, preset
from marsseg.data.synth import make_synthetic, save_synthetic
from marsseg.pipeline.postprocess import labels_from_probs
from marsseg.pipeline.run import run
from marsseg.prep.augment import augmentation_throughput
from marsseg.prep.folds import holdout_split
from marsseg.submission.formats import read_submission
from marsseg.submission.scoring import score_masks
from marsseg_bench.gpu import gpu_here

QUALITY_BUDGET = float(os.environ.get("MARSSEG_BENCH_QUALITY_BUDGET", "480"))
# The `quality_long` section: the same comparison with more time (~30 min), where the kit's fixed costs (K fold
# models, stage 2, test passes) weigh less.
QUALITY_LONG_BUDGET = float(os.environ.get("MARSSEG_BENCH_QUALITY_LONG_BUDGET", "1200"))
# On a GPU (the `quality_gpu` section, `gpu` preset). Each fold model compiles for a minute or more under JAX
# (measured on an H100), so a budget of a few minutes would train one fold: give each side 20 minutes.
GPU_QUALITY_BUDGET = float(os.environ.get("MARSSEG_BENCH_GPU_QUALITY_BUDGET", "1200"))
N_TRAIN, N_TEST = 2615, 2000


def plain_unet_run(cfg, images, masks, test_images, budget_seconds: float, log=print) -> dict:
    """Train and predict the plain reference within `budget_seconds`; returns test labels and rates."""
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage, predict_probs

    started = time.monotonic()
    stage = StageConfig(
        model=replace(cfg.stage1.model, attention=False, deep_supervision=False, input_stride=1),
        loss=LossConfig(name="ce", ignore_background=False, class_weights="none"),
        train=replace(cfg.stage1.train, epochs=1000, schedule="plateau"),
    )
    train, val = holdout_split(masks, cfg.data.val_fraction, cfg.seed)
    # Keep back what predicting the test set will take (measured on the validation images after training).
    reserve = 0.12 * budget_seconds
    result = fit_stage(
        stage,
        images[train],
        masks[train],
        network_input(images[val]),
        masks[val],
        augment_cfg=None,
        seed=cfg.seed,
        deadline=started + budget_seconds - reserve,
        name="plain_unet",
        verbose=0,
        log=log,
    )
    t = time.monotonic()
    probs = [
        predict_probs(result.model, network_input(test_images[i : i + 1024])) for i in range(0, len(test_images), 1024)
    ]
    infer_rate = len(test_images) / max(time.monotonic() - t, 1e-6)
    labels = np.concatenate([labels_from_probs(p, allow_background=True) for p in probs])
    return {
        "labels": labels,
        "val_miou": result.best_val_miou,
        "epochs": result.epochs_run,
        "train_samples_per_s": result.train_samples_per_s,
        "infer_samples_per_s": infer_rate,
        "seconds": time.monotonic() - started,
    }


def section_quality(
    repeats: int, log, preset_name: str = "cpu", budget: float = QUALITY_BUDGET, device: str | None = None
) -> str:
    """The kit against a plain U-Net at the same wall-clock budget (the `quality` section: ~2 x 8 minutes)."""
    import keras

    cfg = replace(preset(preset_name), budget_seconds=budget)
    tmp = Path(tempfile.mkdtemp(prefix="marsseg-quality-"))
    log(f"quality: synthetic data {N_TRAIN} train + {N_TEST} test")
    synthetic = make_synthetic(N_TRAIN, N_TEST, seed=5)
    data = tmp / "data.npz"
    save_synthetic(synthetic, data)
    truth = synthetic.test_labels

    log(f"quality: kit ({preset_name} preset) under a {budget:.0f}s budget")
    started = time.monotonic()
    metrics = run(cfg, data, tmp / "kit", log=lambda m: None, submissions_dir=None, verbose=0)
    kit_seconds = time.monotonic() - started
    kit = score_masks(truth, read_submission(Path(metrics["submission"]), N_TEST).masks)

    log(f"quality: plain U-Net under the same {budget:.0f}s")
    plain = plain_unet_run(cfg, synthetic.images, synthetic.masks, synthetic.test_images, budget, log)
    plain_score = score_masks(truth, plain["labels"])

    log("quality: augmentation throughput")
    aug_rate = augmentation_throughput(
        n_batches=20, strength=cfg.augment.strength, batch_size=cfg.stage1.train.batch_size
    )
    s1, s2 = metrics["stage1"], metrics.get("stage2", {})
    gain = kit["miou"] - plain_score["miou"]
    stage2 = metrics.get("val_miou_stage2")
    names = {1: "soil", 2: "bedrock", 3: "sand", 4: "big rock"}
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    rate = lambda v: "n/a" if not v else f"{v:.1f}"  # noqa: E731
    lines = [
        f"## Quality at a fixed budget ({budget:.0f} s each, synthetic data"
        + (f", on a GPU: {device}, Keras backend {keras.backend.backend()})" if device else ")"),
        "",
        f"Full-size synthetic training set ({N_TRAIN} images, seed 5) and a {N_TEST}-image synthetic test set scored "
        f"against its truth (smaller than the real 10022 to keep the test passes short). Kit: `{preset_name}` preset, "
        f"{s1['folds_trained']} of {s1['folds_planned']} folds trained (epochs {s1['fold_epochs']}), stage 2 "
        f"{metrics['stage2_status']}, final stage {metrics['final_stage']}, wall clock {kit_seconds:.0f} s. "
        f"Plain: the same network at full resolution (depth, width; no attention, deep supervision or strided stem), "
        f"batch size and learning rate; "
        f"unweighted cross-entropy over all five classes, reduce-on-plateau, no augmentation, "
        f"{plain['epochs']} epochs, {plain['seconds']:.0f} s.",
        "",
        "| model | test mIoU | " + " | ".join(names.values()) + " |",
        "|---|---:|" + "---:|" * 4,
        f"| kit (final) | {kit['miou']:.4f} | " + " | ".join(f"{kit['iou'][c]:.3f}" for c in names) + " |",
        f"| plain U-Net | {plain_score['miou']:.4f} | "
        + " | ".join(f"{plain_score['iou'][c]:.3f}" for c in names)
        + " |",
        "",
        f"Kit − plain: {gain:+.4f} test mIoU (target ≥ +0.05: {'met' if gain >= 0.05 else 'NOT met'}).",
        "",
        "Hold-out mIoU inside the kit's run (the same held-out images for both stages):",
        "",
        "| stage 1 | stage 2 | final (after TTA / morphology choice) | stage 2 − stage 1 |",
        "|---:|---:|---:|---:|",
        f"| {fmt(metrics['val_miou_stage1'])} | {fmt(stage2)} | {fmt(metrics['val_miou_final'])} | "
        + (f"{stage2 - metrics['val_miou_stage1']:+.4f}" if stage2 is not None else "n/a")
        + " |",
        "",
        (
            f"Stage 2 ({'residual' if s2.get('residual') else 'from scratch'}): {s2['epochs']} epoch(s), best epoch "
            f"{s2['best_epoch']} (0 = the untrained head, i.e. stage 1, kept), early-stopping mIoU "
            f"{fmt(s2.get('before_training_val_miou'))} before training → {fmt(s2.get('early_stopping_val_miou'))}; "
            f"status: {metrics['stage2_status']}."
            if s2
            else f"Stage 2: {metrics['stage2_status']}."
        ),
        "",
        "Throughput on this machine (samples/s; training counts augmented samples, median over steady epochs):",
        "",
        "| | training | inference |",
        "|---|---:|---:|",
        f"| stage 1 (per fold model) | {rate(s1.get('train_samples_per_s'))} | {rate(s1.get('infer_samples_per_s'))} |",
        f"| stage 2 | {rate(s2.get('train_samples_per_s'))} | {rate(s2.get('infer_samples_per_s'))} |",
        f"| plain U-Net | {rate(plain['train_samples_per_s'])} | {rate(plain['infer_samples_per_s'])} |",
        "",
        f"Augmentation ({cfg.augment.strength}, one thread): {aug_rate:.0f} samples/s, "
        f"{aug_rate / max(s1.get('train_samples_per_s') or 1e-9, 1e-9):.0f}× stage-1 training: augmentation is not "
        f"the bottleneck."
        if aug_rate > (s1.get("train_samples_per_s") or 0)
        else f"Augmentation ({cfg.augment.strength}, one thread): {aug_rate:.0f} samples/s, "
        "slower than stage-1 training.",
        "",
        "Post-processing on the hold-out (without → with; kept only if it helps under `auto`; class biases: "
        "fitted on one half of the hold-out and scored on the other): "
        + "; ".join(
            f"{stage} TTA {fmt(p['tta']['without'])} → {fmt(p['tta']['with'])} "
            f"({'kept' if p['tta']['used'] else 'dropped'}), "
            f"class bias {fmt(p['class_bias']['without'])} → {fmt(p['class_bias']['with'])} "
            f"({'kept' if p['class_bias']['used'] else 'dropped'}), "
            f"morphology {fmt(p['morphology']['without'])} → {fmt(p['morphology']['with'])} "
            f"({'kept' if p['morphology']['used'] else 'dropped'})"
            for stage, p in metrics["post"].items()
        )
        + ".",
    ]
    for path in sorted(tmp.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    tmp.rmdir()
    return "\n".join(lines)


def section_quality_long(repeats: int, log) -> str:
    """The same comparison at 1200 s a side (~30 minutes): how the kit's gain grows with time."""
    return section_quality(repeats, log, budget=QUALITY_LONG_BUDGET)


def section_quality_gpu(repeats: int, log) -> str | None:
    """On a GPU: the kit (`gpu` preset) against the plain U-Net at the same budget; None where the Keras backend
    sees no GPU (the section keeps its block)."""
    gpu = gpu_here("quality_gpu", log)
    if gpu is None:
        return None
    return section_quality(repeats, log, preset_name="gpu", budget=GPU_QUALITY_BUDGET, device=gpu)
