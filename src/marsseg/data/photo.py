"""The second stand-in's textures: crops of real photographs, on the procedural stand-in's class layout.

The procedural stand-in (`synth`, version 2) draws every texture from smooth random fields, and the kit's preset
choices were tuned on it. A choice that only fits those fields should not survive a set whose textures come from
somewhere else, so this one cuts them from the two photographs scikit-learn ships (`load_sample_images`: china.jpg
and flower.jpg, 427x640): soil from the foliage, bedrock from the pagoda's tiles and beams, sand from the blurred
leaves behind the flower, big rocks from the dahlia's petals. Each image takes its own crop of each source at its
own scale (0.6-1.3 source pixels a pixel) and side (a mirrored photograph is still one), with the texture's
contrast the photograph's own. Big rocks are irregular outlines rather than ellipses, shaded and casting a shadow
away from one light per image, as in the procedural set. The class shares, the unlabelled background, the
exposure changes and the planted outliers are the shared generator's (`synth`), so the class statistics match
the real set's as version 2's do.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from marsseg.data.synth import cast_shadow, class_levels, rock_geometry, rock_layout

# (photograph, rows, columns) of each texture's source in sklearn's sample images (0 china.jpg, 1 flower.jpg).
SOURCES = {
    "soil": (0, slice(290, 427), slice(330, 640)),  # the trees at the lower right: fine, leafy
    "bedrock": (0, slice(60, 390), slice(70, 350)),  # the pagoda: tiles, beams and railings in lines
    "sand": (1, slice(0, 427), slice(0, 170)),  # the out-of-focus leaves: smooth, low contrast
    "rock": (1, slice(90, 350), slice(175, 440)),  # the dahlia: rounded petals with their own shading
}
# Brightness of a texture's deviation from its crop's mean, per source grey level: the photograph's contrast.
CONTRAST = {"soil": 0.45, "bedrock": 0.35, "sand": 0.8, "rock": 0.3}
SCALE = (0.6, 1.3)  # source pixels per image pixel


@cache
def _source(name: str) -> np.ndarray:
    """The grey (float32) source region of one texture."""
    from sklearn.datasets import load_sample_images

    photo, rows, cols = SOURCES[name]
    rgb = load_sample_images().images[photo][rows, cols].astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def crops(rng, name: str, n: int, h: int, w: int) -> np.ndarray:
    """(n, h, w) float32 crops of a texture's source, each at its own position, scale and side, bilinear, minus
    its own mean and times the texture's CONTRAST."""
    source = _source(name)
    sh, sw = source.shape
    scale = rng.uniform(*SCALE, n).astype(np.float32)
    scale = np.minimum(scale, min((sh - 2) / h, (sw - 2) / w))
    y0 = rng.uniform(0, 1, n) * (sh - 1 - scale * h)
    x0 = rng.uniform(0, 1, n) * (sw - 1 - scale * w)
    rows = y0[:, None] + scale[:, None] * np.arange(h, dtype=np.float32)  # (n, h)
    cols = x0[:, None] + scale[:, None] * np.arange(w, dtype=np.float32)  # (n, w)
    mirror = rng.random(n) < 0.5
    cols = np.where(mirror[:, None], cols[:, ::-1], cols)
    r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    fr, fc = (rows - r0)[:, :, None], (cols - c0)[:, None, :]
    r, c = r0[:, :, None], c0[:, None, :]
    top = source[r, c] * (1 - fc) + source[r, c + 1] * fc
    bottom = source[r + 1, c] * (1 - fc) + source[r + 1, c + 1] * fc
    out = top * (1 - fr) + bottom * fr
    return ((out - out.mean(axis=(1, 2), keepdims=True)) * CONTRAST[name]).astype(np.float32)


def photo_textures(rng, labels, yy, xx):
    """Soil, bedrock and sand from their photographs at per-image levels (`synth.class_levels`), and the rock
    crops the big rocks take their surface from."""
    n, h, w = labels.shape
    level = class_levels(rng, n)
    soil = level[:, 0] + crops(rng, "soil", n, h, w)
    bedrock = level[:, 1] + crops(rng, "bedrock", n, h, w)
    sand = level[:, 2] + crops(rng, "sand", n, h, w)
    return np.where(labels == 1, soil, np.where(labels == 2, bedrock, sand)), crops(rng, "rock", n, h, w)


def photo_rocks(rng, image, labels, yy, xx, petals):
    """Big rocks with irregular outlines (an ellipse whose radius wobbles with the angle), shaded from one light
    per image, casting a shadow away from it, their surface a crop of the petals."""
    n, h, w = labels.shape
    has_rocks, azimuth = rock_layout(rng, n, h, w)
    for i in np.flatnonzero(has_rocks):
        light = np.cos(azimuth[i]), np.sin(azimuth[i])
        for _ in range(rng.integers(1, 4)):
            rock = cy, cx, ry, rx = rock_geometry(rng, h, w)
            angle = np.arctan2((yy - cy) / ry, (xx - cx) / rx)
            phase = rng.uniform(0, 2 * np.pi, 2)
            radius = 1 + 0.18 * np.cos(2 * angle + phase[0]) + 0.1 * np.cos(3 * angle + phase[1])
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= radius**2
            shadow, shade = cast_shadow(inside, yy, xx, rock, light)
            image[i] = np.where(shadow, image[i] - 40, image[i])
            image[i] = np.where(inside, rng.uniform(85, 150) + 24 * shade + petals[i], image[i])
            labels[i][inside] = 4
