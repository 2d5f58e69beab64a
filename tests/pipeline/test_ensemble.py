"""`marsseg ensemble`: runs on one hold-out are combined into valid files; runs on different hold-outs, runs without
their models and runs from before the hold-out was recorded are refused in one line, with nothing written."""

import json
import shutil

import numpy as np
import pytest

from tests.conftest import one_line_error, run_cli


def _smoke_run(data_file, root, name, settings):
    from marsseg.config import override, preset
    from marsseg.pipeline.run import run

    out = root / name
    metrics = run(override(preset("smoke"), settings), data_file, out, log=lambda *_: None, submissions_dir=None,
                  verbose=0)  # fmt: skip
    return out, metrics


# Real smoke runs on the same data, one fixture each (so a test worker builds only the runs its tests use): two at
# seed 42 with different networks, the first two-stage, the second stage 1 only (about 25 s and 11 s), and one at
# seed 43 (about 11 s).
@pytest.fixture(scope="module")
def run_a(small_data_file, tmp_path_factory):
    return _smoke_run(small_data_file[0], tmp_path_factory.mktemp("ensemble"), "a", ["stage1.model.base_filters=4"])


@pytest.fixture(scope="module")
def run_b(small_data_file, tmp_path_factory):
    return _smoke_run(small_data_file[0], tmp_path_factory.mktemp("ensemble"), "b", ["two_stage=false"])


@pytest.fixture(scope="module")
def run_seed43(small_data_file, tmp_path_factory):
    return _smoke_run(small_data_file[0], tmp_path_factory.mktemp("ensemble"), "seed43", ["seed=43", "two_stage=false"])


