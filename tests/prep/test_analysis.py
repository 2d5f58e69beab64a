import json

import numpy as np
import pytest

from marsseg.prep.analysis import class_stats, class_weights, class_weights_from_stats, write_class_report
from tests.conftest import one_line_error, run_cli


def test_shares_add_up_and_big_rock_is_rare(small_synthetic):
    stats = class_stats(small_synthetic.images, small_synthetic.masks)
    shares = [row["pixel_share"] for row in stats["classes"].values()]
    assert abs(sum(shares) - 1.0) < 1e-9
    rock = stats["classes"]["big rock"]
    assert rock["pixel_share"] < 0.05 and 0 < rock["image_share"] < 0.6


def test_weights_from_saved_stats_match_weights_from_masks(small_synthetic):
    stats = json.loads(json.dumps(class_stats(small_synthetic.images, small_synthetic.masks)))
    from_masks = class_weights(small_synthetic.masks)
    assert np.allclose(class_weights_from_stats(stats), from_masks)
    assert from_masks[0] == 0 and from_masks[4] == from_masks.max()


@pytest.mark.parametrize("power, rock_over_sand", [(0.0, 1.0), (0.25, 2.0), (0.5, 4.0), (1.0, 16.0)])
def test_weight_power_sets_how_much_rarer_classes_count(power, rock_over_sand):
    # Hand-made counts: sand has 16x big rock's pixels, so the weights' ratio is 16 ** power.
    masks = np.zeros((1, 1, 200), np.uint8)
    masks[0, 0, :100] = 1
    masks[0, 0, 100:148] = 2
    masks[0, 0, 148:196] = 3
    masks[0, 0, 196:199] = 4
    weights = class_weights(masks, power=power)
    assert weights[0] == 0 and np.isclose(weights[1:].mean(), 1.0)
    assert np.isclose(weights[4] / weights[3], rock_over_sand)


def test_report_writes_json_and_png(tmp_path, small_synthetic):
    stats = class_stats(small_synthetic.images, small_synthetic.masks)
    json_path, png_path = write_class_report(stats, tmp_path / "classes")
    saved = json.loads(json_path.read_text())
    assert saved["classes"]["soil"]["label"] == 1 and set(saved["loss_weights"]) == set(stats["classes"])
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_plot_cli(tmp_path, small_data_file):
    data, _ = small_data_file
    result = run_cli("inspect", data, "--plot", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "big rock" in result.stdout
    assert (tmp_path / "out" / "class_stats.png").exists() and (tmp_path / "out" / "class_stats.json").exists()
    (tmp_path / "file").write_text("x")
    assert "is a file" in one_line_error(run_cli("inspect", data, "--plot", tmp_path / "file"))


@pytest.mark.parametrize("power, ratio", [(1.0, 10.0), (1.0, 3.0), (0.5, 2.0), (1.0, 1.0)])
def test_max_weight_ratio_caps_largest_over_smallest(power, ratio):
    masks = np.zeros((1, 64, 128), np.uint8)
    masks[0, :32] = 1  # soil: half the image
    masks[0, 32:60] = 2
    masks[0, 60:63] = 3
    masks[0, 63, :20] = 4  # big rock: 20 pixels
    uncapped = class_weights(masks, power=power, cap=np.inf)
    capped = class_weights(masks, power=power, cap=np.inf, max_ratio=ratio)
    scored = capped[1:]
    assert capped[0] == 0 and scored.mean() == pytest.approx(1.0)
    assert scored.max() / scored.min() == pytest.approx(min(ratio, uncapped[1:].max() / uncapped[1:].min()))
    assert np.all(np.diff(scored) >= -1e-12)  # rarer classes still weigh at least as much
