import json

import numpy as np
import pytest

from tests.pipeline.fakes import capture_state


@pytest.fixture(scope="module")
def smoke_run(small_data_file, tmp_path_factory):
    """One real smoke-preset run, shared by the checks below (the fast suite's end-to-end test)."""
    from marsseg.config import preset
    from marsseg.pipeline.run import run

    out = tmp_path_factory.mktemp("smoke") / "run"
    subs = out.parent / "submissions"
    lines = []
    with pytest.MonkeyPatch.context() as patch:
        states = capture_state(patch)
        metrics = run(preset("smoke"), small_data_file[0], out, log=lines.append, submissions_dir=subs, verbose=0)
    smoke_state.extend(states)  # the run's `Run`, for the checks that compare with its models
    return out, subs, metrics, lines


smoke_state: list = []


def test_smoke_run_writes_every_file_and_a_valid_submission(smoke_run):
    from marsseg.competition import MARS
    from marsseg.submission.formats import read_submission

    out, subs, metrics, lines = smoke_run
    for name in ("config.json", "metrics.json", "submission.csv", "curves_stage1.png", "samples.png"):
        assert (out / name).stat().st_size > 0, name
    info = read_submission(out / "submission.csv", 24)  # every test image, whatever data.max_test says
    assert info.n_images == 24 and info.layout == MARS.submission_layout == "pixels"  # what Submit takes
    assert set(np.unique(info.masks)) <= {1, 2, 3, 4}
    rle = read_submission(out / "submission_rle.csv", 24)
    assert rle.layout == "rle" and (rle.masks == info.masks).all()
    copies = list(subs.glob("run-stage*-*.csv"))  # submission.format (rle by default) is the copy's layout
    assert len(copies) == 1 and copies[0].read_bytes() == (out / "submission_rle.csv").read_bytes()
    assert (out / "metrics.json").read_text() and json.loads((out / "metrics.json").read_text()) == json.loads(
        json.dumps(metrics, default=str)
    )


def test_smoke_run_folder_holds_the_listed_files_and_nothing_else(smoke_run):
    from marsseg.pipeline.outputs import expected_names

    out, _, m, _ = smoke_run
    assert m["stage1_status"] == "ok" and m["stage1"]["folds_trained"] == 2
    names = {p.name for p in out.iterdir()}
    assert names == expected_names([0, 1], stage2=True), names  # stage 2 trained (smoke: residual, always)
    assert {"model_stage1_fold1.keras", "model_stage1_fold2.keras", "model_stage2.keras"} <= names
    listed = m["outputs"]["files"]
    assert set(listed) == names - {"metrics.json"}
    assert listed == {name: (out / name).stat().st_size for name in listed}
    assert m["outputs"]["total_bytes"] == sum(listed.values())


def test_the_saved_models_reload_and_predict_what_the_run_predicted(smoke_run, small_synthetic):
    from marsseg.training.feed import network_input
    from marsseg.training.fit import predict_probs
    from marsseg.training.saved import load_run_model

    def same(reloaded, model, x):
        assert reloaded is not model and len(reloaded.weights) == len(model.weights)
        for a, b in zip(reloaded.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)
        # The smoke preset's models run eagerly, the reloaded (uncompiled) ones traced: the last bit may differ.
        np.testing.assert_allclose(predict_probs(reloaded, x), predict_probs(model, x), rtol=0, atol=1e-6)

    out = smoke_run[0]
    (state,) = smoke_state
    x = network_input(small_synthetic.test_images[:8])
    folds = [f.fold for f in state.stage1.folds]
    for fold, model in zip(folds, state.stage1.models):
        same(load_run_model(out / f"model_stage1_fold{fold + 1}.keras"), model, x)
    x2 = network_input(small_synthetic.test_images[:8], predict_probs(state.stage1.models[0], x))
    same(load_run_model(out / "model_stage2.keras"), state.stage2.model, x2)