def _copy(run_dir, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(run_dir, target)
    return target


def test_every_run_records_which_training_images_its_holdout_is(run_a, small_data_file):
    from marsseg.data.load import load_dataset, train_sha256

    out, m = run_a
    identity = m["holdout_identity"]
    dataset = load_dataset(small_data_file[0])
    assert identity["train_sha256"] == train_sha256(dataset.images, dataset.masks) == m["data"]["train_sha256"]
    assert identity["settings"]["seed"] == 42 and identity["settings"]["val_fraction"] == 0.25
    assert len(identity["rows"]) == len(set(identity["rows"])) == m["data"]["n_val"]
    assert sorted(identity["tune"] + identity["report"]) == list(range(m["data"]["n_val"]))
    assert (len(identity["tune"]), len(identity["report"])) == (m["holdout"]["n_tune"], m["holdout"]["n_report"])
    # The recorded rows are the images the run reported on: their truth is the reporting confusion's row sums.
    masks = dataset.masks[np.asarray(identity["rows"])][np.asarray(identity["report"])]
    truth = np.bincount(masks.ravel(), minlength=5)
    np.testing.assert_array_equal(np.array(m["confusion_report"]).sum(axis=1), truth)
    assert json.loads((out / "metrics.json").read_text())["holdout_identity"] == identity


def test_two_runs_on_one_holdout_make_both_submissions_and_a_summary(run_a, run_b, tmp_path, capsys):
    from marsseg.cli.main import main
    from marsseg.competition import MARS
    from marsseg.submission.formats import read_submission

    (a, ma), (b, mb) = run_a, run_b
    out = tmp_path / "ab"
    assert main(["ensemble", str(a), str(b), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(f"member {a}: stage {ma['final_stage']}")
    assert lines[1].startswith(f"member {b}: stage 1") and lines[2].startswith("ensemble of 2 runs: reporting")
    assert {p.name for p in out.iterdir()} == {"submission.csv", "submission_rle.csv", "ensemble.json"}
    pixels = read_submission(out / "submission.csv", 24)
    rle = read_submission(out / "submission_rle.csv", 24)
    assert pixels.layout == MARS.submission_layout == "pixels" and rle.layout == "rle"
    assert (pixels.masks == rle.masks).all() and set(np.unique(pixels.masks)) <= {1, 2, 3, 4}
    summary = json.loads((out / "ensemble.json").read_text())
    assert [r["run"] for r in summary["members"]] == [str(a), str(b)]
    for row, m in zip(summary["members"], (ma, mb)):
        # Each member, predicted again from its saved models, scores what its run reported on the same images.
        assert row["val_miou"] == pytest.approx(m["val_miou_final"], abs=1e-9) == row["val_miou_recorded"]
        assert row["final_stage"] == m["final_stage"] and row["stage1_models"] == 2
    best = max(r["val_miou"] for r in summary["members"])
    assert summary["gain_over_best_member"] == pytest.approx(summary["val_miou_final"] - best)
    lo, hi = summary["val_miou_final_ci95"]
    assert 0.0 <= lo <= hi <= 1.0 and 0.0 <= summary["val_miou_final_tuned"] <= 1.0
    assert summary["holdout"]["n_report"] == ma["holdout"]["n_report"] and summary["n_test"] == 24
    confusion = np.array(summary["confusion_report"])
    assert confusion.sum() == ma["holdout"]["n_report"] * 64 * 128
    assert summary["post"]["settings_from"] == str(a) and set(summary["post"]) >= {"tta", "class_bias", "morphology"}
    assert summary["layouts"] == {"submission.csv": "pixels", "submission_rle.csv": "rle"}


def test_given_weights_one_and_zero_are_the_first_run_alone(run_a, run_b, tmp_path, capsys):
    from marsseg.cli.main import main

    (a, ma), (b, _) = run_a, run_b
    out = tmp_path / "a_only"
    assert main(["ensemble", str(a), str(b), "--out", str(out), "--weights", "1,0"]) == 0
    assert "(weights 1.00, 0.00, given)" in capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads((out / "ensemble.json").read_text())
    assert summary["weights"] == [1.0, 0.0] and summary["weights_scheme"] == "given"
    assert summary["val_miou_final"] == pytest.approx(ma["val_miou_final"], abs=1e-9)
    assert (out / "submission_rle.csv").read_bytes() == (a / "submission_rle.csv").read_bytes()


def test_tuned_weights_are_chosen_from_the_tuning_rows_alone(run_a, run_b, small_data_file, tmp_path, monkeypatch):
    import marsseg.pipeline.ensemble as ens
    from marsseg.data.load import load_dataset

    seen = {}
    real = ens.tuned_weights

    def spy(probs, masks):
        seen["masks"], seen["n"] = masks, [len(p) for p, _ in probs]
        return real(probs, masks)

    monkeypatch.setattr(ens, "tuned_weights", spy)
    lines = []
    summary = ens.ensemble([run_a[0], run_b[0]], tmp_path / "tuned", log=lines.append, weights="tuned")
    identity = run_a[1]["holdout_identity"]
    holdout_masks = load_dataset(small_data_file[0]).masks[np.asarray(identity["rows"])]
    assert seen["n"] == [len(identity["tune"])] * 2
    np.testing.assert_array_equal(seen["masks"], holdout_masks[np.asarray(identity["tune"])])
    assert summary["weights_scheme"] == "tuned" and sum(summary["weights"]) == pytest.approx(1.0)
    assert summary["weights_search"]["candidates"] == 11 and lines[-1].startswith("weights ")
    assert (tmp_path / "tuned" / "submission.csv").is_file()


@pytest.mark.parametrize(
    ("weights", "message"), [("1,2,3", "gives 3 number(s) for 2 runs"), ("x", "give equal, tuned")]
)
def test_bad_weights_are_refused_in_one_line_before_anything_is_written(run_a, run_b, tmp_path, weights, message):
    out = tmp_path / "refused"
    assert message in one_line_error(run_cli("ensemble", run_a[0], run_b[0], "--out", out, "--weights", weights))
    assert not out.exists()


@pytest.mark.parametrize("name", ["a", "b"])
def test_one_run_alone_reproduces_its_reported_scores_and_its_submission(request, tmp_path, name):
    """Run a's final stage may be 2 (it was when written), b's is 1: both paths rebuilt from the saved models."""
    from marsseg.pipeline.ensemble import ensemble

    run_dir, m = request.getfixturevalue(f"run_{name}")
    summary = ensemble([run_dir], tmp_path / "one", log=lambda *_: None)
    assert summary["val_miou_final"] == pytest.approx(m["val_miou_final"], abs=1e-9)
    assert summary["val_miou_final_ci95"] == pytest.approx(m["val_miou_final_ci95"], abs=1e-9)
    assert summary["val_miou_final_tuned"] == pytest.approx(m["val_miou_final_tuned"], abs=1e-9)
    assert summary["gain_over_best_member"] == 0.0 and summary["members"][0]["final_stage"] == m["final_stage"]
    # The test set too: predicted as the run predicted it (stage 1's test probabilities kept as float16 as it keeps
    # them), the same labels byte for byte.
    for file in ("submission.csv", "submission_rle.csv"):
        assert (tmp_path / "one" / file).read_bytes() == (run_dir / file).read_bytes(), file


def test_runs_at_another_seed_are_refused_with_the_reason_and_nothing_is_written(run_a, run_seed43, tmp_path):
    (a, ma), (other, mo) = run_a, run_seed43
    assert mo["holdout_identity"]["rows"] != ma["holdout_identity"]["rows"]
    out = tmp_path / "refused"
    line = one_line_error(run_cli("ensemble", a, other, "--out", out))
    assert f"{a} and {other} were validated on different hold-outs: different seeds (42 and 43)" in line
    assert not out.exists()


def test_a_run_missing_a_model_file_is_refused_naming_the_file_and_how_to_fetch_it(run_a, run_b, tmp_path):
    from marsseg.errors import EnsembleError
    from marsseg.pipeline.ensemble import ensemble

    copy = _copy(run_b[0], tmp_path)
    (copy / "model_stage1_fold2.keras").unlink()
    out = tmp_path / "refused"
    line = one_line_error(run_cli("ensemble", run_a[0], copy, "--out", out))
    assert f"{copy}: missing model_stage1_fold2.keras" in line and "marsseg submit --models" in line
    assert not out.exists()
    if run_a[1]["final_stage"] == 2:  # stage 2's model is needed only where stage 2 was final
        copy2 = _copy(run_a[0], tmp_path, "copy2")
        (copy2 / "model_stage2.keras").unlink()
        with pytest.raises(EnsembleError, match="missing model_stage2.keras"):
            ensemble([copy2], out)
        assert not out.exists()


def test_runs_from_before_the_holdout_was_recorded_or_unfinished_are_refused(run_a, run_b, tmp_path):
    from marsseg.errors import EnsembleError
    from marsseg.pipeline.ensemble import ensemble

    old = _copy(run_b[0], tmp_path, "old")
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["holdout_identity"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(EnsembleError, match="records no holdout_identity .*train it again"):
        ensemble([run_a[0], old], tmp_path / "x")
    unfinished = _copy(run_b[0], tmp_path, "unfinished")
    (unfinished / "metrics.json").unlink()
    with pytest.raises(EnsembleError, match="no metrics.json, so not a finished run folder"):
        ensemble([unfinished], tmp_path / "x")
    crashed = _copy(run_b[0], tmp_path, "crashed")
    (crashed / "metrics.json").write_text(json.dumps({**metrics, "final_stage": 0}))
    with pytest.raises(EnsembleError, match="stage 1 crashed"):
        ensemble([crashed], tmp_path / "x")
    with pytest.raises(EnsembleError, match="--out .* is the run folder"):
        ensemble([run_b[0]], run_b[0])
    assert not (tmp_path / "x").exists()


def test_a_missing_run_folder_or_other_data_is_refused_in_one_line(run_b, tmp_path):
    from marsseg.data.synth import make_synthetic, save_synthetic

    out = tmp_path / "refused"
    line = one_line_error(run_cli("ensemble", run_b[0], tmp_path / "nowhere", "--out", out))
    assert "nowhere: no such run folder" in line
    other = tmp_path / "other.npz"
    save_synthetic(make_synthetic(n_train=96, n_test=24, seed=8), other)
    line = one_line_error(run_cli("ensemble", run_b[0], "--data", other, "--out", out))
    assert f"{other}: its training set is not the one {run_b[0]} was trained on" in line
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    assert f"{bad}: not an npz file" in one_line_error(run_cli("ensemble", run_b[0], "--data", bad, "--out", out))
    assert not out.exists()


def test_holdout_difference_names_the_first_reason():
    from marsseg.pipeline.members import holdout_difference

    base = {
        "train_sha256": "a" * 64,
        "settings": {"seed": 1, "val_fraction": 0.2, "report_fraction": 0.5, "max_train": 0, "clean": {"on": 1}},
        "rows": [3, 1, 2],
        "tune": [0],
        "report": [1, 2],
    }
    assert holdout_difference(base, json.loads(json.dumps(base))) is None
    assert holdout_difference(base, {**base, "train_sha256": "b" * 64}).startswith("different data")
    # The same rows are the same hold-out, whatever a setting says; different rows are named by the setting.
    assert holdout_difference(base, {**base, "settings": {**base["settings"], "report_fraction": 0.4}}) is None
    moved = {**base, "report": [2, 1], "settings": {**base["settings"], "val_fraction": 0.3}}
    assert holdout_difference(base, moved) == "different val fraction settings (0.2 and 0.3)"
    assert "same settings" in holdout_difference(base, {**base, "rows": [1, 2, 3]})


@pytest.mark.parametrize("run_tta", ["auto", "off"])
@pytest.mark.parametrize("final_tta", [True, False])
def test_a_stage_2_member_gets_the_input_its_run_gave_it_whatever_the_ensemble_chooses(monkeypatch, run_tta, final_tta):
    """Stage 2's test input is stage 1's flip-TTA'd probabilities unless the run's post.tta was off, whether or not
    the ensemble's own choice uses flip TTA."""
    import marsseg.pipeline.ensemble as ens

    plain = np.full((2, 4, 6, 5), 0.2, np.float32)
    flipped = np.full((2, 4, 6, 5), 0.3, np.float16)
    seen = {}

    def stage2_probs(model, x, tta):
        seen["input"], seen["tta"] = x, tta
        return np.zeros(plain.shape, np.float32), (np.ones(plain.shape, np.float32) if tta else None), 1.0

    monkeypatch.setattr(ens, "ensemble_probs", lambda models, x: plain)
    monkeypatch.setattr(ens, "stage1_flip", lambda models, images, kept: flipped)
    monkeypatch.setattr(ens, "stage2_probs", stage2_probs)
    member = ens.Predictor.__new__(ens.Predictor)
    member.stage1, member.stage2, member.kept_float16 = ["fold model"], "stage 2", True
    member.flip_input = run_tta != "off"
    out = member.test(np.zeros((2, 4, 6), np.uint8), final_tta)
    expected = flipped if run_tta != "off" else plain.astype(np.float16)
    np.testing.assert_array_equal(seen["input"][..., 1:], expected.astype(np.float32))
    assert seen["tta"] is final_tta and out.mean() == (1.0 if final_tta else 0.0)
