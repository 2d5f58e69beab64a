import json
import subprocess
import sys

import numpy as np
import pytest

from marsseg.config import CleanConfig
from marsseg.data.load import load_dataset
from marsseg.data.synth import make_synthetic
from marsseg.files import atomic_save_npz
from marsseg.prep.clean import (
    _features,
    anomaly_scores,
    clean_dataset,
    duplicate_mask_groups,
    find_outliers,
    precision_recall,
)
from tests.conftest import one_line_error, run_cli


@pytest.fixture(scope="module")
def medium_synthetic():
    return make_synthetic(n_train=600, n_test=4, seed=3)


def test_finds_planted_outliers_with_high_precision_and_recall(medium_synthetic):
    report = find_outliers(medium_synthetic.images, medium_synthetic.masks)
    score = precision_recall(report.removed, medium_synthetic.outlier_indices)
    assert len(medium_synthetic.outlier_indices) == 25
    assert score["precision"] >= 0.98 and score["recall"] >= 0.98, score
    for i in report.removed:
        assert "duplicate_mask" in report.evidence[int(i)]


def test_anomaly_scores_match_a_plain_pca_and_neighbour_search():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 64, 128), dtype=np.uint8)
    images[7] = images[3]  # a reference image's exact twin is its neighbour at distance 0; itself is not
    reference = np.ones(60, bool)
    reference[[0, 1, 2]] = False
    pca_error, knn = anomaly_scores(images, reference, components=4, neighbours=3)
    x = _features(images).astype(np.float64)
    ref = np.flatnonzero(reference)
    centred = x - x[ref].mean(axis=0)
    basis = np.linalg.svd(centred[ref], full_matrices=False)[2][:4]
    expected_pca = np.linalg.norm(centred - centred @ basis.T @ basis, axis=1) / np.sqrt(x.shape[1])
    d = np.linalg.norm(x[:, None] - x[None, ref], axis=2)
    d[ref, np.arange(len(ref))] = np.inf
    expected_knn = np.sort(d, axis=1)[:, :3].mean(axis=1) / np.sqrt(x.shape[1])
    assert np.allclose(pca_error, expected_pca, rtol=1e-4) and np.allclose(knn, expected_knn, rtol=1e-4)
    assert knn[3] < knn[4] and knn[7] < knn[4]  # the twins find each other
    again = anomaly_scores(images, reference, components=4, neighbours=3)
    assert np.array_equal(again[0], pca_error) and np.array_equal(again[1], knn)


def test_removes_nothing_without_outliers():
    clean = make_synthetic(n_train=600, n_test=4, seed=4, outlier_fraction=0.0)
    report = find_outliers(clean.images, clean.masks)
    assert len(report.removed) == 0
    assert len(report.suspects) > 0  # anomaly scores flag unusual images, but only as suspects


def test_template_catches_an_outlier_whose_mask_differs(medium_synthetic):
    images, masks = medium_synthetic.images.copy(), medium_synthetic.masks.copy()
    changed = medium_synthetic.outlier_indices[0]
    normal = np.setdiff1d(np.arange(len(masks)), medium_synthetic.outlier_indices)[0]
    masks[changed] = masks[normal]
    report = find_outliers(images, masks)
    assert changed in report.removed and normal not in report.removed
    assert "template" in report.evidence[int(changed)]
    assert "duplicate_mask" not in report.evidence[int(changed)]


