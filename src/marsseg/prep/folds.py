"""Stratified, group-aware splits, deterministic per seed.

Each image gets a stratum: (dominant scored class, contains big rock). Strata smaller than the number
of parts are pooled, so the rare class spreads evenly over folds. With `groups` (e.g. an augmented
copy's source index) a whole group lands in one part: an image and its copies never cross folds.
"""

from __future__ import annotations

import numpy as np

from marsseg.competition import MARS, Competition

RARE_CLASS = 4  # big rock


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
    """Merge strata with fewer than `minimum` units into one pooled stratum (-1)."""
    values, counts = np.unique(labels, return_counts=True)
    small = values[counts < minimum]
    return np.where(np.isin(labels, small), -1, labels)


def assign_parts(masks: np.ndarray, n_parts: int, seed: int, groups=None, weights=None) -> np.ndarray:
    """Part id 0..n_parts-1 per image, balanced per stratum and in total; a group never splits.

    `weights` (per part, summing to 1) sets each part's target share; equal by default.
    """
    n = len(masks)
    gid = _group_ids(n, groups)
    n_groups = gid.max() + 1 if n else 0
    image_strata = strata(masks)
    # A group's stratum is that of its first image (the original precedes its copies).
    first = np.full(n_groups, n, np.int64)
    np.minimum.at(first, gid, np.arange(n))
    group_strata = _pool_small(image_strata[first], n_parts)
    group_size = np.bincount(gid, minlength=n_groups)
    weights = np.full(n_parts, 1.0 / n_parts) if weights is None else np.asarray(weights, float) / np.sum(weights)

    rng = np.random.default_rng(seed)
    part_of_group = np.empty(n_groups, np.int64)
    total = np.zeros(n_parts)
    for stratum in np.unique(group_strata):
        members = np.flatnonzero(group_strata == stratum)
        members = members[rng.permutation(len(members))]
        members = members[np.argsort(-group_size[members], kind="stable")]  # big groups first, ties shuffled
        in_stratum = np.zeros(n_parts)
        stratum_size = group_size[members].sum()
        tie_break = rng.permutation(n_parts)
        for g in members:
            # The part furthest below its share, in this stratum first, then overall.
            deficit = (in_stratum + group_size[g]) / (weights * stratum_size) + 1e-3 * total / (weights * n)
            part = min(range(n_parts), key=lambda p: (deficit[p], tie_break[p]))
            part_of_group[g] = part
            in_stratum[part] += group_size[g]
            total[part] += group_size[g]
    return part_of_group[gid]


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
    """Stratified (train_idx, val_idx), sorted; about `val_fraction` of the images validate, at least one."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    part = assign_parts(masks, 2, seed, groups, weights=[1.0 - val_fraction, val_fraction])
    if not (part == 1).any():  # tiny sets: move one group to validation
        part[:] = 0
        gid = _group_ids(len(masks), groups)
        part[gid == gid[np.random.default_rng(seed).integers(len(masks))]] = 1
    return np.flatnonzero(part == 0), np.flatnonzero(part == 1)
