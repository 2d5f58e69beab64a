"""The quality benchmark's references: the same U-Net as the kit's stage 1, trained the way notebooks do.

- naive: the plain reference of old, unchanged: the preset's stage-1 network at full resolution (no attention,
  deep supervision or strided stem), unweighted cross-entropy over all five classes, no augmentation, outliers
  kept, reduce-on-plateau with early stopping on held-out images, argmax over all five classes.
- best: what the strongest public notebooks did, on the network the issue measured it with (base 16, depth 4, full
  resolution; no attention or deep supervision): background weight 0 in the loss
  (class-0 pixels ignored), inverse-frequency weights over classes 1-4 with the max/min ratio capped at 10x,
  the training set tripled once as arrays (original + horizontal flip + vertical flip), AdamW, and labels by the
  argmax over classes 1-4.

Both are built from the kit's own pieces (`fit_stage`, `build_loss`, `class_weights`, `labels_from_probs`) and
stop at a deadline, so each gets the seconds it is given, start to test-set labels.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from marsseg.config import Config, LossConfig, StageConfig
from marsseg.pipeline.budget import PREDICTION_SLACK, safety_seconds, test_seconds
from marsseg.pipeline.postprocess import labels_from_probs
from marsseg.prep.analysis import class_weights
from marsseg.prep.folds import holdout_split

REFERENCES = {"best": "best-practice U-Net", "naive": "naive U-Net"}
MAX_WEIGHT_RATIO = 10.0
# Kept back from training for predicting the test set until the reference's own prediction rate is measured (the
# share the plain reference always used); then its deadline is planned from that rate (`TestPassDeadline`).
PREDICT_RESERVE = 0.12


def naive_stage(cfg: Config) -> StageConfig:
    """The plain reference's stage: the preset's stage-1 model at full resolution, unweighted cross-entropy over
    all five classes, the preset's optimiser, batch size and learning rate, reduce-on-plateau."""
    return StageConfig(
        model=replace(cfg.stage1.model, attention=False, deep_supervision=False, input_stride=1),
        loss=LossConfig(name="ce", ignore_background=False, class_weights="none"),
        train=replace(cfg.stage1.train, epochs=1000, schedule="plateau"),
    )


BEST_PRACTICE_WIDTH = {"base_filters": 16, "depth": 4}  # the public notebooks' size, as the issue measured it


def best_practice_stage(cfg: Config) -> StageConfig:
    """`naive_stage`'s schedule on a base-16, depth-4 U-Net; cross-entropy that ignores background and takes class
    weights (`capped_inverse_frequency`), AdamW."""
    naive = naive_stage(cfg)
    return replace(
        naive,
        model=replace(naive.model, **BEST_PRACTICE_WIDTH),
        loss=LossConfig(name="ce", ignore_background=True, class_weights="auto"),
        train=replace(naive.train, optimizer="adamw"),
    )


def capped_inverse_frequency(masks: np.ndarray, max_ratio: float = MAX_WEIGHT_RATIO) -> np.ndarray:
    """(5,) loss weights: 0 for background, 1 / pixel share for classes 1-4 with the largest at most `max_ratio`
    times the smallest, mean 1 over the present classes; a class absent from `masks` gets the largest weight."""
    weights = class_weights(masks, power=1.0, cap=np.inf)  # inverse frequency over 1-4, mean 1, background 0
    scored = weights[1:]
    present = scored > 0
    if not present.any():
        return np.array([0.0, 1.0, 1.0, 1.0, 1.0])
    cap = scored[present].min() * max_ratio
    scored = np.where(present, np.minimum(scored, cap), cap)
    return np.concatenate([[0.0], scored / scored[present].mean()])


