"""fit_stage and predict_probs on small synthetic data: training, evaluation, the input pipeline per backend."""

import math

import numpy as np
import pytest


def test_fit_stage_trains_evaluates_the_main_head_and_predicts_probabilities(small_synthetic):
    from marsseg.config import preset
    from marsseg.training.context import StageContext, StageData
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage, predict_probs

    cfg = preset("smoke")
    s = small_synthetic
    x_val = network_input(s.images[32:48])
    data = StageData(s.images[:32], s.masks[:32], x_val, s.masks[32:48])
    result = fit_stage(cfg.stage1, data, augment_cfg=cfg.augment, seed=3, context=StageContext(verbose=0))
    assert result.monitor == "val_main_miou" and "val_main_miou" in result.history
    assert result.epochs_run == 1 and result.best_epoch == 1 and result.stop_reason == "epochs"
    assert 0.0 <= result.best_val_miou <= 1.0
    assert math.isclose(result.best_val_miou, result.history["val_main_miou"][0], rel_tol=1e-6)
    probs = predict_probs(result.model, x_val)
    assert probs.shape == (16, 64, 128, 5) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)


@pytest.mark.parametrize("rows", [1, 5, 8, 13, 16])
def test_predict_probs_goes_batch_by_batch_and_matches_keras_predict_row_for_row(rows, monkeypatch):
    import keras

    from marsseg.config import preset
    from marsseg.models.unet import build_unet, main_head
    from marsseg.training import fit

    model = build_unet(preset("smoke").stage1.model, 1, 5, name="s1")
    x = np.random.default_rng(rows).normal(size=(rows, 64, 128, 1)).astype("float32")
    expected = main_head(model).predict(x, batch_size=8, verbose=0)
    # Keras's `predict` builds a tf.data iterator per call (half speed on a pinned core beside a busy one).
    monkeypatch.setattr(keras.Model, "predict", lambda *a, **k: pytest.fail("predict_probs called Model.predict"))
    probs = fit.predict_probs(model, x, batch_size=8)
    assert probs.shape == (rows, 64, 128, 5) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_fit_stage_with_extra_channels_and_a_past_deadline_stops_after_one_batch(small_synthetic):
    import time

    from marsseg.config import preset
    from marsseg.training.context import Deadline, StageContext, StageData
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage

    cfg = preset("smoke")
    s = small_synthetic
    extras = np.full((48, 64, 128, 5), 0.2, np.float32)
    result = fit_stage(
        cfg.stage2,
        StageData(s.images[:48], s.masks[:48], network_input(s.images[48:56], extras[:8]), s.masks[48:56], extras),
        augment_cfg=None,
        seed=1,
        deadline=Deadline(time.monotonic() - 1),
        context=StageContext(verbose=0),
    )
    assert result.stop_reason == "budget" and result.epochs_run == 1
    assert result.monitor == "val_miou", "stage 2 of the smoke preset has a single head"
    assert result.model.input_shape[-1] == 6