def test_smoke_run_reports_both_stages_on_the_same_holdout(smoke_run):
    from marsseg.submission.scoring import mean_iou

    _, _, m, lines = smoke_run
    for key in ("val_miou_stage1", "val_miou_final", "val_miou_final_tuned"):
        assert 0.0 <= m[key] <= 1.0
    # The reporting part scores; the tuning part decides. Both are part of the hold-out, neither is empty.
    assert m["holdout"]["n_tune"] + m["holdout"]["n_report"] == m["data"]["n_val"]
    assert min(m["holdout"].values()) >= 1
    confusion = np.array(m["confusion_report"])
    assert confusion.shape == (5, 5) and confusion.sum() == m["holdout"]["n_report"] * 64 * 128
    assert mean_iou(confusion) == pytest.approx(m["val_miou_final"])
    lo, hi = m["val_miou_final_ci95"]
    assert 0.0 <= lo <= hi <= 1.0
    gap = m["stage2_input"]
    for key in ("oof_nll", "oof_ece", "ensemble_nll", "ensemble_ece", "temperature", "temperature_fitted"):
        assert np.isfinite(gap[key]), key
    for key in ("gap_before", "gap_after"):
        assert set(gap[key]) == {"nll", "ece"} and all(np.isfinite(v) for v in gap[key].values())
    assert gap["temperature"] in (1.0, gap["temperature_fitted"])
    assert gap["gap_before"]["nll"] == pytest.approx(gap["oof_nll"] - gap["ensemble_nll"])
    assert 0.0 <= gap["oof_ece"] <= 1.0 and gap["oof_nll"] > 0.0
    assert lines[-1].startswith("[marsseg] ") and f"mIoU {m['val_miou_final']:.4f}" in lines[-1]
    assert f"reporting hold-out ({m['holdout']['n_report']} images)" in lines[-1]
    assert m["stage2_status"] in ("ok",) or m["stage2_status"].startswith("not used")
    assert m["val_miou_stage2"] is not None and 0.0 <= m["val_miou_stage2"] <= 1.0
    assert m["final_stage"] == (2 if m["stage2_status"] == "ok" else 1)
    # The smoke preset's stage 2 is residual: scored before training, never kept below that score.
    assert m["stage2"]["residual"] is True
    assert m["stage2"]["early_stopping_val_miou"] >= m["stage2"]["before_training_val_miou"] >= 0.0
    assert set(m["val_iou_final"]) == {"soil", "bedrock", "sand", "big rock"}
    assert m["stage1"]["folds_trained"] == 2 and m["data"]["n_val"] > 0
    for stage in m["post"].values():
        for step in ("tta", "morphology"):
            assert stage[step]["without"] is not None and stage[step]["with"] is not None
    assert {"stage1", "stage2", "total"} <= set(m["seconds"])
    phase_lines = [line for line in lines if line.startswith("[marsseg] ")]
    assert any(" stage1 fold 1 |" in line for line in phase_lines)
    # The first line names what the run trains on (tests/training/test_runtime.py); every phase line after it, the time.
    assert phase_lines[0].startswith("[marsseg] Keras ") and "devices: CPU only; replicas 1" in phase_lines[0]
    assert all("budget left" in line for line in phase_lines[1:])
    assert m["runtime"]["replicas"] == 1 and m["runtime"]["gpus"] == [] and "keras" in m["runtime"]["packages"]


def test_config_json_round_trips_with_the_commit(smoke_run):
    from marsseg.config import load_config, preset

    out = smoke_run[0]
    assert load_config(out / "config.json") == preset("smoke")
    saved = json.loads((out / "config.json").read_text())
    assert saved["_run"]["git_commit"] and "data" in saved["_run"]


def test_the_run_declares_every_attribute_in_init_and_each_phase_fills_its_own(smoke_run, tmp_path):
    """`Run` is the benchmarks' and tests' public surface: a phase may fill an attribute, never add one."""
    from marsseg.config import preset
    from marsseg.pipeline.budget import Budget
    from marsseg.pipeline.run import Run
    from marsseg.training.context import StageContext

    (state,) = smoke_state
    context = StageContext.for_budget(Budget(60.0, lambda *_: None), lambda *_: None, 0)
    fresh = Run(preset("smoke"), tmp_path / "data.npz", tmp_path / "run", context=context)
    assert set(vars(state)) == set(vars(fresh))
    filled = ("loaded", "split", "plan", "stage1", "stage1_holdout_probs", "stage1_choice", "stage2", "final_stage")
    assert all(getattr(fresh, name) is None for name in filled)
    assert all(getattr(state, name) is not None for name in filled)
