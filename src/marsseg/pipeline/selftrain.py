"""Self-training on the unlabelled test images (opt-in, `self_training.enabled`): stage 1's confident pixels as
stage 2's extra training labels.

Transductive: the test images' pixels shape the submitted model. Check the competition's rules before using it
(README); it is off in every preset. A pixel is pseudo-labelled with stage 1's class where stage 1's probability
of that class (classes 1-4, as the submission's argmax) is at least `threshold`; every other pixel is labelled 0,
which the loss ignores (`loss.ignore_background`), so only the confident pixels teach. The images with the most
confident pixels are taken, up to `max_images`; their stage-2 input channels are stage 1's test probabilities, as
at test time.
"""

from __future__ import annotations

import numpy as np


def pseudo_labels(probs: np.ndarray, threshold: float) -> np.ndarray:
    """(N, H, W) uint8 labels from (N, H, W, 5) probabilities: the argmax over classes 1-4 where its probability is
    at least `threshold`, else 0 (ignored)."""
    scored = np.asarray(probs[..., 1:], np.float32)
    best = scored.argmax(-1)
    confident = np.take_along_axis(scored, best[..., None], -1)[..., 0] >= threshold
    return np.where(confident, best + 1, 0).astype(np.uint8)


def most_confident(labels: np.ndarray, max_images: int) -> np.ndarray:
    """Indices of the (at most `max_images`, 0: all) images with the most pseudo-labelled pixels, none empty."""
    counts = (labels > 0).sum(axis=(1, 2))
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    return np.sort(order[:max_images] if max_images else order)


def pseudo_rows(test_images: np.ndarray, probs: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(images, labels, float32 probabilities, summary) of the pseudo-labelled test images under
    `cfg.self_training`."""
    labels = pseudo_labels(probs, cfg.self_training.threshold)
    rows = most_confident(labels, cfg.self_training.max_images)
    labelled = int((labels[rows] > 0).sum())
    summary = {
        "images": int(len(rows)),
        "threshold": cfg.self_training.threshold,
        "pixel_share": round(labelled / max(1, labels[rows].size), 4),
        "class_pixels": np.bincount(labels[rows].ravel(), minlength=5)[1:].tolist(),
    }
    return test_images[rows], labels[rows], np.asarray(probs[rows], np.float32), summary
