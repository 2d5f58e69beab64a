import json
from dataclasses import replace

import numpy as np
import pytest

from tests.conftest import one_line_error, run_cli
from tests.pipeline.fakes import capture_state, seeded_fake_fit


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


class _Remembers:
    """A stand-in stage-1 model that knows exactly which images it trained on."""

    def __init__(self, fold, images):
        self.fold = fold
        self.seen = {image.tobytes() for image in images}


def test_out_of_fold_inputs_never_come_from_a_model_that_trained_on_the_image():
    from marsseg.config import preset
    from marsseg.pipeline.stages import check_out_of_fold, stage1_folds
    from marsseg.training.context import StageContext

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 64, 128), dtype=np.uint8)
    masks = rng.integers(0, 5, (30, 64, 128), dtype=np.uint8)
    fold_of = np.arange(30) % 3

    class Result:
        def __init__(self, model):
            self.model, self.seconds, self.epochs_run = model, 0.0, 1

    def fit(stage_cfg, data, **kwargs):
        return Result(_Remembers(kwargs["seed"], data.train_images))

    def predict(model, x):
        # channel 0: 1 where the model trained on the image; channel 1: which model answered
        grey = np.rint(x[..., 0] * 255).astype(np.uint8)
        out = np.zeros((*x.shape[:3], 5), np.float32)
        for i, image in enumerate(grey):
            out[i, ..., 0] = image.tobytes() in model.seen
            out[i, ..., 1] = model.fold
        return out

    import time

    outcome = stage1_folds(
        images,
        masks,
        fold_of,
        preset("smoke"),
        StageContext(log=lambda m: None, fit=fit, predict=predict),
        stage_end=time.monotonic() + 60,
    )
    assert outcome.covered.all() and len(outcome.folds) == 3
    assert (outcome.oof[..., 0] == 0).all(), "an image's stage-2 input came from a model trained on it"
    seeds = np.array([preset("smoke").seed + f for f in range(3)])
    assert np.array_equal(outcome.oof[:, 0, 0, 1], seeds[fold_of])
    check_out_of_fold(outcome)
    outcome.oof_model[0] = (outcome.oof_model[0] + 1) % 3  # a wiring bug: a model that trained on row 0
    with pytest.raises(AssertionError, match="row 0"):
        check_out_of_fold(outcome)


def test_fold_models_trains_only_the_first_folds_each_with_the_whole_stage_time():
    """data.fold_models=1 of 4 folds: one model on the other three folds' rows, given all of stage 1's time; only
    its own fold is covered out of fold (stage 2's rows)."""
    import time
    from dataclasses import replace

    from marsseg.config import preset, validate
    from marsseg.errors import ConfigError
    from marsseg.pipeline.stages import stage1_folds
    from marsseg.training.context import StageContext

    images = np.zeros((40, 64, 128), np.uint8)
    masks = np.ones((40, 64, 128), np.uint8)
    fold_of = np.arange(40) % 4
    cfg = preset("smoke")
    cfg = replace(cfg, data=replace(cfg.data, folds=4, fold_models=1))
    calls = []

    class Result:
        model, seconds, epochs_run = None, 0.0, 1

    def fit(stage_cfg, data, **kwargs):
        calls.append((len(data.train_images), len(data.val_x), kwargs["deadline"].at))
        return Result()

    stage_end = time.monotonic() + 100
    predict = lambda m, x: np.full((*x.shape[:3], 5), 0.2, np.float32)  # noqa: E731
    outcome = stage1_folds(
        images, masks, fold_of, cfg, StageContext(log=lambda m: None, fit=fit, predict=predict), stage_end=stage_end
    )
    assert [(n_train, n_val) for n_train, n_val, _ in calls] == [(30, 10)]
    assert calls[0][2] == pytest.approx(stage_end)  # the one model may use all of stage 1's time
    assert np.array_equal(outcome.covered, fold_of == 0) and outcome.planned_folds == 1
    with pytest.raises(ConfigError, match="data.fold_models"):
        validate(replace(cfg, data=replace(cfg.data, fold_models=5)))