def test_a_residual_stage_2_starts_scored_as_stage_1_and_never_ends_below_it(small_synthetic):
    from dataclasses import replace

    from marsseg.config import preset
    from marsseg.pipeline.postprocess import labels_from_probs
    from marsseg.submission.scoring import score_masks
    from marsseg.training.context import StageContext, StageData
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage, predict_probs

    cfg = preset("smoke")
    stage = replace(cfg.stage2, model=replace(cfg.stage2.model, residual=True))
    s = small_synthetic
    rng = np.random.default_rng(0)
    # Stage-1-like probabilities: the truth, blurred by noise, so the prior is informative but imperfect.
    onehot = np.eye(5, dtype=np.float32)[s.masks[:56]]
    extras = onehot + rng.uniform(0, 0.8, onehot.shape).astype(np.float32)
    extras /= extras.sum(-1, keepdims=True)
    x_val = network_input(s.images[48:56], extras[48:56])
    data = StageData(s.images[:48], s.masks[:48], x_val, s.masks[48:56], extras[:48])
    result = fit_stage(stage, data, augment_cfg=None, seed=1, context=StageContext(verbose=0))
    # The Keras metric ignores background and averages the classes present, as the leaderboard does.
    prior_score = score_masks(s.masks[48:56], labels_from_probs(extras[48:56], allow_background=True))["miou"]
    assert result.extra["baseline_val_miou"] == pytest.approx(prior_score, abs=1e-4)
    assert result.best_val_miou >= result.extra["baseline_val_miou"]
    final = score_masks(s.masks[48:56], labels_from_probs(predict_probs(result.model, x_val), allow_background=True))
    assert final["miou"] == pytest.approx(result.best_val_miou, abs=1e-4)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_tensorflow_input_pipeline_is_every_epochs_batches_in_one_pass(small_synthetic, workers):
    import keras

    from marsseg.config import AugmentConfig
    from marsseg.prep.augment import sequence_from_config
    from marsseg.training.callbacks import NextEpoch
    from marsseg.training.feed import training_data

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the tf.data path is TensorFlow's")
    s = small_synthetic
    cfg = AugmentConfig(strength="light", bigrock_oversample=2.0, workers=workers)
    source = sequence_from_config(s.images[:40], s.masks[:40], cfg, 16, seed=4)
    reference = sequence_from_config(s.images[:40], s.masks[:40], cfg, 16, seed=4)
    feed = training_data(source, ["main", "aux1"], workers=workers, epochs=2)
    steps = len(reference)
    assert feed.fit_options == {"steps_per_epoch": steps} and isinstance(feed.callbacks[0], NextEpoch)
    # One pass over the pipeline is epoch 0's batches then epoch 1's, whatever epoch the source is at meanwhile
    # (a pipeline runs ahead of fit's epoch callbacks).
    batches = [(x.numpy(), {k: v.numpy() for k, v in y.items()}) for x, y in feed.data]
    assert len(batches) == 2 * steps
    for epoch in range(2):
        for index in range(steps):
            x, y = batches[epoch * steps + index]
            want_x, want_y = reference[index]
            np.testing.assert_array_equal(x, want_x)
            np.testing.assert_array_equal(y["main"], want_y)
            np.testing.assert_array_equal(y["aux1"], want_y)
        reference.on_epoch_end()
    assert not np.array_equal(batches[0][0], batches[steps][0]), "a new order and new flips each epoch"
    feed.callbacks[0].on_epoch_end(0)
    assert source.epoch == 1


def test_a_batch_of_any_epoch_is_the_one_that_epoch_gives(small_synthetic):
    from marsseg.config import AugmentConfig
    from marsseg.prep.augment import sequence_from_config
    from marsseg.training.reuse import FullBatches

    s = small_synthetic
    cfg = AugmentConfig(strength="light", bigrock_oversample=2.0, workers=1)
    source = FullBatches(sequence_from_config(s.images[:40], s.masks[:40], cfg, 16, seed=4))
    at_three = [source.batch_at(3, i) for i in range(len(source))]
    for _ in range(3):
        source.on_epoch_end()
    for index, (x, y) in enumerate(at_three):  # the same batches, asked ahead of the epoch or in it
        np.testing.assert_array_equal(source[index][0], x)
        np.testing.assert_array_equal(source.batch_at(3, index)[1], y)
    with pytest.raises(IndexError):
        source.batch_at(0, len(source))


def test_other_backends_get_the_sequence_with_its_workers_and_labels_per_head(small_synthetic, monkeypatch):
    import keras

    from marsseg.config import AugmentConfig
    from marsseg.prep.augment import sequence_from_config
    from marsseg.training.feed import training_data

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    s = small_synthetic
    cfg = AugmentConfig(strength="light", bigrock_oversample=1.0, workers=3)
    source = sequence_from_config(s.images[:40], s.masks[:40], cfg, 16, seed=4)
    reference = sequence_from_config(s.images[:40], s.masks[:40], cfg, 16, seed=4)
    data, callbacks, options = training_data(source, ["main", "aux1"], workers=3, epochs=5)
    # Keras builds batches in parallel only if the dataset it is handed says so.
    assert callbacks == [] and options == {} and data.workers == 3 and len(data) == len(reference) == 3
    x, y = data[1]
    want_x, want_y = reference[1]
    np.testing.assert_array_equal(x, want_x)
    assert set(y) == {"main", "aux1"}
    np.testing.assert_array_equal(y["aux1"], want_y)
    data.on_epoch_end()
    assert source.epoch == 1


def test_this_machines_gpus_report_their_compute_capability():
    from marsseg.training.distribute import accelerator_devices, gpu_compute_capabilities

    capabilities = gpu_compute_capabilities()
    assert len(capabilities) == len(accelerator_devices())  # none here; one per GPU where there are GPUs
    assert all(c is None or (isinstance(c[0], int) and c >= (3, 0)) for c in capabilities)
