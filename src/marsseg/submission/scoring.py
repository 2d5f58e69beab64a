"""The competition metric in NumPy: mean IoU from one confusion matrix, by the profile's scoring rule.

IoU is accumulated over all pixels of all images (not averaged per image), as the leaderboard does, and pixels
whose truth is the ignored class (background) count for no class. The two readings differ only in class 0:

- "keras" (the default; `keras.metrics.MeanIoU(num_classes=5, ignore_class=0)`, the course's starter code): every
  class with a non-empty union is averaged, so a prediction of 0 on a labelled pixel brings class 0 into the mean
  with IoU 0;
- "scored": the mean over classes 1-4 only.

A class absent from both truth and prediction is left out of the mean rather than counted as 0 or 1. Predictions
that never say 0 (the kit's argmax over classes 1-4) score the same under both.
"""

from __future__ import annotations

import numpy as np

from marsseg.competition import MARS, Competition


def confusion_matrix(truth: np.ndarray, prediction: np.ndarray, num_classes: int = MARS.num_classes) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = truth, columns = prediction."""
    truth = np.asarray(truth).ravel().astype(np.int64)
    prediction = np.asarray(prediction).ravel().astype(np.int64)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth has {truth.size} pixels, prediction {prediction.size}")
    counts = np.bincount(truth * num_classes + prediction, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray, competition: Competition = MARS) -> dict[int, float]:
    """IoU of each scored class; NaN where the class is in neither truth nor prediction.

    Pixels whose truth is the ignored class count for no class: they are unlabelled, so a
    prediction there is neither right nor wrong.
    """
    confusion = np.asarray(confusion, dtype=np.float64).copy()
    if competition.ignored_class is not None:
        confusion[competition.ignored_class, :] = 0
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    out = {}
    for c in competition.scored_classes:
        out[c] = float(tp[c] / union[c]) if union[c] > 0 else float("nan")
    return out


def mean_iou(confusion: np.ndarray, competition: Competition = MARS, rule: str | None = None) -> float:
    """Mean IoU by `rule` ("keras" or "scored"; default: the profile's)."""
    rule = rule or competition.scoring_rule
    values = [v for v in iou_per_class(confusion, competition).values() if not np.isnan(v)]
    if rule == "keras" and competition.ignored_class is not None:
        ignored = competition.ignored_class
        confusion = np.asarray(confusion, dtype=np.float64)
        predicted_on_labelled = confusion[:, ignored].sum() - confusion[ignored, ignored]
        if predicted_on_labelled > 0:
            values.append(0.0)  # its row is dropped, so its IoU is 0 whenever it is predicted on a labelled pixel
    elif rule not in ("keras", "scored"):
        raise ValueError(f"unknown scoring rule {rule!r}; use keras or scored")
    return float(np.mean(values)) if values else float("nan")


def score_masks(truth: np.ndarray, prediction: np.ndarray, competition: Competition = MARS) -> dict:
    """{"miou": by the profile's rule, "miou_keras", "miou_scored", "iou": {scored class: IoU}} for mask stacks."""
    confusion = confusion_matrix(truth, prediction, competition.num_classes)
    readings = {f"miou_{rule}": mean_iou(confusion, competition, rule) for rule in ("keras", "scored")}
    return {
        "miou": readings[f"miou_{competition.scoring_rule}"],
        **readings,
        "iou": iou_per_class(confusion, competition),
    }
