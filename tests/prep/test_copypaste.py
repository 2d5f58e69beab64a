"""Copy-paste of big-rock components keeps labels exact; the flips-only strength; the sequence wiring."""

import numpy as np
import pytest

from marsseg.config import AugmentConfig
from marsseg.errors import ConfigError
from marsseg.prep.copypaste import BIG_ROCK, Donor, bigrock_donors, paste, paste_batch


def _scene():
    images = np.full((2, 64, 128), 50, np.uint8)
    masks = np.ones((2, 64, 128), np.uint8)  # soil everywhere
    masks[0, 10:14, 20:25] = BIG_ROCK  # a 4x5 rock
    images[0, 10:14, 20:25] = np.arange(20, dtype=np.uint8).reshape(4, 5) + 200
    masks[0, 40, 100] = BIG_ROCK  # a 1-pixel speck: below MIN_PIXELS, not a donor
    masks[1, 30:33, 60:62] = 2  # bedrock, no rock
    return images, masks


def test_donors_are_the_connected_rock_components_with_their_pixels():
    images, masks = _scene()
    donors = bigrock_donors(images, masks)
    assert len(donors) == 1
    assert donors[0].region.shape == (4, 5) and donors[0].region.all()
    np.testing.assert_array_equal(donors[0].pixels, images[0, 10:14, 20:25])


@pytest.mark.parametrize("seed", range(6))
def test_paste_changes_exactly_the_component_and_labels_it_big_rock(seed):
    images, masks = _scene()
    region = np.array([[1, 1, 0], [0, 1, 1]], bool)  # an L-ish component inside its box
    donor = Donor(np.array([[201, 202, 9], [9, 205, 206]], np.uint8), region)
    before_image, before_mask = images[1].copy(), masks[1].copy()
    image, mask = paste(images[1], masks[1], donor, np.random.default_rng(seed))
    changed = mask != before_mask
    assert changed.sum() == region.sum()  # every component pixel, nothing else (soil/bedrock there, never rock)
    assert (mask[changed] == BIG_ROCK).all()
    assert set(image[changed].tolist()) == {201, 202, 205, 206}  # the donor's pixels, never its box's background
    assert (image[~changed] == before_image[~changed]).all()
    assert (images[1] == before_image).all() and (masks[1] == before_mask).all()  # inputs untouched


def test_paste_batch_rate_zero_and_one():
    images, masks = _scene()
    donors = bigrock_donors(images, masks)
    rng = np.random.default_rng(0)
    same_images, same_masks = paste_batch(images, masks, donors, 0.0, rng)
    assert same_images is images and same_masks is masks
    _, pasted = paste_batch(images, masks, donors, 1.0, rng)
    assert ((pasted == BIG_ROCK).sum(axis=(1, 2)) > (masks == BIG_ROCK).sum(axis=(1, 2))).all() or (
        (pasted[1] == BIG_ROCK).sum() == 20  # a paste onto image 0 may cover its own rock exactly
    )
    assert (pasted[1] == BIG_ROCK).sum() == 20


def test_sequence_pastes_only_without_extras_and_refuses_a_bad_rate():
    from marsseg.prep.augment import sequence_from_config

    images, masks = _scene()
    cfg = AugmentConfig(strength="none", bigrock_oversample=1.0, workers=1, copy_paste_rate=1.0)
    sequence = sequence_from_config(images, masks, cfg, batch_size=2, seed=3)
    _, y = sequence[0]
    assert (y == BIG_ROCK).sum() > (masks == BIG_ROCK).sum()
    extras = np.zeros((2, 64, 128, 5), np.float32)
    with_extras = sequence_from_config(images, masks, cfg, batch_size=2, seed=3, extras=extras)
    assert with_extras.copy_paste_rate == 0.0 and with_extras.donors == []
    with pytest.raises(ConfigError, match="copy_paste_rate"):
        sequence_from_config(images, masks, AugmentConfig(copy_paste_rate=1.5), batch_size=2)


def test_flips_strength_only_flips():
    from marsseg.prep.augment import Augmenter

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 128), dtype=np.uint8)
    mask = rng.integers(0, 5, (64, 128), dtype=np.uint8)
    augmenter = Augmenter("flips")
    views = {
        "same": image,
        "h": image[:, ::-1],
        "v": image[::-1],
        "hv": image[::-1, ::-1],
    }
    seen = set()
    for seed in range(12):
        x, y = augmenter.batch(image[None], mask[None], seed=seed)
        out = np.rint(x[0, ..., 0] * 255).astype(np.uint8)
        name = next(k for k, v in views.items() if np.array_equal(out, v))  # no brightness, noise or warping
        flipped_mask = {"same": mask, "h": mask[:, ::-1], "v": mask[::-1], "hv": mask[::-1, ::-1]}[name]
        np.testing.assert_array_equal(y[0], flipped_mask)
        seen.add(name)
    assert len(seen) >= 3
