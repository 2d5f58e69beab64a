"""Self-training on the test images (opt-in): which pixels become labels, which images join, and a whole run."""

import numpy as np
import pytest

from marsseg.pipeline.selftrain import most_confident, pseudo_labels
from tests.conftest import one_line_error, run_cli


def _probs(*pixels):
    """(1, 1, n, 5) probabilities, one pixel per given row."""
    return np.array(pixels, np.float32)[None, None]


@pytest.mark.parametrize(
    ("pixel", "threshold", "label"),
    [
        ([0.0, 0.95, 0.05, 0.0, 0.0], 0.9, 1),  # confident soil
        ([0.0, 0.05, 0.0, 0.0, 0.95], 0.9, 4),  # confident big rock
        ([0.0, 0.6, 0.4, 0.0, 0.0], 0.9, 0),  # unsure: ignored
        ([0.9, 0.1, 0.0, 0.0, 0.0], 0.05, 1),  # background is never a pseudo-label: the argmax is over 1-4
        ([0.0, 0.0, 0.0, 0.9, 0.1], 0.9, 3),  # exactly at the threshold counts
    ],
)
def test_a_pixel_is_labelled_with_stage_1s_class_only_where_it_is_confident(pixel, threshold, label):
    assert pseudo_labels(_probs(pixel), threshold)[0, 0, 0] == label


def test_the_images_with_most_confident_pixels_are_taken_and_empty_ones_never():
    labels = np.zeros((4, 2, 2), np.uint8)
    labels[0, 0, 0] = 1  # 1 pixel
    labels[2] = 3  # 4 pixels
    labels[3, 0] = 2  # 2 pixels
    assert most_confident(labels, 2).tolist() == [2, 3]
    assert most_confident(labels, 0).tolist() == [0, 2, 3], "0: every image with a label; image 1 has none"


def test_a_run_with_self_training_adds_pseudo_labelled_test_images_to_stage_2(small_data_file, tmp_path):
    from marsseg.config import override, preset
    from marsseg.pipeline.run import run

    lines = []
    cfg = override(preset("smoke"), ["self_training.enabled=true", "self_training.threshold=0.05"])
    m = run(cfg, small_data_file[0], tmp_path / "run", log=lines.append, submissions_dir=None, verbose=0)
    summary = m["self_training"]
    assert summary["images"] > 0 and 0 < summary["pixel_share"] <= 1 and sum(summary["class_pixels"]) > 0
    assert m["stage2_status"] == "ok"
    assert any(f"+ {summary['images']} pseudo-labelled test images" in line for line in lines)


def test_a_bad_threshold_is_one_line_before_any_data(tmp_path):
    message = one_line_error(
        run_cli("train", "--preset", "smoke", "--out", tmp_path / "r", "--set", "self_training.threshold=2")
    )
    assert "self_training.threshold" in message and not (tmp_path / "r").exists()
