import numpy as np
import pytest

from marsseg.data.synth import make_synthetic
from marsseg.prep.bigrock import BigRockCopies, with_copies
from marsseg.prep.folds import _fold_plan, assign_parts, fold_ids, holdout_split, make_folds, strata


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


def _with_copies(masks):
    sources = np.repeat(np.flatnonzero(_big_rock(masks)), 2)
    copies = BigRockCopies(np.zeros((len(sources), 64, 128), np.uint8), masks[sources], sources)
    _, all_masks, groups = with_copies(np.zeros_like(masks), masks, copies)
    return all_masks, groups


def test_groups_never_cross_folds(masks):
    rng = np.random.default_rng(0)
    all_masks, groups = _with_copies(masks)
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


def test_big_rock_spreads_evenly_over_folds_with_groups(masks):
    all_masks, groups = _with_copies(masks)
    rock = _big_rock(all_masks)
    # A source and its 2 copies move together, and scikit-learn balances each stratum's share (the fold sizes and
    # the sum over strata only break ties), so a fold may hold a big-rock group or two more than another.
    for seed in range(5):
        fold = fold_ids(all_masks, 5, seed, groups=groups)
        per_fold = np.bincount(fold[rock], minlength=5)
        assert per_fold.max() - per_fold.min() <= 6 and per_fold.min() >= 0.95 * rock.sum() / 5, per_fold
        sizes = np.bincount(fold, minlength=5)
        assert sizes.max() - sizes.min() <= 4, sizes


def test_unequal_shares_are_whole_folds_of_a_finer_split(masks):
    assert _fold_plan(np.array([0.85, 0.15]), 400).tolist() == [17, 3]
    assert _fold_plan(np.array([0.8, 0.2]), 400).tolist() == [4, 1]
    assert _fold_plan(np.array([0.9, 0.1]), 3).tolist() == [2, 1]  # K is capped by the number of groups
    assert _fold_plan(np.full(4, 0.25), 400).tolist() == [1, 1, 1, 1]
    part = assign_parts(masks, 2, 0, weights=[0.75, 0.25])
    assert abs((part == 1).sum() - 100) <= 2
