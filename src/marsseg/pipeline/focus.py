"""Where stage 1 confuses big rock: the images stage 2 samples more often (`stage2_focus`, off in every preset).

    confused = bigrock_confusion(masks, oof_probs)                  # (N,) labelled pixels wrong about big rock
    weights = focus_weights(masks, oof_probs, cfg.stage2_focus)     # (N,) 1, or `oversample` where confused

Stage 2 already sees stage 1's probabilities; what it does not get by itself is more practice on the images where
those probabilities are wrong about the class that decides the mean. An image counts when at least `min_pixels` of
its labelled pixels are big rock that stage 1 called another class, or another class that stage 1 called big rock.
Its sampling weight is multiplied, so a big-rock image stage 1 gets wrong is drawn `oversample` times as often as
a big-rock image it gets right. Sampling whole images keeps stage 2's flips as they are: a per-pixel loss weight
would have to be flipped with its image and its stage-1 channels. (Copy-paste is stage 1's only.)
"""

from __future__ import annotations

import numpy as np

from marsseg.pipeline.postprocess import labels_from_probs
from marsseg.prep.augment import BIG_ROCK


def bigrock_confusion(masks: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(N,) the labelled pixels of each image where stage 1 is wrong about big rock: big rock called another class,
    or another class called big rock. `masks` (N, H, W) uint8, `probs` (N, H, W, C) stage 1's probabilities."""
    if masks.shape != probs.shape[:-1]:
        raise ValueError(f"masks {masks.shape} and probabilities {probs.shape} do not describe the same pixels")
    labelled = masks > 0
    wrong = (masks == BIG_ROCK) != (labels_from_probs(probs) == BIG_ROCK)  # the submission's labels, classes 1-4
    return np.count_nonzero(labelled & wrong, axis=(1, 2))


def focus_weights(masks: np.ndarray, probs: np.ndarray, focus_cfg) -> np.ndarray:
    """(N,) float: `focus_cfg.oversample` for an image with at least `min_pixels` big-rock confusions, else 1;
    all ones when `focus_cfg.enabled` is false."""
    if not focus_cfg.enabled:
        return np.ones(len(masks))
    confused = bigrock_confusion(masks, probs) >= int(focus_cfg.min_pixels)
    return np.where(confused, float(focus_cfg.oversample), 1.0)
