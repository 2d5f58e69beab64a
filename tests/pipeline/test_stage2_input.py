"""Stage 2 is given, in training, on the hold-out and on the test set alike, stage 1's flip-TTA'd probabilities; its
own flipped view carries stage 1's prediction of the flipped image; the input calibration gap is measured."""

import time

import numpy as np
import pytest

from tests.pipeline.fakes import FitResult, capture_state, flip_tta, seeded_fake_fit


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _lopsided(x, shift=0.0):
    """Stage-1 stand-in whose answer depends on the column: flip TTA changes it."""
    columns = np.linspace(-1, 1, x.shape[2])[None, None, :, None]
    grey = x[..., :1]
    return _softmax(np.concatenate([grey * columns + shift, 1 - grey, grey, columns * (1 - grey), 0 * grey], -1))


def test_the_tta_of_a_flipped_image_is_the_flipped_tta():
    """The identity stage 2's TTA relies on: the set {identity, flip} is closed under the flip."""
    from marsseg.pipeline.postprocess import predict_tta

    x = np.random.default_rng(0).random((3, 8, 12, 1)).astype(np.float32)
    tta = predict_tta(_lopsided, x)
    flipped = np.ascontiguousarray(x[:, :, ::-1])
    assert not np.allclose(_lopsided(flipped), _lopsided(x)[:, :, ::-1]), "the stand-in must not commute with flips"
    np.testing.assert_allclose(predict_tta(_lopsided, flipped), tta[:, :, ::-1], atol=1e-7)


def test_out_of_fold_rows_are_each_fold_models_tta_prediction():
    from marsseg.config import override, preset
    from marsseg.pipeline.stages import stage1_folds
    from marsseg.training.context import StageContext

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 8, 12), dtype=np.uint8)
    masks = rng.integers(0, 5, (12, 8, 12), dtype=np.uint8)
    fold_of = np.arange(12) % 2

    def predict(model, x):  # model: the fold's seed, 42 + f
        return _lopsided(x, shift=0.5 * (model - 42))

    for tta in ("auto", "off"):
        outcome = stage1_folds(
            images,
            masks,
            fold_of,
            override(preset("smoke"), [f"post.tta={tta}"]),
            StageContext(log=lambda m: None, fit=lambda *args, **kw: FitResult(kw["seed"]), predict=predict),
            stage_end=time.monotonic() + 60,
        )
        for run in outcome.folds:
            x = images[run.val_index].astype(np.float32)[..., None] / 255
            single = lambda b, m=run.result.model: predict(m, b)  # noqa: E731
            expected = flip_tta(single, x) if tta == "auto" else single(x)
            np.testing.assert_allclose(outcome.oof[run.val_index], expected, atol=1e-6)
        assert not np.allclose(flip_tta(single, x), single(x)), "TTA must matter for this test to mean anything"


def test_stage_2_flipped_view_carries_stage_1s_prediction_of_the_flipped_image():
    """Stage 2's flipped pass gets [flip(image), stage-1 TTA of flip(image)]; an untrained residual stage 2 (which
    returns its input probabilities) then scores exactly as stage 1 with TTA, with or without its own TTA."""
    from marsseg.pipeline.postprocess import predict_tta
    from marsseg.pipeline.stages import member_probs, stage2_probs

    x = np.random.default_rng(1).random((4, 8, 12, 1)).astype(np.float32)
    models = [0.0, 0.7]
    _, tta1 = member_probs(models, x, True, predict=lambda m, b: _lopsided(b, m))
    seen = []

    def identity_stage2(model, batch):
        seen.append(batch)
        return batch[..., 1:]

    plain2, tta2, rate = stage2_probs("model", np.concatenate([x, tta1], -1), True, predict=identity_stage2)
    flipped = np.ascontiguousarray(x[:, :, ::-1])
    stage1_of_flipped = np.mean([predict_tta(lambda b, m=m: _lopsided(b, m), flipped) for m in models], axis=0)
    np.testing.assert_allclose(seen[1][..., 0:1], flipped)
    np.testing.assert_allclose(seen[1][..., 1:], stage1_of_flipped, atol=1e-6)
    np.testing.assert_allclose(plain2, tta1, atol=1e-7)
    np.testing.assert_allclose(tta2, tta1, atol=1e-7)
    assert rate > 0


