"""Post-processing of predictions: labels from probabilities, morphological clean-up, flip TTA.

    probs = predict_tta(predict, x)               # mean of p(x) and flip(p(flip(x)))
    masks = labels_from_probs(probs)              # argmax over the scored classes 1-4
    masks = clean_masks(masks, min_component=12, max_hole=12)

Whole stacks (N, H, W) are labelled at once with a structuring element that never connects two images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from marsseg.competition import MARS, Competition

# 4-connectivity inside each image, nothing across the stack axis.
_PER_IMAGE = np.zeros((3, 3, 3), bool)
_PER_IMAGE[1] = ndimage.generate_binary_structure(2, 1)


def labels_from_probs(probs: np.ndarray, allow_background: bool = False, competition: Competition = MARS) -> np.ndarray:
    """uint8 labels (N, H, W). By default the ignored class is never predicted: truth-background pixels are not
    scored, so predicting background can only turn a scored pixel into a miss."""
    if allow_background or competition.ignored_class is None:
        return np.argmax(probs, axis=-1).astype(np.uint8)
    scored = np.asarray(competition.scored_classes)
    return scored[np.argmax(probs[..., scored], axis=-1)].astype(np.uint8)


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
    border = np.concatenate([labelled[:, 0, :].ravel(), labelled[:, -1, :].ravel(),
                             labelled[:, :, 0].ravel(), labelled[:, :, -1].ravel()])
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
    from marsseg.errors import ConfigError

    raise ConfigError(f"post-processing setting {setting!r} is not auto, on or off")
