"""Stratified splits. (Placeholder: a seeded shuffle split; the data-preparation issue stratifies.)"""

from __future__ import annotations

import numpy as np


def holdout_split(masks: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(masks))
    n_val = max(1, int(round(val_fraction * len(masks))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])
