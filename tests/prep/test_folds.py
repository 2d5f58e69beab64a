import numpy as np
import pytest

from marsseg.data.synth import make_synthetic
from marsseg.prep.folds import fold_ids, holdout_split, make_folds, strata


@pytest.fixture(scope="module")
def masks():
    return make_synthetic(n_train=400, n_test=1, seed=5, outlier_fraction=0.0).masks


def _big_rock(masks):
    return (masks == 4).any(axis=(1, 2))


def test_folds_partition_every_image_once(masks):
    folds = make_folds(masks, 5, seed=0)
    assert len(folds) == 5
    validated = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(validated), np.arange(len(masks)))
    for train, val in folds:
        assert not set(train) & set(val)
        assert len(train) + len(val) == len(masks)


def test_folds_are_balanced_in_size_and_strata(masks):
    folds = make_folds(masks, 5, seed=1)
    sizes = [len(val) for _, val in folds]
    assert max(sizes) - min(sizes) <= 1
    overall = _big_rock(masks).mean()
    labels = strata(masks)
    for _, val in folds:
        assert abs(_big_rock(masks[val]).mean() - overall) <= 0.02
        for stratum in np.unique(labels):
            expected = (labels == stratum).sum() / 5
            assert abs((labels[val] == stratum).sum() - expected) <= 1


def test_folds_are_deterministic_per_seed(masks):
    a, b, c = fold_ids(masks, 4, seed=3), fold_ids(masks, 4, seed=3), fold_ids(masks, 4, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_groups_never_cross_folds(masks):
    from marsseg.prep.augment import BigRockCopies, with_copies

    rng = np.random.default_rng(0)
    sources = np.repeat(np.flatnonzero(_big_rock(masks)), 2)
    copies = BigRockCopies(np.zeros((len(sources), 64, 128), np.uint8), masks[sources], sources)
    _, all_masks, groups = with_copies(np.zeros_like(masks), masks, copies)
    shuffled = rng.permutation(len(groups))  # copies need not follow their source
    all_masks, groups = all_masks[shuffled], groups[shuffled]
    for k in (2, 5):
        for train, val in make_folds(all_masks, k, seed=2, groups=groups):
            assert not set(groups[train]) & set(groups[val])
    train, val = holdout_split(all_masks, 0.2, seed=2, groups=groups)
    assert not set(groups[train]) & set(groups[val])
    assert abs(len(val) / len(groups) - 0.2) < 0.03


def test_holdout_is_stratified_and_keeps_the_placeholder_signature(masks):
    train, val = holdout_split(masks, 0.15, 0)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(masks)))
    assert abs(len(val) - 0.15 * len(masks)) <= 3
    assert abs(_big_rock(masks[val]).mean() - _big_rock(masks).mean()) <= 0.03
    again = holdout_split(masks, 0.15, 0)
    assert np.array_equal(val, again[1]) and np.array_equal(train, again[0])


def test_holdout_of_a_tiny_set_still_validates_one_image(masks):
    train, val = holdout_split(masks[:3], 0.1, seed=0)
    assert len(val) >= 1 and len(train) >= 1


def test_bad_arguments_raise(masks):
    with pytest.raises(ValueError):
        make_folds(masks, 1, 0)
    with pytest.raises(ValueError):
        make_folds(masks[:3], 5, 0)
    with pytest.raises(ValueError):
        holdout_split(masks, 1.5, 0)


def test_strata_use_dominant_class_and_big_rock():
    masks = np.zeros((3, 64, 128), np.uint8)
    masks[0] = 2
    masks[1] = 3
    masks[1, :2, :2] = 4
    assert strata(masks).tolist() == [4, 7, 0]
