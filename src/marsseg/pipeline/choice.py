"""The post-processing choice on the hold-out's tuning part, and applying it.

    choice = choose_post(cfg.post, masks, plain, tta, seed=cfg.seed)   # tta: flip-TTA'd probabilities or None
    labels = apply_choice(choice, plain, tta, cfg.post)                  # on any images, e.g. the reporting part

Flip TTA, then per-class biases, then the morphological clean-up are each scored on the given images without and
with the step; "auto" keeps a step only where it raises their mIoU, "on" always, "off" never. Only the images
passed in are read: the run passes the tuning part (see `holdout`).
"""

from __future__ import annotations

import numpy as np

from marsseg.competition import MARS
from marsseg.config import PostConfig
from marsseg.pipeline.postprocess import (
    clean_masks,
    cross_fitted_bias_score,
    decide,
    fit_class_bias,
    labels_from_probs,
)
from marsseg.submission.scoring import score_masks


def choose_post(post: PostConfig, val_masks: np.ndarray, val_probs: np.ndarray, tta_probs, seed: int) -> dict:
    """mIoU without and with TTA, class biases and morphology, in that order; what the settings keep.

    `val_probs`: plain probabilities of the images `val_masks` label; `tta_probs`: their flip-TTA'd probabilities
    (needed unless post.tta is off)."""
    labels = labels_from_probs(val_probs)
    plain = before = score_masks(val_masks, labels)
    chosen_probs, tta = val_probs, {"setting": post.tta, "without": plain["miou"], "with": None, "used": False}
    if post.tta != "off":
        tta_labels = labels_from_probs(tta_probs)
        tta_score = score_masks(val_masks, tta_labels)
        tta["with"] = tta_score["miou"]
        tta["used"] = decide(post.tta, tta["without"], tta["with"])
        if tta["used"]:
            chosen_probs, labels, before = tta_probs, tta_labels, tta_score
    bias = {
        "setting": post.class_bias,
        "without": before["miou"],
        "with": None,
        "fitted": None,
        "used": False,
        "values": None,
    }
    values = None
    if post.class_bias != "off":
        fitted, bias["fitted"] = fit_class_bias(chosen_probs, val_masks)
        # "with" is honest: shifts fitted on one half of the hold-out, scored on the other (both ways round).
        bias["with"] = cross_fitted_bias_score(chosen_probs, val_masks, seed=seed)
        bias["values"] = {MARS.class_names[c]: float(fitted[c]) for c in MARS.scored_classes}
        bias["used"] = decide(post.class_bias, bias["without"], bias["with"])
        if bias["used"]:
            values = fitted
            labels = labels_from_probs(chosen_probs, class_bias=values)
            before = score_masks(val_masks, labels)
    morph = {"setting": post.morphology, "without": before["miou"], "with": None, "used": False}
    final = before
    if post.morphology != "off":
        cleaned = clean_masks(labels, post.min_component, post.max_hole)
        after = score_masks(val_masks, cleaned)
        morph["with"] = after["miou"]
        morph["used"] = decide(post.morphology, morph["without"], morph["with"])
        if morph["used"]:
            final, labels = after, cleaned
    return {
        "miou_plain": plain["miou"],
        "iou_plain": named(plain["iou"]),
        "tta": tta,
        "class_bias": bias,
        "bias_values": values,
        "morphology": morph,
        "miou_final": final["miou"],
        "iou_final": named(final["iou"]),
        "val_labels": labels,
    }


def labels_with_bias(probs: np.ndarray, choice: dict) -> np.ndarray:
    """Labels from probabilities with the class biases the hold-out kept for this choice (if any)."""
    return labels_from_probs(probs, class_bias=choice["bias_values"])


def clean(labels: np.ndarray, choice: dict, post: PostConfig) -> np.ndarray:
    """`labels` after the morphological clean-up, where the hold-out kept it for this choice."""
    if not choice["morphology"]["used"]:
        return labels
    return clean_masks(labels, post.min_component, post.max_hole)


def apply_choice(choice: dict, plain: np.ndarray, tta, post: PostConfig) -> np.ndarray:
    """Labels from plain or (where `choice` kept TTA) flip-TTA'd probabilities, with its biases and clean-up."""
    return clean(labels_with_bias(tta if choice["tta"]["used"] else plain, choice), choice, post)


def without_tta(choice: dict, val_probs: np.ndarray, val_masks: np.ndarray, post: PostConfig) -> dict:
    """`choice` as applied without its TTA (the plain `val_probs`), scored again on the images `val_masks` label."""
    labels = clean(labels_with_bias(val_probs, choice), choice, post)
    score = score_masks(val_masks, labels)
    return {
        **choice,
        "tta": {**choice["tta"], "used": False},
        "val_labels": labels,
        "miou_final": score["miou"],
        "iou_final": named(score["iou"]),
    }


def named(iou: dict) -> dict:
    """Per-class IoU by class name; NaN (a class absent from truth and prediction) as None."""
    return {MARS.class_names[c]: (None if np.isnan(v) else float(v)) for c, v in iou.items()}
