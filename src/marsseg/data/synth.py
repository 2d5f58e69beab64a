"""Synthetic Mars data with the real file's schema and traps, for the demo and the tests.

A fair stand-in needs what makes the real task hard: smooth irregular regions of soil, bedrock
and sand whose textures and brightness differ but overlap; rare big rocks (about 1% of pixels,
in a minority of images), shaded and casting a shadow away from a light whose direction is one per
image and differs between images, as the sun's does across rover images, so a flipped image is as
plausible as the original (SYNTH_VERSION 1 lit every rock from the top left, which made each flip
show rocks the test set never has and penalised the flips the public write-ups gained from);
unlabelled background (about 22% of pixels); global exposure changes and noise; and 'alien'
outliers (about 4% of the training images) that carry one fixed sprite and all share one
identical label mask, as the 110 of 2615 in the real training set do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from marsseg.competition import MARS, Competition
from marsseg.data.load import save_dataset
from marsseg.files import atomic_save_npz

OUTLIER_FRACTION = 110 / 2615
# Bumped whenever the same arguments give different arrays: stored benchmark runs count together only on one version.
SYNTH_VERSION = 2
# The stand-ins and their versions. "procedural": textures made of smooth random fields (SYNTH_VERSION). "photo":
# textures cut from real photographs that scikit-learn ships (`data.photo`), on the same class layout; a preset
# choice is kept only where it helps on both (issue 27).
STAND_INS = {"procedural": SYNTH_VERSION, "photo": 1}
_SPRITE_SEED = 20241122
_CHUNK = 512


@dataclass(frozen=True)
class Synthetic:
    images: np.ndarray  # (N, H, W) uint8
    masks: np.ndarray  # (N, H, W) uint8
    test_images: np.ndarray  # (M, H, W) uint8
    test_labels: np.ndarray  # (M, H, W) uint8
    outlier_indices: np.ndarray  # sorted indices into images


def make_synthetic(
    n_train: int = 2615,
    n_test: int = 10022,
    seed: int = 0,
    outlier_fraction: float = OUTLIER_FRACTION,
    competition: Competition = MARS,
    stand_in: str = "procedural",
) -> Synthetic:
    """Deterministic per seed and stand-in (STAND_INS): the same arguments give the same arrays."""
    if stand_in not in STAND_INS:
        raise ValueError(f"unknown stand-in {stand_in!r}; choose from {', '.join(STAND_INS)}")
    h, w = competition.shape
    rng = np.random.default_rng(seed)
    images, masks = _scenes_in_chunks(rng, n_train, h, w, stand_in)
    test_images, test_labels = _scenes_in_chunks(rng, n_test, h, w, stand_in)
    n_outliers = int(round(outlier_fraction * n_train))
    outliers = np.sort(rng.choice(n_train, size=n_outliers, replace=False)) if n_outliers else np.zeros(0, np.int64)
    if n_outliers:
        sprite, alpha, alien_mask = _alien(h, w)
        gain = rng.uniform(0.93, 1.07, (n_outliers, 1, 1)).astype(np.float32)
        noise = rng.normal(0, 3, (n_outliers, h, w)).astype(np.float32)
        pasted = alpha * (sprite * gain + noise) + (1 - alpha) * images[outliers].astype(np.float32)
        images[outliers] = np.clip(pasted, 0, 255).astype(np.uint8)
        masks[outliers] = alien_mask
    return Synthetic(images, masks, test_images, test_labels, outliers.astype(np.int64))


def _scenes_in_chunks(rng, n, h, w, stand_in="procedural"):
    images = np.empty((n, h, w), np.uint8)
    masks = np.empty((n, h, w), np.uint8)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        images[start:stop], masks[start:stop] = _scenes(rng, stop - start, h, w, stand_in)
    return images, masks


@cache
def _basis(out: int, knots: int) -> np.ndarray:
    """Gaussian interpolation from `knots` random values to `out` pixels: smooth, not polygonal."""
    centres = np.linspace(-0.5, out - 0.5, knots)
    width = out / max(knots - 1, 1) * 0.6
    grid = np.arange(out)[:, None]
    basis = np.exp(-0.5 * ((grid - centres[None, :]) / width) ** 2)
    return (basis / basis.sum(1, keepdims=True)).astype(np.float32)


def _smooth(rng, n, k, knots, h, w):
    """n×k smooth random fields of unit spread, shape (n, k, h, w)."""
    gh, gw = knots
    low = rng.standard_normal((n, k, gh, gw), dtype=np.float32)
    field = _basis(h, gh) @ low @ _basis(w, gw).T
    field -= field.mean(axis=(2, 3), keepdims=True)
    field /= field.std(axis=(2, 3), keepdims=True) + 1e-6
    return field


def _scenes(rng, n, h, w, stand_in: str = "procedural"):
    """n images and masks of one stand-in: its textures and rocks on the shared layout, background and exposure."""
    textures, rocks = _painters(stand_in)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    labels = _regions(rng, n, h, w)
    image, speckle = textures(rng, labels, yy, xx)
    rocks(rng, image, labels, yy, xx, speckle)
    return _finish(rng, image, labels, yy)


def _painters(stand_in: str):
    """(textures, rocks) of a stand-in. textures(rng, labels, yy, xx) -> (float image, (n, h, w) speckle the rocks
    may use); rocks(rng, image, labels, yy, xx, speckle) draws the big rocks in place."""
    if stand_in == "procedural":
        return _procedural_textures, _ellipse_rocks
    if stand_in == "photo":
        from marsseg.data.photo import photo_rocks, photo_textures

        return photo_textures, photo_rocks
    raise ValueError(f"unknown stand-in {stand_in!r}; choose from {', '.join(STAND_INS)}")


def _regions(rng, n, h, w):
    """Terrain regions: argmax of three smooth fields, with irregular edges and per-image preferences."""
    regions = _smooth(rng, n, 3, (3, 5), h, w) + 0.45 * _smooth(rng, n, 3, (7, 12), h, w)
    preference = (
        rng.normal(0, 0.7, (n, 3, 1, 1)).astype(np.float32) + np.array([0.25, 0.0, -0.1], np.float32)[:, None, None]
    )
    return (np.argmax(regions + preference, axis=1) + 1).astype(np.uint8)  # 1 soil, 2 bedrock, 3 sand


def class_levels(rng, n):
    """(n, 3, 1, 1) per-image brightness of soil, bedrock and sand: different by class, overlapping across images."""
    return rng.normal(0, 14, (n, 3, 1, 1)).astype(np.float32) + np.array([108, 132, 120], np.float32)[:, None, None]


def _procedural_textures(rng, labels, yy, xx):
    """Version 2's textures, made of smooth random fields: speckled soil, layered and cracked bedrock, rippled sand."""
    n, h, w = labels.shape
    level = class_levels(rng, n)
    fine = _smooth(rng, n, 2, (24, 48), h, w)
    white = rng.standard_normal((n, h, w), dtype=np.float32)
    soil = level[:, 0] + 12 * fine[:, 0] + 7 * white
    layers = _smooth(rng, n, 2, (8, 16), h, w)
    cracks = np.abs(layers[:, 1]) < 0.12
    bedrock = level[:, 1] + 20 * layers[:, 0] + 8 * fine[:, 1] - 30 * cracks
    theta = rng.uniform(0, np.pi, (n, 1, 1)).astype(np.float32)
    wavelength = rng.uniform(4.5, 9.0, (n, 1, 1)).astype(np.float32)
    warp = _smooth(rng, n, 1, (3, 6), h, w)[:, 0]
    ripples = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / wavelength + 1.8 * warp)
    sand = level[:, 2] + 10 * ripples + 3 * white
    # The rocks' speckle is the same white noise (version 2's arrays depend on it).
    return np.where(labels == 1, soil, np.where(labels == 2, bedrock, sand)), white


