import math

import numpy as np
import pytest

from marsseg.pipeline.budget import Budget, hms


class FakeClock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


class FakeModel:
    def __init__(self):
        self.weights, self.stop_training = [np.zeros(1)], False

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]


def _epochs(guard, clock, values, seconds=10.0):
    """Drive the guard like fit does; return how many epochs ran before it stopped training."""
    ran = 0
    for epoch, value in enumerate(values):
        guard.on_epoch_begin(epoch)
        clock.now += seconds
        guard.model.weights = [np.full(1, value)]
        guard.on_epoch_end(epoch, {"val_main_miou": value})
        ran += 1
        if guard.model.stop_training:
            break
    guard.on_train_end()
    return ran


def _guard(patience, deadline, clock, on_plan=None):
    from marsseg.training.callbacks import StageGuard

    guard = StageGuard("val_main_miou", patience, deadline, clock, on_plan)
    guard.set_model(FakeModel())
    return guard


def test_guard_stops_on_patience_and_restores_the_best_epoch():
    clock = FakeClock()
    guard = _guard(patience=2, deadline=None, clock=clock)
    ran = _epochs(guard, clock, [0.1, 0.5, 0.4, 0.3, 0.9])
    assert ran == 4 and guard.stop_reason == "patience"
    assert guard.best == 0.5 and guard.best_epoch == 2
    assert guard.model.weights[0][0] == 0.5, "best weights restored at the end"


@pytest.mark.parametrize("deadline, stops", [(32.0, True), (35.0, False)])
def test_guard_starts_a_last_epoch_only_if_enough_of_it_fits(deadline, stops):
    clock = FakeClock()
    plans = []
    guard = _guard(patience=100, deadline=deadline, clock=clock, on_plan=plans.append)
    ran = _epochs(guard, clock, [0.1, 0.2, 0.3], seconds=10.0)
    # At t=30, 2 s left is under 0.3 of a 10 s epoch: stop; 5 s left is worth a fourth epoch, which
    # BatchDeadline cuts short at the deadline.
    assert ran == 3 and guard.model.stop_training == stops and (guard.stop_reason == "budget") == stops
    assert plans[0] == 1 + (2 if stops else 3), "the cosine plan counts a partial last epoch"
    assert guard.model.weights[0][0] == 0.3


def test_the_cosine_plan_counts_each_epoch_with_its_validation_pass():
    clock = FakeClock()
    plans = []
    guard = _guard(patience=100, deadline=100.0, clock=clock, on_plan=plans.append)
    guard.validation_seconds = 2.0  # of each 10 s epoch
    _epochs(guard, clock, [0.1], seconds=10.0)
    # 8 s of training + 2 s of validation per epoch: 9 more epochs end exactly at t=100 (not 11 more, as
    # counting training time alone would plan, leaving the learning rate undecayed at the deadline).
    assert plans == [10]


def test_batch_deadline_stops_training_in_time_for_the_validation_pass():
    from marsseg.training.callbacks import BatchDeadline

    clock = FakeClock(40.0)
    guard = _guard(patience=5, deadline=50.0, clock=clock)
    check = BatchDeadline(guard)
    check.set_model(guard.model)
    check.on_train_batch_end(0)
    assert not guard.model.stop_training and guard.train_until() == 50.0
    guard.on_test_begin()
    clock.now = 43.0
    guard.on_test_end()  # a 3 s validation pass: steps stop at 47
    clock.now = 46.5
    check.on_train_batch_end(1)
    assert not guard.model.stop_training
    clock.now = 47.5
    check.on_train_batch_end(2)
    assert guard.model.stop_training and guard.stop_reason == "budget" and guard.cut_epoch
    guard.on_epoch_begin(0)
    guard.on_epoch_end(0, {"val_main_miou": 0.2})
    assert guard.full_epochs == [] and len(guard.epoch_seconds) == 1, "a cut epoch is no estimate of a full one"

    from marsseg.training.callbacks import StageGuard

    later = StageGuard("val_main_miou", 5, 50.0, clock, passes_after=1)  # stage 1's out-of-fold prediction
    later.validation_seconds = 3.0
    assert later.train_until() == 44.0


@pytest.mark.parametrize("baseline", [False, True])
def test_a_measured_validation_speed_moves_the_deadline_but_not_the_tracing_pass(baseline):
    """Stage 2 replans its deadline from its own inference speed: each steady validation pass (images per second
    of work) gives a new deadline; the first pass, which traces the test function, is not one unless a baseline
    evaluation already traced it."""
    from marsseg.training.callbacks import StageGuard

    clock = FakeClock()
    asked = []

    def replan(rate, train_seconds, steady):  # as stage 2's: a tracing pass keeps the deadline (None)
        asked.append((rate, train_seconds, steady))
        return 100.0 + rate if steady else None

    guard = StageGuard("val_main_miou", 5, 50.0, clock, replan=replan, validation_rows=96)
    guard.set_model(FakeModel())
    if baseline:
        guard.set_baseline(0.5, [np.full(1, 0.0)])
    for seconds in (8.0, 2.0):  # the tracing pass, then a steady one, each after 30 s of an epoch's training
        guard.on_epoch_begin(0)
        clock.now += 30.0
        guard.on_test_begin()
        clock.now += seconds
        guard.on_test_end()
    assert asked == [(12.0, 30.0, baseline), (48.0, 30.0, True)]
    assert guard.deadline == 148.0 and guard.train_until() == 148.0 - 2.0


def test_a_baseline_stands_until_an_epoch_beats_it():
    clock = FakeClock()
    guard = _guard(patience=2, deadline=None, clock=clock)
    guard.set_baseline(0.6, [np.full(1, -1.0)])
    _epochs(guard, clock, [0.4, 0.55, 0.5])
    assert guard.best_epoch == 0 and guard.best == 0.6 and guard.stop_reason == "patience"
    assert guard.model.weights[0][0] == -1.0, "the untrained weights come back"

    guard = _guard(patience=5, deadline=None, clock=clock)
    guard.set_baseline(0.6, [np.full(1, -1.0)])
    _epochs(guard, clock, [0.4, 0.7, 0.65])
    assert guard.best_epoch == 2 and guard.model.weights[0][0] == 0.7


def test_budget_logs_one_line_per_phase_and_accounts_seconds():
    clock, lines = FakeClock(), []
    budget = Budget(100, lines.append, clock)
    budget.phase("stage1", fold=2, note="12 epochs")
    clock.now = 30
    budget.phase("stage2")
    clock.now = 45
    budget.end_phase()
    assert lines[0] == "[marsseg] 00:00:00 stage1 fold 2 | 12 epochs | budget left 00:01:40"
    assert lines[1] == "[marsseg] 00:00:30 stage2 | budget left 00:01:10"
    assert budget.phase_seconds == {"stage1": 30, "stage2": 15}
    assert budget.remaining() == 55 and hms(3725) == "01:02:05"


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
