"""Stratified, group-aware splits, deterministic per seed, built on scikit-learn's `StratifiedGroupKFold`.

Each image gets a stratum: (dominant scored class, contains big rock). Strata smaller than the number
of folds are pooled, so the rare class spreads evenly over folds. With `groups` (e.g. an augmented
copy's source index) a whole group lands in one part: an image and its copies never cross folds.
A weighted split (the hold-out) is a K-fold split whose folds are shared out between the parts.
"""

from __future__ import annotations

import warnings

import numpy as np

from marsseg.competition import MARS, Competition

RARE_CLASS = 4  # big rock
# The finest fold grid a weighted split is cut from: shares land within 1/40 of the asked ones (0.15 -> 3/20).
_MAX_SPLITS = 20


def strata(masks: np.ndarray, competition: Competition = MARS, rare_class: int = RARE_CLASS) -> np.ndarray:
    """Per image: 2 * dominant scored class + (rare class present); images with no scored pixel -> dominant 0."""
    k = competition.num_classes
    counts = np.stack([(masks == c).sum(axis=(1, 2)) for c in range(k)], axis=1)
    scored = list(competition.scored_classes)
    dominant = np.where(counts[:, scored].sum(axis=1) > 0, np.asarray(scored)[counts[:, scored].argmax(axis=1)], 0)
    return (2 * dominant + (counts[:, rare_class] > 0)).astype(np.int64)


def _group_ids(n: int, groups) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups has shape {groups.shape}, expected ({n},)")
    return np.unique(groups, return_inverse=True)[1]


def _pool_small(labels: np.ndarray, minimum: int) -> np.ndarray:
    """Merge strata with fewer than `minimum` members into one pooled stratum (-1)."""
    values, counts = np.unique(labels, return_counts=True)
    small = values[counts < minimum]
    return np.where(np.isin(labels, small), -1, labels)


def _fold_plan(weights: np.ndarray, n_groups: int) -> np.ndarray:
    """Folds per part: the split into K folds (K <= _MAX_SPLITS and <= n_groups, the smallest K on ties) whose
    whole-fold shares come nearest `weights`; every part gets at least one fold. Equal weights -> one fold each.
    Hand-written: scikit-learn has no weighted stratified group split (GroupShuffleSplit does not stratify)."""
    n_parts = len(weights)
    best_error, best = np.inf, np.ones(n_parts, np.int64)
    for k in range(n_parts, max(n_parts, min(_MAX_SPLITS, n_groups)) + 1):
        counts = np.maximum(np.floor(weights * k).astype(np.int64), 1)
        while counts.sum() < k:  # largest remainder first
            counts[np.argmax(weights * k - counts)] += 1
        while counts.sum() > k:
            counts[np.argmin(np.where(counts > 1, weights * k - counts, np.inf))] -= 1
        error = np.abs(counts / k - weights).max()
        if error < best_error - 1e-12:
            best_error, best = error, counts
    return best


def assign_parts(masks: np.ndarray, n_parts: int, seed: int, groups=None, weights=None) -> np.ndarray:
    """Part id 0..n_parts-1 per image, balanced per stratum and in total; a group never splits.

    `weights` (per part, summing to 1) sets each part's target share; equal by default. Unequal shares are
    whole folds of a finer split (see `_fold_plan`), so a part's share is the nearest one K <= 20 folds allow.
    """
    # Imported here: scikit-learn is heavy, and commands that make no split (validate, score) must start fast.
    from sklearn.model_selection import StratifiedGroupKFold

    n = len(masks)
    gid = _group_ids(n, groups)
    n_groups = int(gid.max()) + 1 if n else 0
    weights = np.full(n_parts, 1.0 / n_parts) if weights is None else np.asarray(weights, float) / np.sum(weights)
    folds_per_part = _fold_plan(weights, n_groups)
    k = int(folds_per_part.sum())
    if n_groups < k:
        raise ValueError(f"{k} parts need at least {k} images (or groups), got {n_groups}")
    labels = _pool_small(strata(masks), k)
    # The seed shuffles the groups by relabelling them (scikit-learn visits groups in label order and keeps that
    # order among ties) instead of through shuffle=True: until scikit-learn PR #32540 (late 2025; 1.2 has the bug)
    # shuffle=True permuted the per-group class counts but not the group ids, so its folds were not stratified.
    # Relabelling gives the same folds on every scikit-learn version since 1.0.
    shuffled = np.random.default_rng(seed).permutation(max(n_groups, 1))[gid]
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=False)
    fold = np.empty(n, np.int64)
    with warnings.catch_warnings():
        # A pooled stratum may still hold fewer images than folds; it is spread as far as it goes.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for f, (_, val) in enumerate(splitter.split(np.zeros((n, 1)), labels, shuffled)):
            fold[val] = f
    return np.repeat(np.arange(n_parts), folds_per_part)[fold]


def make_folds(masks: np.ndarray, k: int, seed: int, groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """K stratified folds as (train_idx, val_idx) pairs; every image is validated exactly once."""
    if k < 2:
        raise ValueError(f"k folds must be at least 2, got {k}")
    if len(np.unique(_group_ids(len(masks), groups))) < k:
        raise ValueError(f"{k} folds need at least {k} images (or groups), got {len(masks)}")
    fold = assign_parts(masks, k, seed, groups)
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def fold_ids(masks: np.ndarray, k: int, seed: int, groups=None) -> np.ndarray:
    """The fold each image is validated in (0..k-1)."""
    out = np.empty(len(masks), np.int64)
    for f, (_, val) in enumerate(make_folds(masks, k, seed, groups)):
        out[val] = f
    return out


def holdout_split(masks: np.ndarray, val_fraction: float, seed: int, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train_idx, val_idx), sorted; about `val_fraction` of the images validate, at least one.

    The validation part is m of K stratified group folds, m/K the nearest to `val_fraction` with K <= 20.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    gid = _group_ids(len(masks), groups)
    if len(np.unique(gid)) >= 2:
        part = assign_parts(masks, 2, seed, groups, weights=[1.0 - val_fraction, val_fraction])
    else:
        part = np.zeros(len(masks), np.int64)
    if not (part == 1).any() or not (part == 0).any():  # tiny sets: one group validates, the rest train
        part[:] = 0
        part[gid == gid[np.random.default_rng(seed).integers(len(masks))]] = 1
    return np.flatnonzero(part == 0), np.flatnonzero(part == 1)
