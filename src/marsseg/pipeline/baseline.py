"""A network-free reference: nearest class centroid on local intensity features.

It gives `make demo` a real (if weak) prediction before any model is trained, the benchmarks a floor that a
trained network has to beat, and a run whose stage 1 crashed a valid submission (`outputs.fallback_submission`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from marsseg.competition import MARS, Competition


def pixel_features(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 4): intensity, 5×5 local mean, 5×5 local std, 9×9 local mean, as float32."""
    x = images.astype(np.float32)
    mean5 = ndimage.uniform_filter(x, size=(1, 5, 5))
    sq5 = ndimage.uniform_filter(x * x, size=(1, 5, 5))
    std5 = np.sqrt(np.maximum(sq5 - mean5 * mean5, 0))
    mean9 = ndimage.uniform_filter(x, size=(1, 9, 9))
    return np.stack([x, mean5, std5, mean9], axis=-1)


def fit_centroids(images: np.ndarray, masks: np.ndarray, competition: Competition = MARS):
    """Standardisation and one centroid per scored class."""
    features = pixel_features(images).reshape(-1, 4)
    labels = masks.ravel()
    scored = labels != competition.ignored_class
    mu, sigma = features[scored].mean(0), features[scored].std(0) + 1e-6
    z = (features - mu) / sigma
    centroids = np.stack(
        [z[labels == c].mean(0) if (labels == c).any() else np.full(4, np.inf) for c in competition.scored_classes]
    )
    return mu, sigma, centroids


def predict_centroids(images: np.ndarray, model, competition: Competition = MARS, chunk: int = 512) -> np.ndarray:
    """Labels (N, H, W) uint8 of the nearest centroid, `chunk` images at a time: the distances of all of Kaggle's
    10022 test images at once would take 5 GB."""
    mu, sigma, centroids = model
    classes = np.asarray(competition.scored_classes, np.uint8)
    labels = np.empty(images.shape, np.uint8)
    for start in range(0, len(images), chunk):
        z = (pixel_features(images[start : start + chunk]) - mu) / sigma
        distance = ((z[..., None, :] - centroids) ** 2).sum(-1)
        labels[start : start + chunk] = classes[np.argmin(distance, axis=-1)]
    return labels