def _fake_fit(monkeypatch):
    """Replace training with an untrained network so budget and fallback logic run in a second or two. Seeded:
    unseeded, its weights (and whether flip TTA changes any label) hung on which tests ran before."""
    seeded_fake_fit(monkeypatch)


def test_a_failing_stage_2_leaves_the_validated_stage_1_submission(small_data_file, tmp_path, monkeypatch):
    from marsseg.config import preset
    from marsseg.pipeline import stage2_phase
    from marsseg.pipeline.postprocess import clean_masks, labels_from_probs
    from marsseg.pipeline.run import run
    from marsseg.submission.formats import read_submission
    from marsseg.submission.scoring import score_masks

    _fake_fit(monkeypatch)

    def broken(run):
        raise RuntimeError("injected stage-2 failure")

    monkeypatch.setattr(stage2_phase, "run_stage2", broken)
    runs = capture_state(monkeypatch)
    lines = []
    m = run(preset("smoke"), small_data_file[0], tmp_path / "run", log=lines.append, submissions_dir=None, verbose=0)
    assert m["final_stage"] == 1 and m["stage2_status"].startswith("failed: RuntimeError: injected")
    morphology = m["post"]["stage1"]["morphology"]
    assert m["val_miou_final_tuned"] == (morphology["with"] if morphology["used"] else morphology["without"])
    (state,) = runs
    hold, choice = state.split.holdout, state.stage1_choice
    probs = state.stage1_holdout_probs[1] if choice["tta"]["used"] else state.stage1_holdout_probs[0]
    labels = labels_from_probs(probs[hold.report], class_bias=choice["bias_values"])
    if morphology["used"]:
        labels = clean_masks(labels, 12, 12)
    assert m["val_miou_final"] == score_masks(hold.masks[hold.report], labels)["miou"]
    assert any("stage-1 submission stands" in line for line in lines)
    assert read_submission(tmp_path / "run" / "submission.csv", 24).n_images == 24
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final_stage"] == 1


