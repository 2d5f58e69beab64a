"""Stage 2's focus on stage 1's big-rock confusions (opt-in): which images count, their sampling weights, the
sequence that draws them, and a run that passes them to stage 2 and says so."""

import numpy as np
import pytest

from marsseg.config import override, preset
from marsseg.pipeline.focus import bigrock_confusion, focus_weights
from marsseg.pipeline.postprocess import labels_from_probs
from tests.conftest import one_line_error, run_cli
from tests.pipeline.fakes import seeded_fake_fit


def _probs_for(labels):
    """(N, H, W, 5) probabilities whose argmax over classes 1-4 is `labels` (background given the most mass, as an
    untrained network might: it is never the answer)."""
    probs = np.full((*labels.shape, 5), 0.05, np.float32)
    probs[..., 0] = 0.5
    np.put_along_axis(probs, labels[..., None].astype(np.int64), 0.3, axis=-1)
    return probs


# One 2x4 image: truth row 0 = [4, 4, 1, 0], row 1 = [2, 2, 3, 4]; background (0) is never counted.
TRUTH = np.array([[[4, 4, 1, 0], [2, 2, 3, 4]]], np.uint8)


@pytest.mark.parametrize(
    ("stage1", "confused"),
    [
        ([[4, 4, 1, 1], [2, 2, 3, 4]], 0),  # right everywhere that is scored (the background pixel does not count)
        ([[4, 4, 1, 4], [2, 2, 3, 4]], 0),  # big rock on the background pixel: not scored, not counted
        ([[1, 4, 1, 1], [2, 2, 3, 4]], 1),  # one big-rock pixel missed
        ([[4, 4, 4, 1], [4, 2, 3, 4]], 2),  # soil and bedrock called big rock
        ([[2, 2, 4, 1], [4, 4, 4, 1]], 7),  # all of it wrong about big rock
        ([[4, 4, 2, 1], [3, 1, 2, 4]], 0),  # wrong, but not about big rock: soil/bedrock/sand mix-ups do not count
    ],
)
def test_confusions_count_labelled_pixels_wrong_about_big_rock(stage1, confused):
    probs = _probs_for(np.array([stage1], np.uint8))
    assert labels_from_probs(probs).tolist() == [stage1], "the stand-in probabilities must give these labels"
    assert bigrock_confusion(TRUTH, probs).tolist() == [confused]


def test_images_with_enough_confusions_get_the_oversampling_weight():
    truth = np.repeat(TRUTH, 3, axis=0)
    stage1 = np.array([TRUTH[0], [[1, 4, 1, 1], [2, 2, 3, 4]], [[2, 2, 4, 1], [4, 4, 4, 1]]], np.uint8)
    probs = _probs_for(stage1)
    on = override(
        preset("smoke"), ["stage2_focus.enabled=true", "stage2_focus.oversample=2.5", "stage2_focus.min_pixels=1"]
    ).stage2_focus
    assert focus_weights(truth, probs, on).tolist() == [1.0, 2.5, 2.5]
    at_two = override(preset("smoke"), ["stage2_focus.enabled=true", "stage2_focus.min_pixels=2"]).stage2_focus
    assert focus_weights(truth, probs, at_two).tolist() == [1.0, 1.0, 3.0], "one wrong pixel is below 2"
    assert focus_weights(truth, probs, preset("smoke").stage2_focus).tolist() == [1.0, 1.0, 1.0], "off: all ones"


def test_mismatched_masks_and_probabilities_are_refused():
    with pytest.raises(ValueError, match="same pixels"):
        bigrock_confusion(TRUTH, np.zeros((1, 2, 3, 5), np.float32))


def test_a_sequence_draws_an_image_as_often_as_its_weights_say():
    from marsseg.config.schema import AugmentConfig
    from marsseg.prep.augment import sequence_from_config

    images, masks = np.zeros((4, 8, 8), np.uint8), np.ones((4, 8, 8), np.uint8)
    masks[1, 0, 0] = 4  # contains big rock: oversampled x2 by the augment settings
    cfg = AugmentConfig(strength="none", bigrock_oversample=2.0, workers=1)
    plain = sequence_from_config(images, masks, cfg, 2, seed=0)
    assert np.bincount(plain.order, minlength=4).tolist() == [1, 2, 1, 1]  # big rock's weight alone
    # Focus factors 3, 3, 1, 1: the weights 3, 6, 1, 1 rescaled to the plain epoch's 5 draws.
    expected = np.array([3.0, 6.0, 1.0, 1.0]) * 5 / 11
    counts = []
    for seed in range(400):
        sequence = sequence_from_config(images, masks, cfg, 2, seed=seed, image_weights=[3.0, 3.0, 1.0, 1.0])
        assert len(sequence.order) == len(plain.order) == 5, "the focus reshapes the draw, not the epoch"
        counts.append(np.bincount(sequence.order, minlength=4))
    mean = np.mean(counts, axis=0)
    np.testing.assert_allclose(mean, expected, atol=0.12)
    assert mean[0] / mean[2] > 2.5, "a focused image is drawn about three times as often as an unfocused one"
    with pytest.raises(ValueError, match="same length"):
        sequence_from_config(images, masks, cfg, 2, seed=0, image_weights=[3.0, 1.0])


def test_a_run_with_the_focus_on_samples_stage_1s_confusions_more_often(small_data_file, tmp_path, monkeypatch):
    from marsseg.pipeline.run import run

    calls, lines = [], []
    seeded_fake_fit(monkeypatch, calls)
    cfg = override(preset("smoke"), ["stage2_focus.enabled=true", "stage2_focus.min_pixels=1"])
    run(cfg, small_data_file[0], tmp_path / "run", log=lines.append, submissions_dir=None, verbose=0)
    stage2 = calls[-1]
    assert stage2["name"] == "stage2" and all(c["train_weights"] is None for c in calls[:-1]), "stage 2 only"
    expected = focus_weights(stage2["train_masks"], stage2["train_extras"], cfg.stage2_focus)
    np.testing.assert_array_equal(stage2["train_weights"], expected)
    focused = int(np.count_nonzero(expected > 1))
    assert 0 < focused < len(expected), "an untrained stage 1 must confuse some images and not others here"
    assert any(f"; {focused} where stage 1 confuses big rock sampled x3" in line for line in lines)


def test_a_bad_oversampling_weight_is_one_line_before_any_data(tmp_path):
    message = one_line_error(
        run_cli("train", "--preset", "smoke", "--out", tmp_path / "r", "--set", "stage2_focus.oversample=0.5")
    )
    assert "stage2_focus.oversample" in message and not (tmp_path / "r").exists()