def rock_layout(rng, n, h, w):
    """Which images have big rocks (about a third) and the direction of each image's light (uniform angle)."""
    return rng.random(n) < 0.3, rng.uniform(0, 2 * np.pi, n)


def rock_geometry(rng, h, w):
    """One rock's centre (cy, cx) and radii (ry, rx)."""
    cy, cx = rng.uniform(6, h - 6), rng.uniform(8, w - 8)
    return cy, cx, rng.uniform(3, 8), rng.uniform(4, 12)


def _ellipse_rocks(rng, image, labels, yy, xx, white):
    """Big rocks: shaded ellipses with a cast shadow, in about a third of the images, lit from one direction per
    image (towards the light: light_x, light_y), the direction uniform over the circle."""
    n, h, w = labels.shape
    has_rocks, azimuth = rock_layout(rng, n, h, w)
    for i in np.flatnonzero(has_rocks):
        light_x, light_y = np.cos(azimuth[i]), np.sin(azimuth[i])
        for _ in range(rng.integers(1, 4)):
            cy, cx, ry, rx = rock_geometry(rng, h, w)
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            shadow, shade = cast_shadow(inside, yy, xx, (cy, cx, ry, rx), (light_x, light_y))
            image[i] = np.where(shadow, image[i] - 40, image[i])
            image[i] = np.where(inside, rng.uniform(85, 150) + 28 * shade + 6 * white[i], image[i])
            labels[i][inside] = 4