def test_anomalous_images_alone_are_not_removed(medium_synthetic):
    images, masks = medium_synthetic.images.copy(), medium_synthetic.masks.copy()
    normal = np.setdiff1d(np.arange(len(masks)), medium_synthetic.outlier_indices)[:3]
    yy, xx = np.mgrid[0:64, 0:128]
    images[normal] = np.where((yy // 16 + xx // 16) % 2, 230, 20).astype(np.uint8)  # unlike any terrain
    report = find_outliers(images, masks)
    assert not set(normal) & set(report.removed.tolist())
    assert set(normal) <= set(report.suspects.tolist())


def test_one_class_masks_repeating_are_not_duplicates():
    masks = np.ones((6, 64, 128), np.uint8)
    masks[5, :4] = 2
    assert duplicate_mask_groups(masks, 3) == []
    masks[3:] = masks[5]
    groups = duplicate_mask_groups(masks, 3)
    assert len(groups) == 1 and groups[0]["indices"].tolist() == [3, 4, 5]
    assert duplicate_mask_groups(masks, 4) == []


def test_cleaning_disabled_removes_nothing(medium_synthetic):
    images, masks, report = clean_dataset(medium_synthetic.images, medium_synthetic.masks, CleanConfig(enabled=False))
    assert len(images) == len(medium_synthetic.images) and len(report.removed) == 0


def test_report_json_lists_every_removed_index(medium_synthetic):
    report = find_outliers(medium_synthetic.images, medium_synthetic.masks)
    data = json.loads(json.dumps(report.to_json(medium_synthetic.outlier_indices)))
    assert [row["index"] for row in data["removed"]] == report.removed.tolist()
    assert all(row["evidence"] and "template_corr" in row and "anomaly" in row for row in data["removed"])
    assert data["truth"]["precision"] == 1.0 and data["n_kept"] == 600 - len(report.removed)


def test_cli_clean_writes_data_report_and_bigrock_copies(tmp_path, small_data_file, small_synthetic):
    data, truth = small_data_file
    out, report = tmp_path / "clean.npz", tmp_path / "report"
    result = run_cli(
        "clean", data, "--out", out, "--report", report, "--truth", truth, "--augment-bigrock", "--preset", "smoke"
    )
    assert result.returncode == 0, result.stderr
    assert "precision 1.0000  recall 1.0000" in result.stdout
    cleaned = load_dataset(out)
    kept = np.setdiff1d(np.arange(len(small_synthetic.images)), small_synthetic.outlier_indices)
    assert np.array_equal(cleaned.images, small_synthetic.images[kept])
    assert np.array_equal(cleaned.masks, small_synthetic.masks[kept])
    assert np.array_equal(cleaned.test_images, small_synthetic.test_images)
    summary = json.loads((report / "outliers.json").read_text())
    assert summary["kept_indices"] == kept.tolist()
    assert (report / "removed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    copies = np.load(tmp_path / "clean.bigrock.npz")
    assert len(copies["images"]) == len(copies["masks"]) == len(copies["source_index"]) > 0
    assert all((cleaned.masks[i] == 4).any() for i in copies["source_index"])


def test_cli_clean_imports_no_keras(tmp_path, small_data_file):
    data, _ = small_data_file
    code = (
        "import sys; from marsseg.cli.main import main; "
        f"main(['clean', {str(data)!r}, '--out', {str(tmp_path / 'c.npz')!r}]); "
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.parametrize("case", ["missing", "same", "truth_key", "truth_range", "report_file", "out_dir"])
def test_cli_clean_bad_input_is_one_line(tmp_path, small_data_file, case):
    data, truth = small_data_file
    args = [data, "--out", tmp_path / "c.npz"]
    if case == "missing":
        args[0] = tmp_path / "nope.npz"
    elif case == "same":
        args[2] = data
    elif case == "truth_key":
        atomic_save_npz(tmp_path / "t.npz", other=np.arange(3))
        args += ["--truth", tmp_path / "t.npz"]
    elif case == "truth_range":
        atomic_save_npz(tmp_path / "t.npz", outlier_indices=np.array([5, 100000]))
        args += ["--truth", tmp_path / "t.npz"]
    elif case == "report_file":
        (tmp_path / "r").write_text("x")
        args += ["--report", tmp_path / "r"]
    elif case == "out_dir":
        args[2] = tmp_path
    line = one_line_error(run_cli("clean", *args))
    assert {
        "missing": "no such file",
        "same": "input file",
        "truth_key": "outlier_indices",
        "truth_range": "outlier_indices",
        "report_file": "is a file",
        "out_dir": "directory",
    }[case] in line
    assert not (tmp_path / "c.npz").exists()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_full_size_precision_and_recall(seed):
    synthetic = make_synthetic(n_train=2615, n_test=1, seed=seed)
    report = find_outliers(synthetic.images, synthetic.masks)
    score = precision_recall(report.removed, synthetic.outlier_indices)
    assert len(synthetic.outlier_indices) == 110
    assert score["precision"] >= 0.98 and score["recall"] >= 0.98, score


@pytest.mark.slow
def test_full_size_without_outliers_removes_nothing():
    synthetic = make_synthetic(n_train=2615, n_test=1, seed=2, outlier_fraction=0.0)
    assert len(find_outliers(synthetic.images, synthetic.masks).removed) == 0


def test_three_shared_masks_are_enough_to_find_every_outlier(medium_synthetic):
    """Template matching, rebuilt from its own matches, finds outliers whose masks were all relabelled."""
    masks = medium_synthetic.masks.copy()
    outliers = medium_synthetic.outlier_indices
    normal = np.setdiff1d(np.arange(len(masks)), outliers)
    masks[outliers[3:]] = masks[normal[: len(outliers) - 3]]
    report = find_outliers(medium_synthetic.images, masks)
    score = precision_recall(report.removed, outliers)
    assert score["precision"] == 1.0 and score["recall"] == 1.0, score
    assert report.duplicate_groups[0]["size"] == 3
