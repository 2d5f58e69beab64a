import numpy as np
import pytest

from marsseg.submission.scoring import confusion_matrix, iou_per_class, mean_iou, score_masks


def _masks(*rows):
    """Tiny hand-made masks tiled onto the 64×128 grid so IoUs stay exact fractions."""
    block = np.array(rows, np.uint8)
    return np.kron(block, np.ones((64 // block.shape[0], 128 // block.shape[1]), np.uint8))[None]


CASES = [
    # truth, prediction, expected per-class IoU (classes 1-4; nan = absent from both)
    ([[1, 1], [2, 2]], [[1, 1], [2, 2]], {1: 1.0, 2: 1.0, 3: np.nan, 4: np.nan}),
    ([[1, 1], [2, 2]], [[1, 2], [2, 2]], {1: 0.5, 2: 2 / 3, 3: np.nan, 4: np.nan}),
    # Background truth pixels are ignored whatever is predicted there.
    ([[0, 0], [3, 4]], [[3, 4], [3, 4]], {1: np.nan, 2: np.nan, 3: 1.0, 4: 1.0}),
    # Predicting background on a labelled pixel is a miss; a class predicted but absent from truth scores 0.
    ([[1, 1], [1, 1]], [[0, 1], [4, 1]], {1: 0.5, 2: np.nan, 3: np.nan, 4: 0.0}),
    ([[1, 2, 3, 4]], [[4, 3, 2, 1]], {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}),
]


@pytest.mark.parametrize("truth, prediction, expected", CASES)
def test_hand_computed(truth, prediction, expected):
    score = score_masks(_masks(*truth), _masks(*prediction))
    for c, value in expected.items():
        if np.isnan(value):
            assert np.isnan(score["iou"][c])
        else:
            assert score["iou"][c] == pytest.approx(value)
    present = [v for v in expected.values() if not np.isnan(v)]
    assert score["miou_scored"] == pytest.approx(np.mean(present))
    background_on_labelled = bool(((_masks(*prediction) == 0) & (_masks(*truth) != 0)).any())
    keras_rule = present + [0.0] * background_on_labelled  # class 0 joins the mean with IoU 0
    assert score["miou_keras"] == pytest.approx(np.mean(keras_rule))
    assert score["miou"] == score["miou_keras"]  # the profile's rule


# truth, prediction and the value of keras.metrics.MeanIoU(num_classes=5, ignore_class=0), worked by hand
KERAS_CASES = [
    # soil 1/2 (tp 2, union 4), big rock 0 (predicted once, absent), class 0 predicted on a labelled pixel: IoU 0
    ([[1, 1], [1, 1]], [[0, 1], [4, 1]], (0.5 + 0.0 + 0.0) / 3),
    # background predicted only where truth is background: ignored, so class 0 stays out of the mean
    ([[0, 0], [3, 4]], [[0, 0], [3, 4]], 1.0),
    # half the labelled pixels called background: soil 1/2, bedrock 1/2, class 0 IoU 0
    ([[1, 1, 2, 2]], [[1, 0, 2, 0]], (0.5 + 0.5 + 0.0) / 3),
    # no background predicted: both readings agree
    ([[1, 2], [3, 4]], [[1, 2], [3, 3]], (1 + 1 + 0.5 + 0) / 4),
]


@pytest.mark.parametrize("truth, prediction, expected", KERAS_CASES)
def test_keras_rule_on_hand_made_masks_matches_keras_mean_iou_itself(truth, prediction, expected):
    keras = pytest.importorskip("keras")
    truth, prediction = _masks(*truth), _masks(*prediction)
    reference = keras.metrics.MeanIoU(num_classes=5, ignore_class=0, sparse_y_true=True, sparse_y_pred=True)
    reference.update_state(truth, prediction)
    assert float(reference.result()) == pytest.approx(expected, abs=1e-6)
    assert score_masks(truth, prediction)["miou"] == pytest.approx(expected)
    assert mean_iou(confusion_matrix(truth, prediction), rule="keras") == pytest.approx(expected)


def test_the_two_readings_differ_only_when_background_is_predicted_on_labelled_pixels(rng):
    truth = rng.integers(0, 5, (4, 64, 128))
    without = rng.integers(1, 5, (4, 64, 128))
    assert score_masks(truth, without)["miou_keras"] == pytest.approx(score_masks(truth, without)["miou_scored"])
    with_background = without.copy()
    with_background[truth != 0] = np.where(rng.random((truth != 0).sum()) < 0.1, 0, without[truth != 0])
    score = score_masks(truth, with_background)
    assert score["miou_keras"] == pytest.approx(score["miou_scored"] * 4 / 5)


def test_unknown_rule_is_refused():
    from marsseg.competition import MARS, Competition
    from marsseg.errors import ConfigError

    with pytest.raises(ValueError, match="unknown scoring rule"):
        mean_iou(np.eye(5), rule="dice")
    with pytest.raises(ConfigError, match="scoring_rule 'dice'"):
        Competition(**{**MARS.__dict__, "scoring_rule": "dice"})


def test_accumulates_over_pixels_not_images():
    # Image A: perfect on a huge soil area; image B: soil totally missed on a tiny area.
    truth = np.ones((2, 64, 128), np.uint8)
    prediction = truth.copy()
    truth[1] = 2
    truth[1, :2, :2] = 1
    prediction[1] = 2
    cm = confusion_matrix(truth, prediction)
    # Pixel-accumulated soil IoU = 8192 / 8196, nowhere near the per-image mean of 0.5.
    assert iou_per_class(cm)[1] == pytest.approx(8192 / 8196)


def test_matches_keras_mean_iou(rng):
    keras = pytest.importorskip("keras")
    from marsseg.training.metrics import MeanIoU

    truth = rng.integers(0, 5, (6, 64, 128))
    prediction = rng.integers(1, 5, (6, 64, 128))  # no background predicted: Keras' own metric then agrees
    reference = keras.metrics.MeanIoU(num_classes=5, ignore_class=0, sparse_y_true=True, sparse_y_pred=True)
    reference.update_state(truth, prediction)
    ours = MeanIoU()
    ours.update_state(truth, np.eye(5, dtype="float32")[prediction])  # as probabilities
    numpy_score = mean_iou(confusion_matrix(truth, prediction))
    assert float(ours.result()) == pytest.approx(float(reference.result()), abs=1e-6)
    assert numpy_score == pytest.approx(float(reference.result()), abs=1e-6)
    assert float(ours.result()) == pytest.approx(numpy_score, abs=1e-6)


def test_keras_metric_agrees_with_numpy_with_background_predicted(rng):
    from marsseg.training.metrics import MeanIoU

    truth, prediction = rng.integers(0, 5, (2, 3, 64, 128))
    metric = MeanIoU()
    metric.update_state(truth[:2], prediction[:2])
    metric.update_state(truth[2:], prediction[2:])
    scored = mean_iou(confusion_matrix(truth, prediction), rule="scored")  # labels given as they are: 0 included
    assert float(metric.result()) == pytest.approx(scored, abs=1e-6)
    per_class = np.asarray(metric.per_class())
    expected = iou_per_class(confusion_matrix(truth, prediction))
    np.testing.assert_allclose(per_class[1:], [expected[c] for c in (1, 2, 3, 4)], atol=1e-6)
    metric.reset_state()
    assert float(np.asarray(metric.confusion).sum()) == 0


def test_training_metric_labels_probabilities_by_the_argmax_over_the_scored_classes():
    """Model selection sees what the submission gets: background is never the predicted label."""
    from marsseg.training.metrics import MeanIoU

    truth = _masks([1, 2], [3, 4])
    probs = np.zeros((*truth.shape, 5), np.float32)
    probs[..., 0] = 0.6  # background would win a plain argmax everywhere
    probs[..., 1:] = np.eye(4, dtype=np.float32)[np.maximum(truth, 1) - 1] * 0.4
    metric = MeanIoU()
    metric.update_state(truth, probs)
    assert float(metric.result()) == pytest.approx(1.0)
    assert score_masks(truth, probs[..., 1:].argmax(-1) + 1)["miou"] == pytest.approx(1.0)
