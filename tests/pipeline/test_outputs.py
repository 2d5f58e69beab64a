"""The run folder's files, and the network-free submission a stage-1 crash still leaves."""

import json

import numpy as np
import pytest


def _crash_stage1(monkeypatch, where="folds"):
    from marsseg.pipeline import run as pipeline_run
    from marsseg.pipeline import testset

    def broken(*args, **kwargs):
        raise RuntimeError("injected stage-1 crash")

    if where == "folds":  # run.py's name for stages.stage1_folds: what its stage-1 phase calls
        monkeypatch.setattr(pipeline_run, "stage1_folds", broken)
    else:  # the stage-1 test prediction, after the fold models trained
        monkeypatch.setattr(testset, "stage1_labels", broken)


def _fallback_labels(data_path, cfg):
    """The nearest-centroid labels, computed here from the cleaned training images as the run must."""
    from marsseg.data.load import load_dataset
    from marsseg.pipeline.baseline import fit_centroids, predict_centroids
    from marsseg.prep.clean import clean_dataset

    dataset = load_dataset(data_path)
    n = cfg.data.max_train
    images, masks, _ = clean_dataset(dataset.images[:n], dataset.masks[:n], cfg.clean)
    return predict_centroids(dataset.test_images, fit_centroids(images, masks))


@pytest.mark.parametrize("where", ["folds", "test prediction"])
def test_a_crash_in_stage_1_leaves_a_validated_fallback_submission(small_data_file, tmp_path, monkeypatch, where):
    from marsseg.config import preset
    from marsseg.pipeline.outputs import Stage1Failed
    from marsseg.pipeline.run import run
    from marsseg.submission.formats import read_submission

    if where == "folds":
        _crash_stage1(monkeypatch)
    else:
        from tests.pipeline.fakes import seeded_fake_fit

        seeded_fake_fit(monkeypatch)  # fold models in no time; the crash comes when they predict the test set
        _crash_stage1(monkeypatch, where)
    cfg, out, lines = preset("smoke"), tmp_path / "run", []
    with pytest.raises(Stage1Failed, match="injected stage-1 crash") as caught:
        run(cfg, small_data_file[0], out, log=lines.append, submissions_dir=tmp_path / "subs", verbose=0)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert caught.value.submission == out / "submission.csv"
    pixels = read_submission(out / "submission.csv", 24)
    rle = read_submission(out / "submission_rle.csv", 24)
    assert pixels.layout == "pixels" and rle.layout == "rle"
    expected = _fallback_labels(small_data_file[0], cfg)
    assert len(np.unique(expected)) > 1, "a constant prediction would not tell the fallback from anything else"
    assert (pixels.masks == expected).all() and (rle.masks == expected).all()
    m = json.loads((out / "metrics.json").read_text())
    assert m["stage1_status"] == "failed: RuntimeError: injected stage-1 crash"
    assert m["final_stage"] == 0 and m["fallback"] == "nearest-centroid" and "val_miou_final" not in m
    assert any("stage 1 crashed" in note and "nearest centroid" in note for note in m["notes"])
    assert set(m["outputs"]["files"]) >= {"submission.csv", "submission_rle.csv", "config.json"}
    assert not [name for name in m["outputs"]["files"] if name.endswith(".keras")]
    assert any("Traceback" in line and "injected stage-1 crash" in line for line in lines)
    assert not (tmp_path / "subs").exists(), "a crashed run is not copied to the submission history"


def test_a_fallback_that_fails_too_still_reports_the_crash(small_data_file, tmp_path, monkeypatch):
    from marsseg.config import preset
    from marsseg.pipeline import outputs
    from marsseg.pipeline.run import run

    def also_broken(*args, **kwargs):
        raise MemoryError("also")

    _crash_stage1(monkeypatch)
    monkeypatch.setattr(outputs, "fallback_submission", also_broken)
    with pytest.raises(outputs.Stage1Failed, match="injected stage-1 crash.*failed too") as caught:
        run(preset("smoke"), small_data_file[0], tmp_path / "run", log=lambda line: None, verbose=0)
    assert caught.value.submission is None and not (tmp_path / "run" / "submission.csv").exists()
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["stage1_status"].startswith("failed: RuntimeError") and m["fallback"] is None


def test_the_train_command_exits_3_and_says_why_when_stage_1_crashes(small_data_file, tmp_path, monkeypatch, capsys):
    from marsseg.cli.main import main

    _crash_stage1(monkeypatch)
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--preset", "smoke", "--data", str(small_data_file[0]), "--out", "run", "--quiet"])
    captured = capsys.readouterr()
    assert code == 3
    (line,) = [line for line in captured.err.splitlines() if line.startswith("marsseg: error:")]
    assert "stage 1 crashed (RuntimeError: injected stage-1 crash)" in line and "fallback" in line
    assert "hold-out mIoU" not in captured.out  # the success line is not printed
    assert (tmp_path / "run" / "submission.csv").is_file()


def test_both_layouts_are_written_validated_and_copied_in_the_configured_one(tmp_path):
    from marsseg.errors import SubmissionError
    from marsseg.pipeline.outputs import copy_submission, write_submissions
    from marsseg.submission.formats import read_submission

    labels = np.random.default_rng(0).integers(1, 5, (3, 64, 128), dtype=np.uint8)
    assert write_submissions(tmp_path, labels) == {"submission.csv": "pixels", "submission_rle.csv": "rle"}
    for name in ("submission.csv", "submission_rle.csv"):
        assert (read_submission(tmp_path / name, 3).masks == labels).all()
    for layout, source in (("rle", "submission_rle.csv"), ("pixels", "submission.csv")):
        copy = copy_submission(tmp_path, tmp_path / "subs", layout, f"{layout}.csv")
        assert copy.read_bytes() == (tmp_path / source).read_bytes()
    with pytest.raises(SubmissionError):  # labels outside 0-4 never reach a file
        write_submissions(tmp_path / "bad", np.full((1, 64, 128), 7, np.uint8))
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_the_fallback_predicts_in_chunks_exactly_as_in_one_piece(rng):
    from marsseg.pipeline.baseline import fit_centroids, predict_centroids

    images = rng.integers(0, 256, (10, 64, 128), dtype=np.uint8)
    masks = rng.integers(0, 5, (10, 64, 128), dtype=np.uint8)
    model = fit_centroids(images, masks)
    np.testing.assert_array_equal(predict_centroids(images, model, chunk=3), predict_centroids(images, model))
