"""The hold-out in two parts: a tuning part that makes every decision, a reporting part that makes none.

    hold = Holdout.split(val_images, val_masks, cfg.data.report_fraction, cfg.seed)
    probs = (plain, tta)                                # a stage's hold-out probabilities; tta None when off
    choice = hold.choose(cfg.post, probs, seed=cfg.seed)             # every decision: the tuning part's
    scores = hold.reported(choice, probs, cfg.post, seed=cfg.seed)   # the reporting part's figures

TTA, class biases, morphology and the stage choice each keep whatever scored best on the tuning part, so its
figure flatters; the reporting part's is what a new image can expect. Its 95% interval resamples whole reporting
images (per-image confusion matrices summed, so 1000 resamples take milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marsseg.competition import MARS
from marsseg.config import PostConfig
from marsseg.pipeline.choice import apply_choice, choose_post, named, without_tta
from marsseg.pipeline.postprocess import labels_from_probs
from marsseg.prep.folds import holdout_split
from marsseg.submission.scoring import confusion_matrix, iou_per_class, mean_iou

SEED_OFFSET = 7  # the tuning/reporting split's seed, apart from the hold-out's (+0) and stage 2's stopping rows (+100)
RESAMPLES = 1000


def split(val_masks: np.ndarray, report_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(tuning rows, reporting rows) of the hold-out, stratified as `prep.folds.holdout_split`. A hold-out of one
    image cannot be split: that image does both (the reported figure is then the tuned one)."""
    if len(val_masks) < 2:
        rows = np.arange(len(val_masks))
        return rows, rows
    return holdout_split(val_masks, report_fraction, seed + SEED_OFFSET)


def per_image_confusion(masks: np.ndarray, labels: np.ndarray, k: int = MARS.num_classes) -> np.ndarray:
    """(N, k, k) int64 confusion matrices, one per image, rows truth, columns prediction."""
    index = masks.reshape(len(masks), -1).astype(np.int64) * k + labels.reshape(len(labels), -1)
    offset = np.arange(len(masks), dtype=np.int64)[:, None] * k * k
    counts = np.bincount((index + offset).ravel(), minlength=len(masks) * k * k)
    return counts.reshape(len(masks), k, k)


def bootstrap_ci(confusions: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> list[float]:
    """[2.5%, 97.5%] of mIoU over `resamples` draws of the images (with replacement) behind `confusions`."""
    n = len(confusions)
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    weights = np.zeros((resamples, n))
    np.add.at(weights, (np.arange(resamples)[:, None], draws), 1.0)
    totals = (weights @ confusions.reshape(n, -1)).reshape(resamples, *confusions.shape[1:])
    scores = np.array([mean_iou(c) for c in totals])
    scores = scores[~np.isnan(scores)]
    if not len(scores):
        return [float("nan"), float("nan")]
    return [float(v) for v in np.percentile(scores, [2.5, 97.5])]


def argmax_score(plain: np.ndarray, tta: np.ndarray | None, masks: np.ndarray) -> tuple[float, dict]:
    """A stage's bare score (argmax, no biases, no clean-up) with flip TTA where `tta` is given: (mIoU, IoU)."""
    confusion = confusion_matrix(masks, labels_from_probs(plain if tta is None else tta))
    return mean_iou(confusion), named(iou_per_class(confusion))


def reported(choice: dict, plain: np.ndarray, tta, masks: np.ndarray, post, seed: int) -> dict:
    """`choice` applied, unchanged, to the reporting part: its mIoU, IoU, labels, confusion and bootstrap interval."""
    labels = apply_choice(choice, plain, tta, post)
    confusions = per_image_confusion(masks, labels)
    confusion = confusions.sum(axis=0)
    return {
        "miou": mean_iou(confusion),
        "iou": named(iou_per_class(confusion)),
        "labels": labels,
        "confusion": confusion.tolist(),
        "ci95": bootstrap_ci(confusions, seed=seed + SEED_OFFSET),
    }


@dataclass
class Holdout:
    """The hold-out images and masks, and which rows tune and which report."""

    images: np.ndarray
    masks: np.ndarray
    tune: np.ndarray
    report: np.ndarray

    @classmethod
    def split(cls, images: np.ndarray, masks: np.ndarray, report_fraction: float, seed: int) -> Holdout:
        return cls(images, masks, *split(masks, report_fraction, seed))

    def counts(self) -> dict:
        return {"n_tune": int(len(self.tune)), "n_report": int(len(self.report))}

    def choose(self, post: PostConfig, probs: tuple, seed: int) -> dict:
        """The post-processing choice for a stage's hold-out probabilities (plain, flip-TTA'd), on the tuning part."""
        return choose_post(post, self.masks[self.tune], *rows(probs, self.tune), seed=seed)

    def without_tta(self, choice: dict, probs: tuple, post: PostConfig) -> dict:
        """`choice` without its TTA, rescored on the tuning part."""
        return without_tta(choice, probs[0][self.tune], self.masks[self.tune], post)

    def bare(self, probs: tuple) -> tuple[float, dict]:
        """A stage's argmax score on the reporting part, under flip TTA unless it is off: (mIoU, IoU)."""
        return argmax_score(*rows(probs, self.report), self.masks[self.report])

    def labels(self, choice: dict, probs: tuple, post: PostConfig) -> np.ndarray:
        """The reporting part's labels under `choice`."""
        return apply_choice(choice, *rows(probs, self.report), post)

    def reported(self, choice: dict, probs: tuple, post: PostConfig, seed: int) -> dict:
        return reported(choice, *rows(probs, self.report), self.masks[self.report], post, seed)


def rows(probs: tuple, index: np.ndarray) -> tuple:
    """(plain, flip-TTA'd or None) probabilities, restricted to `index`."""
    plain, tta = probs
    return plain[index], None if tta is None else tta[index]
