"""The hold-out's tuning part makes every decision, its reporting part none; the reported figures are its."""

import re

import numpy as np
import pytest

from tests.pipeline.fakes import seeded_fake_fit


def _masks(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 5, (n, 8, 8)).astype(np.uint8)


def test_the_split_is_disjoint_complete_and_seeded():
    from marsseg.pipeline.holdout import SEED_OFFSET, split
    from marsseg.prep.folds import holdout_split

    masks = _masks(40)
    tune, report = split(masks, 0.5, seed=3)
    assert not np.intersect1d(tune, report).size and np.array_equal(np.union1d(tune, report), np.arange(40))
    assert 15 <= len(report) <= 25
    assert all(np.array_equal(a, b) for a, b in zip(split(masks, 0.5, seed=3), (tune, report)))
    assert np.array_equal(report, holdout_split(masks, 0.5, 3 + SEED_OFFSET)[1])
    assert len(split(masks, 0.25, seed=3)[1]) < len(report)
    one = split(masks[:1], 0.5, seed=3)
    assert [r.tolist() for r in one] == [[0], [0]], "one image cannot be split: it does both"


def test_per_image_confusions_and_the_bootstrap_interval():
    from marsseg.pipeline.holdout import bootstrap_ci, per_image_confusion
    from marsseg.submission.scoring import confusion_matrix, mean_iou

    masks, labels = _masks(30, 1), _masks(30, 2)
    labels[:15] = masks[:15]  # half the images right, half random: the interval is wide
    confusions = per_image_confusion(masks, labels)
    assert confusions.shape == (30, 5, 5)
    for i in (0, 17):
        np.testing.assert_array_equal(confusions[i], confusion_matrix(masks[i], labels[i]))
    lo, hi = bootstrap_ci(confusions, seed=0)
    assert lo < mean_iou(confusions.sum(0)) < hi and hi - lo > 0.05
    assert bootstrap_ci(confusions, seed=0) == [lo, hi], "seeded"
    same = np.repeat(confusions[:1], 10, axis=0)  # ten identical images: no spread
    assert bootstrap_ci(same) == pytest.approx([mean_iou(same.sum(0))] * 2)


def test_validate_refuses_a_report_fraction_outside_its_range():
    from marsseg.config import override, preset, validate
    from marsseg.errors import ConfigError

    for value in ("0", "1", "0.01", "1.5"):
        with pytest.raises(ConfigError, match=rf"^{re.escape('data.report_fraction')} .*--set data\.report_fraction="):
            validate(override(preset("smoke"), [f"data.report_fraction={value}"]))
    assert validate(override(preset("smoke"), ["data.report_fraction=0.3"])).data.report_fraction == 0.3
    assert preset("kaggle").data.report_fraction == 0.5


def test_no_decision_reads_a_reporting_row(small_data_file, tmp_path, monkeypatch):
    """Reporting images and masks replaced by noise: every decision (TTA, class biases, morphology, the stage, the
    temperature) and every tuning-part score stay bit for bit, and so does the submission; the reported score moves."""
    from marsseg.config import override, preset
    from marsseg.pipeline.holdout import Holdout
    from marsseg.pipeline.run import run

    seeded_fake_fit(monkeypatch)
    cfg = override(preset("smoke"), ["post.class_bias=on", "post.tta=auto", "post.morphology=auto"])
    clean = run(cfg, small_data_file[0], tmp_path / "a", log=lambda line: None, submissions_dir=None, verbose=0)
    split = Holdout.split.__func__

    def noisy(cls, images, masks, fraction, seed):
        hold = split(cls, images, masks, fraction, seed)
        rng = np.random.default_rng(99)
        hold.images[hold.report] = rng.integers(0, 256, hold.images[hold.report].shape, dtype=np.uint8)
        hold.masks[hold.report] = rng.integers(0, 5, hold.masks[hold.report].shape, dtype=np.uint8)
        return hold

    monkeypatch.setattr(Holdout, "split", classmethod(noisy))
    perturbed = run(cfg, small_data_file[0], tmp_path / "b", log=lambda line: None, submissions_dir=None, verbose=0)
    status = clean["stage2_status"]
    assert status == "ok" or status.startswith("not used: tuning"), "the stage choice must be made for this to cover it"
    for key in ("post", "final_stage", "final_tta", "stage2_status", "val_miou_final_tuned", "holdout"):
        assert perturbed[key] == clean[key], key
    assert perturbed["stage2_input"]["temperature"] == clean["stage2_input"]["temperature"]
    assert clean["post"]["stage1"]["class_bias"]["used"] and clean["post"]["stage1"]["class_bias"]["values"]
    assert (tmp_path / "a" / "submission.csv").read_bytes() == (tmp_path / "b" / "submission.csv").read_bytes()
    assert perturbed["val_miou_final"] != clean["val_miou_final"]
    assert perturbed["confusion_report"] != clean["confusion_report"]
    assert perturbed["val_miou_stage1"] != clean["val_miou_stage1"]


def test_make_demo_prints_the_reporting_figure_and_the_stage(tmp_path, monkeypatch):
    import marsseg.pipeline.run as pipeline_run
    from marsseg.data.load import load_masks
    from marsseg.pipeline.demo import run_pipeline_demo
    from marsseg.submission.formats import write_submission

    def fake_run(cfg, data_path, out_dir, log, submissions_dir):
        truth = load_masks(data_path.parent / "synthetic_truth.npz", key="test_labels")
        out_dir.mkdir(parents=True)
        path = write_submission(out_dir / "submission.csv", truth, "rle")
        return {
            "submission": str(path),
            "data": {"n_test": len(truth)},
            "final_stage": 2,
            "holdout": {"n_tune": 5, "n_report": 6},
            "val_miou_stage1": 0.41,
            "val_miou_stage2": 0.43,
            "val_miou_final": 0.44,
            "val_miou_final_tuned": 0.47,
        }

    monkeypatch.setattr(pipeline_run, "run", fake_run)
    lines = []
    run_pipeline_demo(tmp_path, None, n_train=8, n_test=4, log=lines.append)
    (line,) = [line for line in lines if "hold-out" in line]
    assert line.startswith("reporting hold-out (6 images) mIoU: stage 1 0.4100, stage 2 0.4300, final (stage 2) 0.4400")
    assert "tuning part" in line and "0.4700" in line
