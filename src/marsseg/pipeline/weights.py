"""Member weights for `marsseg ensemble`: equal, given, or chosen on the tuning part.

    scheme = parse_weights("tuned")                      # "equal", "tuned" or a tuple such as (0.7, 0.3)
    weights, search = tuned_weights(tuning_probs, tuning_masks)   # tuning_probs: one (plain, tta) per member

"tuned" scores every weight vector on a simplex grid (steps of 1/STEPS) by the tuning part's bare mIoU (the
leaderboard's rule, argmax over the scored classes, flip-TTA'd probabilities where every member has them) and keeps
the best. Equal weights win ties and any vector that does not beat them, so a small tuning part's noise moves no
weight for nothing. The reporting part never enters: its figure stays one that decided nothing.
"""

from __future__ import annotations

from math import comb

import numpy as np

from marsseg.errors import EnsembleError
from marsseg.pipeline.holdout import argmax_score

STEPS = 10  # grid resolution: weights in tenths
MAX_CANDIDATES = 1000  # more members get a coarser grid, so the search stays seconds long


def parse_weights(text: str) -> str | tuple[float, ...]:
    """`--weights`: "equal", "tuned", or comma-separated non-negative numbers (normalised to sum 1)."""
    text = text.strip()
    if text in ("equal", "tuned"):
        return text
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not np.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise EnsembleError(
            f"--weights {text!r}: give equal, tuned, or one non-negative number per run, e.g. --weights 0.6,0.4"
        )
    total = sum(values)
    return tuple(v / total for v in values)


def simplex_grid(n: int, steps: int) -> np.ndarray:
    """(m, n) weight vectors in multiples of 1/steps that sum to 1, nearest to equal weights first."""
    if n == 1:
        return np.ones((1, 1))

    def compositions(total, parts):
        if parts == 1:
            yield (total,)
            return
        for first in range(total + 1):
            for rest in compositions(total - first, parts - 1):
                yield (first, *rest)

    grid = np.array(list(compositions(steps, n)), np.float64) / steps
    distance = np.abs(grid - 1.0 / n).sum(axis=1)
    return grid[np.argsort(distance, kind="stable")]


def grid_steps(n: int) -> int:
    """The finest steps (at most STEPS) whose grid for `n` members has at most MAX_CANDIDATES vectors."""
    steps = STEPS
    while steps > 1 and comb(steps + n - 1, n - 1) > MAX_CANDIDATES:
        steps -= 1
    return steps


def combine(probs: list[tuple], weights) -> tuple:
    """The weighted mean of members' (plain, flip-TTA'd or None) probabilities, in their dtype. Equal weights are the
    plain mean (sum / n), as the ensemble always computed it, so old combinations reproduce byte for byte."""
    if len(set(map(float, weights))) == 1:
        plain = sum(p for p, _ in probs) / len(probs)
        tta = None if any(t is None for _, t in probs) else sum(t for _, t in probs) / len(probs)
        return plain, tta
    plain = sum(float(w) * p for w, (p, _) in zip(weights, probs))
    tta = None if any(t is None for _, t in probs) else sum(float(w) * t for w, (_, t) in zip(weights, probs))
    return plain, tta


def rows_of(probs: list[tuple], index: np.ndarray) -> list[tuple]:
    """Each member's (plain, flip-TTA'd or None) probabilities restricted to `index`."""
    return [(plain[index], None if tta is None else tta[index]) for plain, tta in probs]


def tuned_weights(probs: list[tuple], masks: np.ndarray) -> tuple[tuple[float, ...], dict]:
    """The weight vector that scores best on the tuning rows (`probs` and `masks` restricted to them), and the search:
    candidates tried, the best mIoU and equal weights' mIoU."""
    n = len(probs)
    use_tta = all(t is not None for _, t in probs)
    scored = [(t if use_tta else p, None) for p, t in probs]  # only what argmax_score reads is mixed

    def score_of(weights):
        return argmax_score(*combine(scored, weights), masks)[0]

    equal = np.full(n, 1.0 / n)
    equal_score = score_of(equal)
    best, best_score = equal, equal_score
    grid = simplex_grid(n, grid_steps(n))
    for weights in grid:
        score = score_of(weights)
        if score > best_score:  # strictly better: equal weights (and vectors nearer them) win ties
            best, best_score = weights, score
    search = {"candidates": int(len(grid)), "tuning_miou": float(best_score), "tuning_miou_equal": float(equal_score)}
    return tuple(float(w) for w in best), search
