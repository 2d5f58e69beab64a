"""Ensemble weights: the grid, the tuning part's choice (equal weights win ties), and `--weights` parsing."""

import numpy as np
import pytest

from marsseg.errors import EnsembleError
from marsseg.pipeline.weights import combine, grid_steps, parse_weights, rows_of, simplex_grid, tuned_weights


def _one_hot(labels: np.ndarray, k: int = 5) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[labels]


@pytest.mark.parametrize(("n", "steps", "count"), [(1, 10, 1), (2, 10, 11), (3, 10, 66), (4, 4, 35)])
def test_the_grid_holds_every_vector_of_tenths_summing_to_one_nearest_equal_first(n, steps, count):
    grid = simplex_grid(n, steps)
    assert grid.shape == (count, n)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert len({tuple(np.round(g * steps).astype(int)) for g in grid}) == count
    distance = np.abs(grid - 1.0 / n).sum(axis=1)
    assert (np.diff(distance) >= -1e-12).all()


def test_many_members_get_a_coarser_grid_that_stays_small():
    assert grid_steps(2) == 10 and grid_steps(4) == 10
    for n in (5, 6, 8):
        assert len(simplex_grid(n, grid_steps(n))) <= 1000 and grid_steps(n) < 10


def _members(seed=0):
    """Member a right everywhere, member b confidently wrong on half the pixels (one class up)."""
    rng = np.random.default_rng(seed)
    masks = rng.integers(1, 5, size=(6, 8, 8))
    wrong = np.where(rng.random(masks.shape) < 0.5, masks % 4 + 1, masks)
    a, b = _one_hot(masks) * 0.6 + 0.1, _one_hot(wrong) * 0.9 + 0.02
    return masks, [(a, a), (b, b)]


def test_tuned_weights_lean_on_the_member_that_is_right_on_the_tuning_rows():
    masks, probs = _members()
    weights, search = tuned_weights(probs, masks)
    assert weights[0] > weights[1] and sum(weights) == pytest.approx(1.0)
    assert search["tuning_miou"] == pytest.approx(1.0) and search["tuning_miou_equal"] < 0.9
    assert search["candidates"] == 11


def test_equal_weights_are_kept_when_nothing_beats_them():
    masks, probs = _members()
    same = [probs[0], probs[0]]
    weights, search = tuned_weights(same, masks)
    assert weights == (0.5, 0.5) and search["tuning_miou"] == search["tuning_miou_equal"]


def test_only_the_rows_given_decide_the_weights():
    """The ensemble passes the tuning rows alone: which member wins the other rows cannot move the choice."""
    masks, (a, b) = _members()
    tune, report = np.arange(3), np.arange(3, 6)
    # on the reporting rows the two members swap: b is right there, a confidently wrong
    a_plain, b_plain = a[0].copy(), b[0].copy()
    a_plain[report], b_plain[report] = b[0][report], a[0][report]
    probs = [(a_plain, a_plain), (b_plain, b_plain)]
    weights, _ = tuned_weights(rows_of(probs, tune), masks[tune])
    assert weights[0] > weights[1]
    flipped, _ = tuned_weights(rows_of(probs, report), masks[report])
    assert flipped[1] > flipped[0]  # the same search on the other rows leans the other way


def test_combine_is_the_weighted_mean_in_the_members_dtype_and_keeps_a_missing_tta_missing():
    p, q = np.ones((1, 2, 2, 5), np.float32), np.zeros((1, 2, 2, 5), np.float32)
    plain, tta = combine([(p, p), (q, None)], np.array([0.25, 0.75]))
    np.testing.assert_allclose(plain, 0.25)
    assert tta is None and plain.dtype == np.float32


def test_equal_weights_are_the_plain_mean_byte_for_byte():
    rng = np.random.default_rng(1)
    members = [rng.random((2, 4, 4, 5), dtype=np.float32) for _ in range(3)]
    plain, tta = combine([(m, m) for m in members], (1 / 3, 1 / 3, 1 / 3))
    assert plain.tobytes() == ((members[0] + members[1] + members[2]) / 3).tobytes() == tta.tobytes()


@pytest.mark.parametrize(("text", "expected"), [("equal", "equal"), ("tuned", "tuned"), ("3,1", (0.75, 0.25))])
def test_weights_parse_to_a_scheme_or_a_normalised_vector(text, expected):
    assert parse_weights(text) == expected


@pytest.mark.parametrize("text", ["", "a,b", "1,-1", "0,0", "nan,1", "best"])
def test_bad_weights_are_a_one_line_error_saying_what_to_give(text):
    with pytest.raises(EnsembleError, match="give equal, tuned, or one non-negative number per run"):
        parse_weights(text)
