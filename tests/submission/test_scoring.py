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
    assert score["miou"] == pytest.approx(np.mean(present))


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
    assert float(ours.result()) == pytest.approx(numpy_score, abs=1e-6)


def test_keras_metric_agrees_with_numpy_with_background_predicted(rng):
    from marsseg.training.metrics import MeanIoU

    truth, prediction = rng.integers(0, 5, (2, 3, 64, 128))
    metric = MeanIoU()
    metric.update_state(truth[:2], prediction[:2])
    metric.update_state(truth[2:], prediction[2:])
    assert float(metric.result()) == pytest.approx(mean_iou(confusion_matrix(truth, prediction)), abs=1e-6)
    per_class = np.asarray(metric.per_class())
    expected = iou_per_class(confusion_matrix(truth, prediction))
    np.testing.assert_allclose(per_class[1:], [expected[c] for c in (1, 2, 3, 4)], atol=1e-6)
    metric.reset_state()
    assert float(np.asarray(metric.confusion).sum()) == 0
