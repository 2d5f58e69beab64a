import hashlib

import numpy as np
import pytest

from marsseg.data.load import load_dataset
from marsseg.data.synth import STAND_INS, SYNTH_VERSION, make_synthetic
from marsseg.prep.analysis import class_stats
from tests.conftest import run_cli


@pytest.mark.parametrize("stand_in", STAND_INS)
def test_deterministic_per_seed(stand_in):
    a, b = make_synthetic(40, 8, seed=3, stand_in=stand_in), make_synthetic(40, 8, seed=3, stand_in=stand_in)
    c = make_synthetic(40, 8, seed=4, stand_in=stand_in)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    assert not np.array_equal(a.images, c.images)


def _digest(s) -> str:
    h = hashlib.sha256()
    for array in (s.images, s.masks, s.test_images, s.test_labels, s.outlier_indices):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


# Stored benchmark runs count together only on one version of a stand-in: a change to its arrays must bump it.
DIGESTS = {("procedural", 2): "0fb3dc07e0bc1093", ("photo", 1): "0526b279392de8ba"}


@pytest.mark.parametrize("stand_in", STAND_INS)
def test_a_stand_in_changes_only_with_its_version(stand_in):
    expected = DIGESTS.get((stand_in, STAND_INS[stand_in]), "unknown version")
    assert _digest(make_synthetic(700, 40, seed=3, stand_in=stand_in)) == expected, (
        f"the {stand_in} stand-in's arrays changed: bump its version in STAND_INS and pin the new digest here"
    )
    assert STAND_INS["procedural"] == SYNTH_VERSION


def test_the_photo_stand_in_has_other_textures_on_the_same_layout_statistics():
    procedural, photo = make_synthetic(40, 2, seed=6), make_synthetic(40, 2, seed=6, stand_in="photo")
    assert not np.array_equal(procedural.images, photo.images)
    # Its sand comes from the blurred leaves, its soil from foliage: sand is far smoother pixel to pixel.
    s = make_synthetic(200, 2, seed=1, stand_in="photo", outlier_fraction=0)
    step = np.abs(np.diff(s.images.astype(float), axis=2))
    inner = s.masks[:, :, 1:] == s.masks[:, :, :-1]
    soil, sand = step[inner & (s.masks[:, :, 1:] == 1)].mean(), step[inner & (s.masks[:, :, 1:] == 3)].mean()
    assert sand < 0.7 * soil, (sand, soil)


def test_an_unknown_stand_in_is_refused():
    with pytest.raises(ValueError, match="photo"):
        make_synthetic(4, 1, stand_in="lunar")


@pytest.mark.parametrize("stand_in", STAND_INS)
def test_fair_stand_in_statistics(stand_in):
    s = make_synthetic(600, 10, seed=1, stand_in=stand_in)
    share = np.bincount(s.masks.ravel(), minlength=5) / s.masks.size
    assert 0.18 <= share[0] <= 0.30, share  # unlabelled background
    assert 0.004 <= share[4] <= 0.02, share  # rare big rock
    assert all(share[c] > 0.12 for c in (1, 2, 3)), share
    assert 0.15 <= (s.masks == 4).any(axis=(1, 2)).mean() <= 0.45  # big rock in a minority of images
    # Brightness differs by class but overlaps: class means apart, spreads wider than the gaps.
    stats = class_stats(s.images, s.masks)["classes"]
    means = [stats[n]["intensity_mean"] for n in ("soil", "bedrock", "sand")]
    assert max(means) - min(means) > 5
    assert min(stats[n]["intensity_std"] for n in ("soil", "bedrock", "sand")) > max(means) - min(means)


@pytest.mark.parametrize("stand_in", STAND_INS)
def test_planted_outliers_share_one_mask_and_a_sprite(stand_in):
    s = make_synthetic(600, 10, seed=2, stand_in=stand_in)
    out = s.outlier_indices
    assert len(out) == round(600 * 110 / 2615)
    assert all(np.array_equal(s.masks[out[0]], s.masks[i]) for i in out)
    normal = np.setdiff1d(np.arange(600), out)
    assert not any(np.array_equal(s.masks[out[0]], s.masks[i]) for i in normal)
    # The sprite is the same in every outlier: their images correlate far more with each other than normal ones do.
    flat = s.images.reshape(600, -1).astype(float)
    flat = (flat - flat.mean(1, keepdims=True)) / flat.std(1, keepdims=True)
    corr_out = (flat[out[0]] * flat[out[1]]).mean()
    corr_normal = np.mean([(flat[normal[i]] * flat[normal[i + 1]]).mean() for i in range(20)])
    assert corr_out > 0.5 > abs(corr_normal) + 0.3


def test_zero_outlier_fraction():
    assert len(make_synthetic(50, 2, seed=0, outlier_fraction=0).outlier_indices) == 0


@pytest.mark.parametrize("stand_in", STAND_INS)
def test_cli_synth_writes_schema_and_truth(tmp_path, stand_in):
    data, truth = tmp_path / "s.npz", tmp_path / "t.npz"
    result = run_cli("synth", data, "--train", 30, "--test", 7, "--seed", 5, "--truth", truth, "--stand-in", stand_in)
    assert result.returncode == 0, result.stderr
    ds = load_dataset(data)
    assert (ds.n_train, ds.n_test) == (30, 7)
    with np.load(truth) as t:
        assert t["test_labels"].shape == (7, 64, 128) and t["outlier_indices"].dtype.kind == "i"


def _rock_shading(s):
    """Per image with big rocks: the correlation of rock brightness with x and with y over its rock pixels."""
    yy, xx = np.mgrid[0:64, 0:128]
    out = []
    for image, mask in zip(s.images, s.masks):
        rock = mask == 4
        if rock.sum() > 30:
            v = image[rock].astype(float)
            out.append([np.corrcoef(v, xx[rock])[0, 1], np.corrcoef(v, yy[rock])[0, 1]])
    return np.array(out)


@pytest.mark.parametrize("stand_in", STAND_INS)
def test_rocks_are_lit_from_a_direction_that_varies_between_images_so_flips_stay_plausible(stand_in):
    shading = _rock_shading(make_synthetic(600, 10, seed=1, stand_in=stand_in))
    assert len(shading) > 100
    # Within an image the rocks are shaded (brightness follows the position strongly, one way or the other) ...
    assert np.median(np.abs(shading).max(axis=1)) > 0.3
    # ... but no direction is preferred over the set: a horizontal or vertical flip gives a scene the set has.
    assert np.all(np.abs(shading.mean(axis=0)) < 0.1), shading.mean(axis=0)
