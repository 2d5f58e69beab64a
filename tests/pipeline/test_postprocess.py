import numpy as np
import pytest

from marsseg.pipeline.postprocess import (
    clean_masks,
    cross_fitted_bias_score,
    decide,
    fit_class_bias,
    labels_from_probs,
    predict_tta,
)
from marsseg.submission.scoring import score_masks


def test_labels_never_predict_the_ignored_background_by_default():
    probs = np.zeros((1, 2, 2, 5), np.float32)
    probs[..., 0] = 0.9  # background most likely everywhere
    probs[0, 0, 0, 3] = 0.1
    probs[0, 1, 1, 4] = 0.05
    labels = labels_from_probs(probs)
    assert labels.dtype == np.uint8 and (labels > 0).all()
    assert labels[0, 0, 0] == 3 and labels[0, 1, 1] == 4
    assert (labels_from_probs(probs, allow_background=True) == 0).all()


def test_small_components_take_the_surrounding_label():
    masks = np.ones((2, 16, 16), np.uint8)
    masks[0, 5:7, 5:7] = 3  # 4 pixels: dropped
    masks[0, 10:14, 2:6] = 2  # 16 pixels: kept
    masks[1, 5:7, 5:7] = 3  # the same spot in the next image is a different component
    masks[1, 0:16, 12:16] = 4  # big region, kept
    out = clean_masks(masks, min_component=5, max_hole=0)
    assert (out[0, 5:7, 5:7] == 1).all()
    assert (out[0, 10:14, 2:6] == 2).all()
    assert (out[1, 5:7, 5:7] == 1).all(), "components must not connect across images"
    assert (out[1, :, 12:16] == 4).all()
    assert out.dtype == np.uint8 and masks[0, 5, 5] == 3, "input left untouched"


def test_diagonal_pixels_are_separate_components():
    masks = np.ones((1, 8, 8), np.uint8)
    masks[0, 2, 2] = masks[0, 3, 3] = 2  # 4-connectivity: two single pixels, not one pair
    out = clean_masks(masks, min_component=2, max_hole=0)
    assert (out == 1).all()


def test_enclosed_holes_up_to_the_limit_are_filled():
    masks = np.full((1, 20, 20), 2, np.uint8)
    masks[0, 4:7, 4:7] = 1  # 9-pixel hole inside bedrock (2)
    masks[0, 12:16, 12:16] = 3  # 16-pixel hole: larger than the limit
    masks[0, 0:3, 10:13] = 4  # touches the border: not a hole
    out = clean_masks(masks, min_component=1, max_hole=9)
    assert (out[0, 4:7, 4:7] == 2).all()
    assert (out[0, 12:16, 12:16] == 3).all()
    assert (out[0, 0:3, 10:13] == 4).all()
    assert (clean_masks(masks, min_component=1, max_hole=8)[0, 4:7, 4:7] == 1).all()


def test_clean_masks_changes_nothing_when_disabled():
    rng = np.random.default_rng(0)
    masks = rng.integers(1, 5, (3, 64, 128)).astype(np.uint8)
    assert np.array_equal(clean_masks(masks, min_component=1, max_hole=0), masks)


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def test_flip_tta_is_exact_for_a_flip_symmetric_model():
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(2, 5))
    x = rng.random((3, 8, 12, 2)).astype(np.float32)

    def symmetric(batch):  # per-pixel map plus a left-right symmetric smoothing: commutes with the flip
        z = batch @ weights
        z = z + 0.5 * (np.roll(z, 1, axis=2) + np.roll(z, -1, axis=2))
        return _softmax(z)

    np.testing.assert_allclose(predict_tta(symmetric, x), symmetric(x), atol=1e-6)


