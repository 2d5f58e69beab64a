"""Albumentations pipelines applied identically to image and mask, and the per-batch augmenter.

Geometric transforms (flips, Affine, optional elastic/grid distortion) move the grey image, any extra
input channels (stage 2's class probabilities) and the mask together; masks use nearest-neighbour
interpolation, so labels stay labels. Photometric transforms (brightness/contrast, gamma, noise) touch
the grey channel only. Every random choice of a batch derives from its seed, so a run is repeatable
with any number of worker threads.

Works with albumentations 1.4.x and 2.x: the API differences live in `_Compat` only. albumentations is
imported on first use, so importing this module does not import it. The batch sequence that drives these
pipelines lives in `prep.augment`.
"""

from __future__ import annotations

import inspect
import random
import threading
from functools import lru_cache

import numpy as np

from marsseg.config import AugmentConfig, rule_of
from marsseg.errors import ConfigError

STRENGTHS = rule_of(AugmentConfig, "strength").choices  # none, flips, light, medium, strong


# ------------------------------------------------------------------------- albumentations 1.4 / 2.x
class _Compat:
    """Every albumentations API difference in one place, detected from the signatures rather than the
    version number: argument names changed within 1.4.x (Affine `mode` -> `border_mode` in 1.4.21,
    GaussNoise `var_limit` -> `std_range`), and per-pipeline seeding (`set_random_seed`) arrived late in 1.4."""

    def __init__(self):
        import albumentations  # heavy (and pulls in cv2): only when a pipeline is built
        import cv2

        self.A = albumentations
        self.cv2 = cv2
        self.border = cv2.BORDER_REFLECT_101  # reflection keeps image and mask consistent at the edges
        self.affine_border = (
            "border_mode" if "border_mode" in inspect.signature(albumentations.Affine).parameters else "mode"
        )
        self.noise_std = "std_range" in inspect.signature(albumentations.GaussNoise).parameters
        self.seedable = hasattr(albumentations.Compose, "set_random_seed")
        self._lock = threading.Lock()

    def affine(self, scale, translate, rotate, shear, p):
        return self.A.Affine(
            scale=scale,
            translate_percent={"x": translate, "y": translate},
            rotate=rotate,
            shear=shear,
            interpolation=self.cv2.INTER_LINEAR,
            mask_interpolation=self.cv2.INTER_NEAREST,
            p=p,
            **{self.affine_border: self.border},
        )

    def noise(self, std_range, p):
        """Gaussian noise with a std given as a fraction of the full range (255 for uint8)."""
        if self.noise_std:
            return self.A.GaussNoise(std_range=std_range, p=p)
        lo, hi = (s * 255.0 for s in std_range)
        return self.A.GaussNoise(var_limit=(lo * lo, hi * hi), p=p)

    def elastic(self, p):
        return self.A.ElasticTransform(alpha=12, sigma=5, border_mode=self.border, p=p)

    def grid(self, p):
        return self.A.GridDistortion(num_steps=5, distort_limit=0.2, border_mode=self.border, p=p)

    def compose(self, transforms):
        return self.A.Compose(transforms) if transforms else None

    def run(self, composes, seed: int, fn):
        """Call fn() with the composes' random state fixed by `seed`."""
        if self.seedable:
            for c, compose in enumerate(composes):
                if compose is None:
                    continue
                compose.set_random_seed(seed)
                # albumentations 2.x hands every transform of a Compose the same seed, so transforms with the same
                # p fire together (a horizontal flip always with a vertical one, measured): give each its own.
                for t, transform in enumerate(compose.transforms):
                    if hasattr(transform, "set_random_seed"):
                        transform.set_random_seed(int(np.random.SeedSequence([seed, c, t]).generate_state(1)[0]))
            return fn()
        with self._lock:  # older 1.4 draws from the global `random` / `np.random` state
            random.seed(seed)
            np.random.seed(seed % 2**32)
            return fn()


@lru_cache(maxsize=1)
def _compat() -> _Compat:
    return _Compat()


def albumentations_version() -> str:
    return _compat().A.__version__


# ------------------------------------------------------------------------- presets
def build_transforms(strength: str = "medium", elastic: bool = False):
    """(geometric Compose or None, photometric Compose or None) for a strength preset."""
    if strength not in STRENGTHS:
        raise ConfigError(f"unknown augmentation strength {strength!r}; choose one of: {', '.join(STRENGTHS)}")
    c = _compat()
    A = c.A
    geometric, photometric = [], []
    if strength == "flips":  # what the public write-ups found best: light geometry, no photometric change
        geometric = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    elif strength == "light":
        geometric = [A.HorizontalFlip(p=0.5), c.affine((0.95, 1.05), (-0.05, 0.05), (-5, 5), (0, 0), p=0.5)]
        photometric = [A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5)]
    elif strength == "medium":
        geometric = [A.HorizontalFlip(p=0.5), c.affine((0.9, 1.1), (-0.08, 0.08), (-10, 10), (-3, 3), p=0.7)]
        photometric = [
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.6),
            A.RandomGamma(gamma_limit=(80, 120), p=0.3),
            c.noise((0.01, 0.04), p=0.3),
        ]
    elif strength == "strong":
        geometric = [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.2),
            c.affine((0.8, 1.25), (-0.12, 0.12), (-20, 20), (-6, 6), p=0.8),
        ]
        photometric = [
            A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3, p=0.7),
            A.RandomGamma(gamma_limit=(70, 140), p=0.4),
            c.noise((0.01, 0.06), p=0.4),
        ]
    if elastic and strength != "none":
        geometric.append(A.OneOf([c.elastic(p=1.0), c.grid(p=1.0)], p=0.3))
    return c.compose(geometric), c.compose(photometric)


class Augmenter:
    """Augments (image uint8 (H,W), mask (H,W), extra float32 (H,W,E) or None)
    -> (float32 (H,W,1+E) in [0,1], uint8 mask).

    Not thread-safe (albumentations transforms hold their random state); one per worker thread.
    """

    def __init__(self, strength: str = "medium", elastic: bool = False):
        self.strength = strength
        self.geometric, self.photometric = build_transforms(strength, elastic)

    def one(self, image: np.ndarray, mask: np.ndarray, extra: np.ndarray | None = None):
        grey = image[..., None] if image.ndim == 2 else image
        # Photometric first, on uint8: both albumentations lines define brightness/noise limits for uint8 alike.
        if self.photometric is not None:
            grey = self.photometric(image=np.ascontiguousarray(grey))["image"]
            grey = grey[..., None] if grey.ndim == 2 else grey
        x = grey.astype(np.float32) * (1.0 / 255.0)
        if extra is not None:
            x = np.concatenate([x, extra.astype(np.float32, copy=False)], axis=-1)
        if self.geometric is not None:
            out = self.geometric(image=np.ascontiguousarray(x), mask=np.ascontiguousarray(mask))
            x, mask = out["image"], out["mask"]
            x = x[..., None] if x.ndim == 2 else x
        return x, np.asarray(mask, np.uint8)

    def batch(self, images, masks, extras=None, seed: int = 0):
        """Augment a batch with every random choice fixed by `seed`."""

        def work():
            xs, ys = zip(
                *(self.one(images[i], masks[i], None if extras is None else extras[i]) for i in range(len(images)))
            )
            return np.stack(xs).astype(np.float32, copy=False), np.stack(ys)

        return _compat().run((self.geometric, self.photometric), int(seed), work)
