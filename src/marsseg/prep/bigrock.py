"""Offline big-rock copies: augmented versions of every training image that contains big rock, made once.

The copies are saved next to a cleaned dataset (`marsseg clean --augment-bigrock`) or made in memory by the
pipeline; each remembers its source image so the folds keep a source and its copies together (`with_copies`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marsseg.data.load import _read_array
from marsseg.files import atomic_save_npz
from marsseg.prep.augment import Augmenter, batch_seed, has_class

_CHUNK = 256  # copies augmented per batch (one seed each)


@dataclass(frozen=True)
class BigRockCopies:
    images: np.ndarray  # (K, H, W) uint8
    masks: np.ndarray  # (K, H, W) uint8
    source_index: np.ndarray  # (K,) index of the image each copy was made from


def bigrock_copies(
    images, masks, copies: int, seed: int = 0, strength: str = "medium", elastic: bool = False
) -> BigRockCopies:
    """`copies` augmented versions of every image that contains big rock, made once (offline)."""
    h, w = images.shape[1:]
    sources = np.repeat(np.flatnonzero(has_class(masks)), max(int(copies), 0))
    if not len(sources):
        return BigRockCopies(np.zeros((0, h, w), np.uint8), np.zeros((0, h, w), np.uint8), np.zeros(0, np.int64))
    augmenter = Augmenter(strength, elastic)
    out_images, out_masks = [], []
    for start in range(0, len(sources), _CHUNK):
        chunk = sources[start : start + _CHUNK]
        x, y = augmenter.batch(images[chunk], masks[chunk], seed=batch_seed(seed, 0, start // _CHUNK, stream=1))
        out_images.append(np.clip(np.rint(x[..., 0] * 255.0), 0, 255).astype(np.uint8))
        out_masks.append(y)
    return BigRockCopies(np.concatenate(out_images), np.concatenate(out_masks), sources.astype(np.int64))


def save_bigrock(path, copies: BigRockCopies):
    return atomic_save_npz(path, images=copies.images, masks=copies.masks, source_index=copies.source_index)


def load_bigrock(path) -> BigRockCopies:
    return BigRockCopies(_read_array(path, "images"), _read_array(path, "masks"), _read_array(path, "source_index"))


def with_copies(images, masks, copies: BigRockCopies):
    """(images, masks, groups): originals then copies; groups[i] is the original's index (for folds)."""
    groups = np.concatenate([np.arange(len(images)), copies.source_index])
    return np.concatenate([images, copies.images]), np.concatenate([masks, copies.masks]), groups