def test_flip_tta_unflips_the_flipped_prediction():
    rng = np.random.default_rng(2)
    x = rng.random((2, 4, 6, 1)).astype(np.float32)
    columns = np.linspace(0, 1, 6)[None, None, :, None]

    def lopsided(batch):  # depends on the column: not symmetric
        return _softmax(np.concatenate([batch * columns, 1 - batch], axis=-1))

    expected = 0.5 * (lopsided(x) + lopsided(x[:, :, ::-1])[:, :, ::-1])
    np.testing.assert_allclose(predict_tta(lopsided, x), expected, atol=1e-7)
    assert not np.allclose(predict_tta(lopsided, x), lopsided(x))
    calls = []
    counted = lambda batch: (calls.append(len(batch)), lopsided(batch))[1]  # noqa: E731
    np.testing.assert_allclose(predict_tta(counted, x, plain=lopsided(x)), expected, atol=1e-7)
    assert calls == [2], "with the plain prediction given, only the flipped pass runs"


def test_decide_keeps_auto_steps_only_when_they_help():
    assert decide("auto", 0.5, 0.6) and not decide("auto", 0.6, 0.5) and not decide("auto", 0.5, 0.5)
    assert decide("on", 0.6, 0.5) and not decide("off", 0.5, 0.6)
    from marsseg.errors import ConfigError

    with pytest.raises(ConfigError):
        decide("maybe", 0.5, 0.6)


def _under_predicted_big_rock(n_images=8, seed=0):
    """Soil pixels at p(soil) 0.6 / p(big rock) 0.4, big-rock pixels at 0.55 / 0.45: the argmax never says big rock,
    a shift of log-odds between log(0.55/0.45) = 0.20 and log(0.6/0.4) = 0.41 in its favour separates them all."""
    rng = np.random.default_rng(seed)
    masks = np.where(rng.random((n_images, 8, 8)) < 0.2, 4, 1).astype(np.uint8)
    masks[:, 0, 0] = 0  # an unlabelled pixel, predicted anything, scores nothing
    probs = np.zeros((*masks.shape, 5), np.float32)
    rock = masks == 4
    probs[..., 1] = np.where(rock, 0.55, 0.6)
    probs[..., 4] = np.where(rock, 0.45, 0.4)
    return probs, masks


def test_class_bias_recovers_a_rare_class_the_argmax_never_predicts():
    probs, masks = _under_predicted_big_rock()
    assert score_masks(masks, labels_from_probs(probs))["iou"][4] == 0.0
    bias, fitted = fit_class_bias(probs, masks)
    assert bias.shape == (5,) and bias[0] == 0
    shift = bias[4] - bias[1]
    assert np.log(0.55 / 0.45) < shift < np.log(0.6 / 0.4)
    labels = labels_from_probs(probs, class_bias=bias)
    assert ((labels == masks) | (masks == 0)).all() and fitted == 1.0
    assert cross_fitted_bias_score(probs, masks) == 1.0, "the shift is a property of every image, so it carries over"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_bias_never_scores_below_the_plain_argmax_where_it_was_fitted(seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(5), size=(4, 16, 16)).astype(np.float32)
    masks = rng.integers(0, 5, (4, 16, 16)).astype(np.uint8)
    plain = score_masks(masks, labels_from_probs(probs))["miou"]
    bias, fitted = fit_class_bias(probs, masks)
    assert fitted >= plain - 1e-12
    assert score_masks(masks, labels_from_probs(probs, class_bias=bias))["miou"] == pytest.approx(fitted)
    np.testing.assert_array_equal(labels_from_probs(probs, class_bias=np.zeros(5)), labels_from_probs(probs))


def test_class_bias_searches_a_subset_of_a_large_hold_out():
    probs, masks = _under_predicted_big_rock(n_images=64)
    bias, fitted = fit_class_bias(probs, masks, max_pixels=500)
    assert np.log(0.55 / 0.45) < bias[4] - bias[1] < np.log(0.6 / 0.4) and fitted == 1.0


def test_a_bias_favours_its_class_by_that_many_log_odds():
    probs = np.zeros((1, 1, 2, 5), np.float32)
    probs[0, 0, 0, [2, 3]] = [0.5, 0.4]
    probs[0, 0, 1, [2, 3]] = [0.7, 0.3]
    bias = np.array([0, 0, 0, 0.5, 0], np.float32)  # e^0.5 = 1.65: 0.4 x 1.65 > 0.5, 0.3 x 1.65 < 0.7
    assert labels_from_probs(probs, class_bias=bias).tolist() == [[[3, 2]]]