@pytest.mark.parametrize("time_for_tta", [True, False, "fails"])
def test_stage_1_gets_its_flip_tta_back_when_stage_2_is_not_used(small_data_file, tmp_path, monkeypatch, time_for_tta):
    """With stage 2 ahead, the fallback is written without TTA; if stage 1 stays final, TTA is added when the
    budget allows, and otherwise the reported hold-out scores (tuning and reporting part) are the ones without TTA."""
    from marsseg.config import override, preset
    from marsseg.data.load import load_dataset
    from marsseg.pipeline import stage1_submission, stage2_phase
    from marsseg.pipeline.postprocess import labels_from_probs
    from marsseg.pipeline.run import run
    from marsseg.pipeline.stages import ensemble_probs
    from marsseg.submission.formats import read_submission
    from marsseg.submission.scoring import score_masks
    from marsseg.training.feed import network_input

    _fake_fit(monkeypatch)
    monkeypatch.setattr(stage2_phase, "run_stage2", lambda run: "not used: injected")
    runs = []
    add_tta = stage1_submission.add_stage1_tta
    monkeypatch.setattr(stage1_submission, "add_stage1_tta", lambda run: (runs.append(run), add_tta(run)))
    if not time_for_tta:  # stage1_submission's name for budget.test_seconds
        monkeypatch.setattr(stage1_submission, "test_seconds", lambda *args: 1e6)
    if time_for_tta == "fails":

        def broken(run):
            runs.append(run)
            raise MemoryError("injected")

        monkeypatch.setattr(stage1_submission, "add_stage1_tta", broken)
    cfg = override(preset("smoke"), ["post.tta=on", "post.morphology=off", "post.class_bias=off"])
    lines = []
    m = run(cfg, small_data_file[0], tmp_path / "run", log=lines.append, submissions_dir=None, verbose=0)
    (state,) = runs
    test_x = network_input(load_dataset(small_data_file[0]).test_images)
    ensemble = lambda x: ensemble_probs(state.stage1.models, x)  # noqa: E731
    plain = ensemble(test_x)
    stored = plain.astype(np.float16).astype(np.float32)  # the run keeps the test probabilities in float16
    tta_probs = 0.5 * (stored + ensemble(np.ascontiguousarray(test_x[:, :, ::-1]))[:, :, ::-1])
    with_tta = labels_from_probs(tta_probs.astype(np.float16).astype(np.float32))
    without = labels_from_probs(plain)
    hold, probs1 = state.split.holdout, state.stage1_holdout_probs
    tune, report = hold.masks[hold.tune], hold.masks[hold.report]
    written = read_submission(tmp_path / "run" / "submission.csv", 24).masks
    assert m["final_stage"] == 1 and m["post"]["stage1"]["tta"]["used"] is True
    assert (with_tta != without).mean() > 0.001, "TTA must change some labels for this test to mean anything"
    if time_for_tta is True:
        assert (written == with_tta).all() and m["final_tta"] is True
        assert m["val_miou_final_tuned"] == m["post"]["stage1"]["tta"]["with"]
        assert m["val_miou_final"] == score_masks(report, labels_from_probs(probs1[1][hold.report]))["miou"]
        assert any("stage 1 with flip TTA submission written" in line for line in lines)
    else:
        assert (written == without).all() and m["final_tta"] is False
        assert m["val_miou_final_tuned"] == score_masks(tune, labels_from_probs(probs1[0][hold.tune]))["miou"]
        assert m["val_miou_final"] == score_masks(report, labels_from_probs(probs1[0][hold.report]))["miou"]
        assert m["val_miou_final_tuned"] == m["post"]["stage1"]["tta"]["without"]
        assert any(
            ("flip TTA not added" if time_for_tta is False else "flip TTA failed (MemoryError: injected)") in line
            for line in lines
        )
        assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final_tta"] is False


def test_class_biases_fitted_on_the_hold_out_are_applied_to_the_test_set(small_data_file, tmp_path, monkeypatch):
    from marsseg.config import override, preset
    from marsseg.data.load import load_dataset
    from marsseg.pipeline import stage2_phase
    from marsseg.pipeline.postprocess import fit_class_bias, labels_from_probs
    from marsseg.pipeline.run import run
    from marsseg.pipeline.stages import ensemble_probs
    from marsseg.submission.formats import read_submission
    from marsseg.submission.scoring import score_masks
    from marsseg.training.feed import network_input

    _fake_fit(monkeypatch)
    monkeypatch.setattr(stage2_phase, "run_stage2", lambda run: "not used: injected")
    runs = capture_state(monkeypatch)
    cfg = override(preset("smoke"), ["post.tta=off", "post.morphology=off", "post.class_bias=on"])
    m = run(cfg, small_data_file[0], tmp_path / "run", log=lambda line: None, submissions_dir=None, verbose=0)
    (state,) = runs
    hold, probs1 = state.split.holdout, state.stage1_holdout_probs
    chosen = m["post"]["stage1"]["class_bias"]
    assert chosen["used"] is True and set(chosen["values"]) == {"soil", "bedrock", "sand", "big rock"}
    assert chosen["with"] is not None and chosen["fitted"] >= chosen["without"]
    bias = np.array([0.0] + list(chosen["values"].values()), np.float32)
    np.testing.assert_array_equal(bias, state.stage1_choice["bias_values"])
    plain = ensemble_probs(state.stage1.models, network_input(load_dataset(small_data_file[0]).test_images))
    expected = labels_from_probs(plain, class_bias=bias)
    assert (expected != labels_from_probs(plain)).mean() > 0.001, (
        "the biases must change labels for this to mean anything"
    )
    assert (read_submission(tmp_path / "run" / "submission.csv", 24).masks == expected).all()
    for part, key in ((hold.tune, "val_miou_final_tuned"), (hold.report, "val_miou_final")):
        labels = labels_from_probs(probs1[0][part], class_bias=bias)
        assert m[key] == score_masks(hold.masks[part], labels)["miou"], key
    # The biases were fitted on the tuning part alone: fitting them there again gives the same values.
    refitted, _ = fit_class_bias(probs1[0][hold.tune], hold.masks[hold.tune])
    np.testing.assert_array_equal(refitted, bias)


