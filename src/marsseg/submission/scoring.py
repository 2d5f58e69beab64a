"""The competition metric in NumPy: mean IoU over the scored classes, from one confusion matrix.

IoU is accumulated over all pixels of all images (not averaged per image), as the leaderboard does.
A class absent from both truth and prediction is left out of the mean rather than counted as 0 or 1.
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


def mean_iou(confusion: np.ndarray, competition: Competition = MARS) -> float:
    values = [v for v in iou_per_class(confusion, competition).values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def score_masks(truth: np.ndarray, prediction: np.ndarray, competition: Competition = MARS) -> dict:
    """{"miou": float, "iou": {class: float}} for whole mask stacks."""
    confusion = confusion_matrix(truth, prediction, competition.num_classes)
    return {"miou": mean_iou(confusion, competition), "iou": iou_per_class(confusion, competition)}
