import numpy as np
import pytest

from marsseg.data.synth import make_synthetic
from marsseg.prep.bigrock import bigrock_copies, load_bigrock, save_bigrock, with_copies


@pytest.fixture(scope="module")
def data():
    s = make_synthetic(n_train=96, n_test=1, seed=9)
    return s.images, s.masks


def test_bigrock_copies_remember_their_source(data):
    images, masks = data
    copies = bigrock_copies(images, masks, copies=2, seed=0)
    rock = np.flatnonzero((masks == 4).any(axis=(1, 2)))
    assert np.array_equal(np.unique(copies.source_index), rock)
    assert len(copies.images) == 2 * len(rock) and copies.images.dtype == np.uint8
    assert copies.masks.max() <= 4
    again = bigrock_copies(images, masks, copies=2, seed=0)
    assert np.array_equal(copies.images, again.images)
    all_images, all_masks, groups = with_copies(images, masks, copies)
    assert len(all_images) == len(all_masks) == len(groups) == len(images) + len(copies.images)
    assert np.array_equal(groups[len(images) :], copies.source_index)


def test_no_big_rock_or_no_copies_gives_an_empty_set(data):
    images, masks = data
    for copies in (bigrock_copies(images, np.ones_like(masks), 2), bigrock_copies(images, masks, 0)):
        assert copies.images.shape == (0, 64, 128) and len(copies.source_index) == 0
        _, _, groups = with_copies(images, masks, copies)
        assert np.array_equal(groups, np.arange(len(images)))


def test_saved_copies_load_back(tmp_path, data):
    images, masks = data
    copies = bigrock_copies(images[:24], masks[:24], copies=1, seed=3)
    loaded = load_bigrock(save_bigrock(tmp_path / "x.bigrock.npz", copies))
    for name in ("images", "masks", "source_index"):
        assert np.array_equal(getattr(loaded, name), getattr(copies, name))