def test_a_run_gives_stage_2_the_tta_stage_1_probabilities_everywhere(small_data_file, tmp_path, monkeypatch):
    from marsseg.config import override, preset
    from marsseg.data.load import load_dataset
    from marsseg.pipeline import stage2_phase, testset
    from marsseg.pipeline.calibration import temper
    from marsseg.pipeline.run import run
    from marsseg.pipeline.stages import ensemble_probs
    from marsseg.training.feed import network_input
    from marsseg.training.fit import predict_probs

    calls, seen = [], {}
    seeded_fake_fit(monkeypatch, calls)
    runs = capture_state(monkeypatch)
    probs2, labels2 = stage2_phase.stage2_probs, testset.stage2_labels
    monkeypatch.setattr(
        stage2_phase, "stage2_probs", lambda m, x, *a, **k: (seen.update(val=x), probs2(m, x, *a, **k))[1]
    )
    monkeypatch.setattr(
        testset, "stage2_labels", lambda m, t, p, *a: (seen.update(test=p.copy()), labels2(m, t, p, *a))[1]
    )
    cfg = override(preset("smoke"), ["post.tta=on"])
    m = run(cfg, small_data_file[0], tmp_path / "run", log=lambda line: None, submissions_dir=None, verbose=0)
    (state,) = runs
    assert m["stage2_status"] == "ok"
    models = state.stage1.models

    def ensemble_tta(images):
        x = network_input(images)
        return np.mean([flip_tta(lambda b, mm=mm: predict_probs(mm, b), x) for mm in models], axis=0)

    hold = ensemble_tta(state.split.holdout.images)
    np.testing.assert_allclose(seen["val"][..., 1:], hold, atol=1e-6)
    test_images = load_dataset(small_data_file[0]).test_images
    np.testing.assert_allclose(seen["test"].astype(np.float32), ensemble_tta(test_images), atol=2e-3)
    plain = ensemble_probs(models, network_input(test_images))
    assert np.abs(plain - ensemble_tta(test_images)).max() > 1e-2, "TTA must matter for this test to mean anything"
    dev_images = state.split.dev_images
    for f, fold in enumerate(state.stage1.folds):
        x = network_input(dev_images[fold.val_index])
        expected = flip_tta(lambda b, mm=models[f]: predict_probs(mm, b), x)
        np.testing.assert_allclose(state.stage1.oof[fold.val_index], expected, atol=1e-6)
    # Stage 2 trained on those out-of-fold rows, tempered by the run's one temperature.
    stage2_call = calls[-1]
    by_image = {}
    for r in np.flatnonzero(state.stage1.covered):
        by_image.setdefault(dev_images[r].tobytes(), []).append(r)
    tempered = temper(state.stage1.oof, state.temperature)
    for image, extras in zip(stage2_call["train_images"], stage2_call["train_extras"]):
        assert any(np.allclose(extras, tempered[r], atol=1e-6) for r in by_image[image.tobytes()])
    assert stage2_call["train_extras"].shape[-1] == 5 and state.temperature == m["stage2_input"]["temperature"]


def test_calibration_measures():
    from marsseg.pipeline.calibration import Reliability, fit_temperature, temper

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 16, 16, 5)) * 2
    logits[..., 0] = -30  # background: no mass, so the renormalisation over 1-4 changes nothing
    truth_probs = _softmax(logits)
    draws = (rng.random((40, 16, 16, 1)) > np.cumsum(truth_probs, -1)).sum(-1)
    masks = np.minimum(draws, 4).astype(np.uint8)
    masks[:, 0, 0] = 0  # unlabelled: not counted
    calibrated = Reliability()
    calibrated.add(truth_probs, masks)
    assert calibrated.pixels == 40 * (16 * 16 - 1)
    assert calibrated.ece < 0.02, "the probabilities the labels were drawn from are calibrated"
    sharp = Reliability()
    sharp.add(temper(truth_probs, 0.5), masks)
    assert sharp.ece > 0.05 and sharp.nll > calibrated.nll
    assert fit_temperature(temper(truth_probs, 0.5), masks) == pytest.approx(2.0, rel=0.15)
    np.testing.assert_array_equal(temper(truth_probs, 3.0).argmax(-1), truth_probs.argmax(-1))
    np.testing.assert_allclose(temper(truth_probs, 3.0).sum(-1), 1.0, atol=1e-5)
    single = np.zeros((1, 1, 2, 5), np.float32)
    single[0, 0, :, 1:3] = [[0.8, 0.2], [0.8, 0.2]]
    known = Reliability()
    known.add(single, np.array([[[1, 2]]], np.uint8))
    assert known.nll == pytest.approx(-(np.log(0.8) + np.log(0.2)) / 2, rel=1e-5)
    assert known.ece == pytest.approx(abs(0.8 - 0.5), rel=1e-5), "both pixels in the 0.8 bin, one right"


def test_the_input_gap_keeps_a_temperature_only_where_it_narrows_the_tuning_gap():
    from marsseg.pipeline.calibration import InputGap, temper

    rng = np.random.default_rng(3)
    mean = _softmax(rng.normal(size=(20, 16, 16, 5)) * 2)
    masks = np.minimum((rng.random((20, 16, 16, 1)) > np.cumsum(mean, -1)).sum(-1), 4).astype(np.uint8)
    members = [temper(mean, 0.5), temper(mean, 0.5)]  # single models twice as sure as their mean
    tune, report = np.arange(10), np.arange(10, 20)
    for fitted, kept in ((2.0, True), (0.5, False)):
        gap = InputGap(masks, tune, report, fitted)
        for p in members:
            gap.add(p)
        used, numbers = gap.finish(mean)
        assert used == (fitted if kept else 1.0) and numbers["temperature_fitted"] == fitted
        before, after = numbers["gap_before"], numbers["gap_after"]
        assert before["nll"] > 0.05 and before["ece"] > 0.05, "sharper than the mean: a wider NLL and ECE"
        if kept:
            assert abs(after["nll"]) < 1e-4 and abs(after["ece"]) < 1e-4, "T = 2 undoes the sharpening exactly"
        else:
            assert after["nll"] > before["nll"] and numbers["tuned"]["gap_after"]["nll"] > before["nll"] / 2