def test_a_budget_too_small_for_stage_2_skips_it_and_still_submits(small_data_file, tmp_path):
    from marsseg.config import preset
    from marsseg.pipeline.run import run
    from marsseg.submission.formats import read_submission

    cfg = replace(preset("smoke"), budget_seconds=2.0)
    lines = []
    m = run(cfg, small_data_file[0], tmp_path / "run", log=lines.append, submissions_dir=None, verbose=0)
    assert m["final_stage"] == 1 and m["stage2_status"].startswith("skipped")
    assert m["stage1"]["folds_trained"] == 1, "the second fold does not fit in the budget"
    assert m["stage1"]["fold_stop_reason"] == ["budget"]
    assert read_submission(tmp_path / "run" / "submission.csv", 24).n_images == 24
    assert any("the stage-1 submission stands" in line for line in lines)


def test_train_command_rejects_bad_input_in_one_line(small_data_file, tmp_path):
    data = small_data_file[0]
    assert "--budget" in one_line_error(
        run_cli("train", "--preset", "smoke", "--data", data, "--out", tmp_path / "r", "--budget", "0")
    )
    assert "stage1.train.epoch" in one_line_error(
        run_cli("train", "--preset", "smoke", "--data", data, "--set", "stage1.train.epoch=3")
    )
    assert "preset" in one_line_error(run_cli("train", "--preset", "huge", "--data", data))
    assert "stage1_share" in one_line_error(
        run_cli("train", "--preset", "smoke", "--data", data, "--out", tmp_path / "r", "--set", "stage1_share=1.5")
    )
    assert "class_weight_power" in one_line_error(
        run_cli(
            "train",
            "--preset",
            "smoke",
            "--data",
            data,
            "--out",
            tmp_path / "r",
            "--set",
            "stage2.loss.class_weight_power=-1",
        )
    )
    assert "post.class_bias" in one_line_error(
        run_cli("train", "--preset", "smoke", "--data", data, "--out", tmp_path / "r", "--set", "post.class_bias=maybe")
    )
    assert not (tmp_path / "r").exists(), "a rejected setting writes nothing"
    assert "no such file" in one_line_error(run_cli("train", "--preset", "smoke", "--data", tmp_path / "none.npz"))


@pytest.mark.slow
def test_train_command_end_to_end(small_data_file, tmp_path):
    from marsseg.submission.formats import read_submission

    result = run_cli(
        "train",
        "--preset",
        "smoke",
        "--data",
        small_data_file[0],
        "--out",
        tmp_path / "run",
        "--set",
        "post.tta=off",
        "--quiet",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "hold-out mIoU" in result.stdout
    assert read_submission(tmp_path / "run" / "submission.csv", 24).n_images == 24
    assert len(list((tmp_path / "submissions").glob("run-stage*.csv"))) == 1
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["post"]["stage1"]["tta"]["with"] is None and m["post"]["stage1"]["tta"]["used"] is False


@pytest.mark.slow
def test_demo_scores_the_pipeline_against_the_synthetic_truth(tmp_path):
    from marsseg.config import preset
    from marsseg.pipeline.demo import run_pipeline_demo

    lines = []
    out = run_pipeline_demo(tmp_path, preset("smoke"), n_train=80, n_test=20, log=lines.append)
    assert 0.0 <= out["test"]["miou"] <= 1.0
    assert any(line.startswith("test mIoU (leaderboard rule) against the synthetic truth") for line in lines)


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
