"""Post-processing of predictions: labels from probabilities, morphological clean-up, flip TTA.

    probs = predict_tta(predict, x)               # mean of p(x) and flip(p(flip(x)))
    masks = labels_from_probs(probs)              # argmax over the scored classes 1-4
    bias = fit_class_bias(val_probs, val_masks)   # per-class log-odds shifts that raise hold-out mIoU
    masks = labels_from_probs(probs, class_bias=bias)
    masks = clean_masks(masks, min_component=12, max_hole=12)

Whole stacks (N, H, W) are labelled at once with a structuring element that never connects two images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from marsseg.competition import MARS, Competition
from marsseg.config import POST_SETTINGS as SETTINGS
from marsseg.errors import ConfigError
from marsseg.submission.scoring import confusion_matrix, mean_iou

# 4-connectivity inside each image, nothing across the stack axis.
_PER_IMAGE = np.zeros((3, 3, 3), bool)
_PER_IMAGE[1] = ndimage.generate_binary_structure(2, 1)


def labels_from_probs(
    probs: np.ndarray, allow_background: bool = False, competition: Competition = MARS, class_bias=None
) -> np.ndarray:
    """uint8 labels (N, H, W). By default the ignored class is never predicted: truth-background pixels are not
    scored, so predicting background can only turn a scored pixel into a miss. `class_bias` (one value per
    class) is added to the log-probabilities before the argmax: a class with bias b wins where it is more than
    e^-b times as likely as the others."""
    if allow_background or competition.ignored_class is None:
        classes = np.arange(probs.shape[-1])
    else:
        classes = np.asarray(competition.scored_classes)
    if class_bias is None or not np.any(np.asarray(class_bias)[classes]):
        return classes[np.argmax(probs[..., classes], axis=-1)].astype(np.uint8)
    scores = _log_probs(probs, classes) + np.asarray(class_bias, np.float32)[classes]
    return classes[np.argmax(scores, axis=-1)].astype(np.uint8)


def _log_probs(probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """float32 log-probabilities of `classes` (last axis), floored so that a zero stays finite."""
    return np.log(np.maximum(probs[..., classes], 1e-12, dtype=np.float32))


BIAS_GRID = np.round(np.linspace(-1.5, 1.5, 13), 3)  # log-odds shifts tried per class (0.25 apart)


def fit_class_bias(
    probs: np.ndarray,
    masks: np.ndarray,
    grid=BIAS_GRID,
    rounds: int = 2,
    max_pixels: int = 1_000_000,
    competition: Competition = MARS,
) -> tuple[np.ndarray, float]:
    """Per-class log-probability shifts that maximise mIoU of `labels_from_probs(probs, class_bias=...)` against
    `masks`, by coordinate ascent over `grid` (one class at a time, `rounds` sweeps); returns (bias, mIoU).

    Argmax of calibrated probabilities maximises pixel accuracy, not mean IoU over classes: a rare class
    the loss up-weighted is predicted too often, a confused pair splits at the wrong odds. Zero is always a
    candidate, so the result never scores below the plain argmax on `masks`. Beyond `max_pixels` scored pixels
    an evenly spaced subset is searched (a few seconds on a CPU; the mIoU of a million pixels barely moves).
    """
    classes = np.asarray(competition.scored_classes)
    logp = _log_probs(probs, classes).reshape(-1, len(classes))
    truth = np.asarray(masks).reshape(-1)
    scored = truth != competition.ignored_class if competition.ignored_class is not None else np.ones_like(truth, bool)
    logp, truth = logp[scored], truth[scored].astype(np.int64)
    if len(truth) > max_pixels:
        keep = np.linspace(0, len(truth) - 1, max_pixels).astype(np.int64)
        logp, truth = logp[keep], truth[keep]

    def score(b):
        labels = classes[np.argmax(logp + b, axis=-1)]
        return mean_iou(confusion_matrix(truth, labels, competition.num_classes), competition)

    bias = np.zeros(len(classes), np.float32)
    best = score(bias)
    for _ in range(rounds):
        moved = False
        for k in range(len(classes)):
            for value in grid:
                if value == bias[k]:
                    continue
                trial = bias.copy()
                trial[k] = value
                s = score(trial)
                if s > best + 1e-9:
                    best, bias, moved = s, trial, True
        if not moved:
            break
    full = np.zeros(competition.num_classes, np.float32)
    full[classes] = bias
    return full, float(best)


def cross_fitted_bias_score(probs: np.ndarray, masks: np.ndarray, seed: int = 0, **kwargs) -> float:
    """mIoU with class biases fitted on one half of the images and applied to the other, both ways round: an
    honest estimate of what fitting on all of them will do on new images (the fit itself always looks better)."""
    order = np.random.default_rng(seed).permutation(len(probs))
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    if min(len(h) for h in halves) == 0:
        return float("nan")
    confusion = 0
    for fit_on, apply_to in (halves, halves[::-1]):
        bias, _ = fit_class_bias(probs[fit_on], masks[fit_on], **kwargs)
        labels = labels_from_probs(probs[apply_to], class_bias=bias)
        confusion = confusion + confusion_matrix(masks[apply_to], labels)
    return mean_iou(confusion)


def _small_components(binary: np.ndarray, max_size: int) -> np.ndarray:
    """Pixels of `binary` in 4-connected components (per image) of fewer than `max_size` pixels."""
    labelled, n = ndimage.label(binary, structure=_PER_IMAGE)
    if n == 0:
        return np.zeros_like(binary)
    sizes = np.bincount(labelled.ravel(), minlength=n + 1)
    small = sizes < max_size
    small[0] = False
    return small[labelled]


def _holes(binary: np.ndarray, max_size: int) -> np.ndarray:
    """Pixels outside `binary` in components of at most `max_size` pixels that do not touch the image border."""
    labelled, n = ndimage.label(~binary, structure=_PER_IMAGE)
    if n == 0:
        return np.zeros_like(binary)
    sizes = np.bincount(labelled.ravel(), minlength=n + 1)
    fill = sizes <= max_size
    border = np.concatenate(
        [labelled[:, 0, :].ravel(), labelled[:, -1, :].ravel(), labelled[:, :, 0].ravel(), labelled[:, :, -1].ravel()]
    )
    fill[np.unique(border)] = False
    fill[0] = False
    return fill[labelled]


def clean_masks(masks: np.ndarray, min_component: int, max_hole: int, classes=MARS.scored_classes) -> np.ndarray:
    """Per class: drop components smaller than `min_component` pixels (they take the label of the nearest kept
    pixel), then fill holes of up to `max_hole` pixels enclosed by one class. Returns a new uint8 stack."""
    masks = np.asarray(masks, np.uint8)
    out = masks.copy()
    if min_component > 1:
        drop = np.zeros(masks.shape, bool)
        for c in classes:
            drop |= _small_components(masks == c, min_component)
        if drop.any():
            for i in np.flatnonzero(drop.any(axis=(1, 2))):
                if drop[i].all():
                    continue  # nothing to borrow from: leave the image as it is
                # The nearest kept pixel's label, by the Euclidean distance transform's index output.
                _, (rows, cols) = ndimage.distance_transform_edt(drop[i], return_indices=True)
                out[i] = masks[i][rows, cols]
    if max_hole > 0:
        result = out.copy()
        for c in classes:
            result[_holes(out == c, max_hole)] = c
        out = result
    return out


def flip_probs(probs: np.ndarray) -> np.ndarray:
    return probs[:, :, ::-1]


def predict_tta(predict, x: np.ndarray, plain: np.ndarray | None = None) -> np.ndarray:
    """Horizontal-flip test-time augmentation: the mean of `predict(x)` and the unflipped `predict(flip(x))`.

    `predict` maps (N, H, W, C) inputs to (N, H, W, K) probabilities; flipping is exact for every input channel.
    `plain`: `predict(x)` where the caller already has it (only the flipped pass is run then).
    """
    plain = predict(x) if plain is None else plain
    flipped = predict(np.ascontiguousarray(x[:, :, ::-1]))
    return 0.5 * (plain + flipped[:, :, ::-1])


def decide(setting: str, without: float, with_: float) -> bool:
    """An on/off/auto setting: auto keeps the step only if it raises validation mIoU."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    if setting == "auto":
        return bool(with_ > without)
    raise ConfigError(f"post-processing setting {setting!r} is not one of {', '.join(SETTINGS)}")