def cast_shadow(inside, yy, xx, rock, light):
    """The shadow a rock casts away from the light (outside the rock), and its shading: +1 towards the light."""
    (cy, cx, ry, rx), (light_x, light_y) = rock, light
    sy, sx = cy - 0.8 * light_y * ry, cx - 0.8 * light_x * rx
    shadow = (((yy - sy) / ry) ** 2 + ((xx - sx) / rx) ** 2 <= 1.0) & ~inside
    return shadow, (xx - cx) / rx * light_x + (yy - cy) / ry * light_y


def _finish(rng, image, labels, yy):
    """Unlabelled background, then exposure, a vertical light gradient and sensor noise."""
    n, h, w = labels.shape
    # Unlabelled background: smooth blobs covering a per-image share of about 22% on average.
    share = np.clip(rng.beta(1.1, 3.4, n), 0.0, 0.85).astype(np.float32)
    blob = _smooth(rng, n, 1, (3, 6), h, w)[:, 0]
    threshold = _normal_quantile(1 - share)[:, None, None]
    unlabelled = (blob > threshold) & (labels != 4)
    labels[unlabelled] = 0

    gain = rng.uniform(0.75, 1.25, (n, 1, 1)).astype(np.float32)
    offset = rng.normal(0, 12, (n, 1, 1)).astype(np.float32)
    gradient = rng.normal(0, 12, (n, 1, 1)).astype(np.float32) * (yy / h - 0.5)
    noise = rng.uniform(2, 7, (n, 1, 1)).astype(np.float32) * rng.standard_normal((n, h, w), dtype=np.float32)
    image = gain * image + offset + gradient + noise
    return np.clip(image, 0, 255).astype(np.uint8), labels


def _normal_quantile(p):
    """Inverse normal CDF (Acklam's rational approximation), enough for thresholds."""
    from scipy.special import ndtri

    return ndtri(np.clip(p, 1e-6, 1 - 1e-6)).astype(np.float32)


@cache
def _alien(h, w):
    """The fixed sprite, its opacity and the one label mask every outlier shares."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h * 0.42, w * 0.5
    head = ((yy - cy) / (h * 0.34)) ** 2 + ((xx - cx) / (w * 0.16)) ** 2 <= 1
    body = ((yy - h * 0.92) / (h * 0.22)) ** 2 + ((xx - cx) / (w * 0.22)) ** 2 <= 1
    eyes = ((((yy - cy + 2) / 6) ** 2 + ((xx - cx + 9) / 7) ** 2) <= 1) | (
        (((yy - cy + 2) / 6) ** 2 + ((xx - cx - 9) / 7) ** 2) <= 1
    )
    antennae = (np.abs(xx - cx - (cy - yy) * 0.5) < 1.2) | (np.abs(xx - cx + (cy - yy) * 0.5) < 1.2)
    antennae &= yy < h * 0.12
    alpha = (head | body | antennae).astype(np.float32)
    sprite = np.where(eyes, 20.0, 215.0 + 25 * np.sin(xx / 3.0) * np.cos(yy / 4.0)).astype(np.float32)
    sprite = np.where(antennae, 240.0, sprite)
    _, alien_mask = _scenes(np.random.default_rng(_SPRITE_SEED), 1, h, w)
    return sprite, alpha, alien_mask[0]


def save_synthetic(synthetic: Synthetic, path, truth_path=None, competition: Competition = MARS):

    save_dataset(path, synthetic.images, synthetic.masks, synthetic.test_images, competition)
    if truth_path:
        atomic_save_npz(truth_path, test_labels=synthetic.test_labels, outlier_indices=synthetic.outlier_indices)


def ensure_synthetic(data_path: Path, truth_path: Path, n_train: int, n_test: int, seed: int = 0, log=print) -> None:
    """Generate the synthetic dataset once; reuse it while its file is there."""
    if data_path.exists() and truth_path.exists():
        return
    started = time.perf_counter()
    synthetic = make_synthetic(n_train, n_test, seed)
    save_synthetic(synthetic, data_path, truth_path)
    log(f"synthetic data: {n_train} train + {n_test} test images -> {data_path} ({time.perf_counter() - started:.1f}s)")
