"""Copy-paste of big-rock regions: the rare class pasted into other training images, labels exact.

Big rock covers about 1% of pixels in about 30% of images; the public write-ups of this competition gained from
pasting or cropping big-rock regions. A donor is one connected big-rock component of a training image: its
bounding-box crop of pixels and its component mask. Pasting flips it at random, places it at a random position
inside the target and copies exactly the component's pixels: the target's image takes the donor's grey values
there and its mask says big rock there, nothing else changes. Donors come from the sequence's own training
images, so no fold model sees a rock from an image it predicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marsseg.competition import MARS

BIG_ROCK = MARS.num_classes - 1
MIN_PIXELS = 8  # smaller components are label noise more often than rocks


@dataclass(frozen=True)
class Donor:
    pixels: np.ndarray  # (h, w) grey values of the bounding box
    region: np.ndarray  # (h, w) bool: the component inside the box


def bigrock_donors(images: np.ndarray, masks: np.ndarray, min_pixels: int = MIN_PIXELS) -> list[Donor]:
    """Every connected big-rock component (8-connectivity) of at least `min_pixels` pixels, as a Donor."""
    from scipy import ndimage  # scipy is heavy to import; only training needs donors

    donors = []
    for index in np.flatnonzero((masks == BIG_ROCK).any(axis=(1, 2))):
        labelled, _ = ndimage.label(masks[index] == BIG_ROCK, structure=np.ones((3, 3), bool))
        for number, box in enumerate(ndimage.find_objects(labelled), start=1):
            region = labelled[box] == number
            if region.sum() >= min_pixels:
                donors.append(Donor(images[index][box].copy(), region))
    return donors


def paste(image: np.ndarray, mask: np.ndarray, donor: Donor, rng: np.random.Generator):
    """(image, mask) copies with `donor` pasted at a random position and flip; the inputs are left unchanged."""
    pixels, region = donor.pixels, donor.region
    if rng.random() < 0.5:
        pixels, region = pixels[:, ::-1], region[:, ::-1]
    if rng.random() < 0.5:
        pixels, region = pixels[::-1], region[::-1]
    h, w = region.shape
    top = int(rng.integers(0, image.shape[0] - h + 1))
    left = int(rng.integers(0, image.shape[1] - w + 1))
    image, mask = image.copy(), mask.copy()
    window = (slice(top, top + h), slice(left, left + w))
    image[window][region] = pixels[region]
    mask[window][region] = BIG_ROCK
    return image, mask


def paste_batch(images, masks, donors: list[Donor], rate: float, rng: np.random.Generator):
    """Each image gets one donor pasted with probability `rate` (donors larger than the image are skipped)."""
    if not donors or rate <= 0:
        return images, masks
    images, masks = images.copy(), masks.copy()
    for i in np.flatnonzero(rng.random(len(images)) < rate):
        donor = donors[int(rng.integers(len(donors)))]
        if donor.region.shape[0] <= images.shape[1] and donor.region.shape[1] <= images.shape[2]:
            images[i], masks[i] = paste(images[i], masks[i], donor, rng)
    return images, masks
