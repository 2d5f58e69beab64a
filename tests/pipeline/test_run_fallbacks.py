"""The run's choices and fallbacks: stage 2 failing, not used or out of budget; stage 1's flip TTA and class biases."""

import json
from dataclasses import replace

import numpy as np
import pytest

from tests.pipeline.fakes import capture_state, seeded_fake_fit


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