def flip_triple(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3N, H, W) images and masks: the originals, then their horizontal flips, then their vertical flips."""
    return (
        np.concatenate([images, images[:, :, ::-1], images[:, ::-1, :]]),
        np.concatenate([masks, masks[:, :, ::-1], masks[:, ::-1, :]]),
    )


def labels_over_scored(probs: np.ndarray) -> np.ndarray:
    """uint8 labels by the argmax over classes 1-4: background is never predicted."""
    return labels_from_probs(probs, allow_background=False)


class TestPassDeadline:
    """A reference's training deadline from its own measured prediction rate, as the kit plans its passes: `end`
    less the test pass (`n_test` images, `PREDICTION_SLACK` over) and the `safety` margin. A fixed share left
    40-55 s unused at 600 s once prediction ran at the network's rate; a reference gets the kit's care. A rate
    guessed from training batches (`steady` None) counts only until a validation pass is measured."""

    def __init__(self, end: float, n_test: int, safety: float):
        self.end, self.n_test, self.safety, self.measured = end, n_test, safety, False

    def __call__(self, rate: float, epoch_train_seconds, steady) -> float | None:
        if steady is None and self.measured:
            return None
        self.measured = self.measured or steady is not None
        return self.end - self.safety - test_seconds(self.n_test, 1, False, rate) * PREDICTION_SLACK


def reference_run(
    kind: str, cfg: Config, images, masks, test_images, budget_seconds: float, log=print, name: str | None = None
) -> dict:
    """Train and predict the `kind` reference ("naive" or "best") within `budget_seconds`, on the same held-out
    images as every reference with `cfg.seed`; returns test labels, rates and the weights used."""
    from marsseg.training.context import Deadline, StageContext, StageData
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage, predict_probs

    if kind not in REFERENCES:
        raise ValueError(f"unknown reference {kind!r}; choose from {', '.join(REFERENCES)}")
    started = time.monotonic()
    train, val = holdout_split(masks, cfg.data.val_fraction, cfg.seed)
    train_images, train_masks = images[train], masks[train]
    weights = None
    if kind == "best":
        stage = best_practice_stage(cfg)
        weights = capped_inverse_frequency(train_masks)
        train_images, train_masks = flip_triple(train_images, train_masks)
    else:
        stage = naive_stage(cfg)
    result = fit_stage(
        stage,
        StageData(train_images, train_masks, network_input(images[val]), masks[val]),
        augment_cfg=None,
        seed=cfg.seed,
        name=name or f"{kind}_unet",
        class_weights=weights,
        deadline=Deadline(
            started + budget_seconds * (1 - PREDICT_RESERVE),
            replan=TestPassDeadline(started + budget_seconds, len(test_images), safety_seconds(budget_seconds)),
        ),
        context=StageContext(verbose=0, log=log),
    )
    t = time.monotonic()
    probs = [
        predict_probs(result.model, network_input(test_images[i : i + 1024])) for i in range(0, len(test_images), 1024)
    ]
    infer_rate = len(test_images) / max(time.monotonic() - t, 1e-6)
    if kind == "best":
        labels = np.concatenate([labels_over_scored(p) for p in probs])
    else:
        labels = np.concatenate([labels_from_probs(p, allow_background=True) for p in probs])
    return {
        "labels": labels,
        "val_miou": result.best_val_miou,
        "epochs": result.epochs_run,
        "stop_reason": result.stop_reason,  # patience, epochs or budget (the deadline)
        "train_images": len(train_images),
        "val_images": len(val),
        "class_weights": None if weights is None else [float(w) for w in weights],
        "train_samples_per_s": result.train_samples_per_s,
        "epoch_seconds": [float(s) for s in getattr(result, "extra", {}).get("epoch_seconds", [])],
        "infer_samples_per_s": infer_rate,
        "budget": float(budget_seconds),
        "seconds": time.monotonic() - started,
    }


def plain_unet_run(cfg, images, masks, test_images, budget_seconds: float, log=print) -> dict:
    """The naive reference (the name the quality section always used)."""
    return reference_run("naive", cfg, images, masks, test_images, budget_seconds, log, name="plain_unet")
