"""Fold models share one compiled network: the second fold reuses the traced steps and trains exactly as a fresh
model at its seed would, and every fold's trained weights survive for prediction and saving."""

from dataclasses import replace

import numpy as np
import pytest


def _stage():
    from marsseg.config import preset

    stage = preset("smoke").stage1
    # Traced (the smoke preset runs eagerly), and with dropout: its seed-generator state must be reset too.
    return replace(
        stage,
        model=replace(stage.model, dropout=0.2),
        train=replace(stage.train, run_eagerly=False, epochs=2, batch_size=8, patience=5),
    )


def _fit(s, seed, models=None):
    from marsseg.training.context import StageContext, StageData
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage

    # 20 training images in batches of 8: a partial batch that FullBatches drops.
    return fit_stage(
        _stage(), StageData(s.images[:20], s.masks[:20], network_input(s.images[40:52]), s.masks[40:52]),
        seed=seed, class_weights=[0.5, 1, 1, 2, 3], context=StageContext(verbose=0, models=models),
    )  # fmt: skip


def _tracing_count(function) -> int:
    """Traces of the tf.functions that Keras's train function closes over (TensorFlow only)."""
    total, stack, seen = 0, [function], set()
    while stack:
        f = stack.pop()
        if id(f) in seen or not callable(f):
            continue
        seen.add(id(f))
        if hasattr(f, "experimental_get_tracing_count"):
            total += f.experimental_get_tracing_count()
            f = f.python_function
        stack.extend(cell.cell_contents for cell in getattr(f, "__closure__", None) or ())
    return total


def test_a_reused_network_trains_as_a_fresh_one_and_keeps_its_traced_steps(small_synthetic, tmp_path):
    import keras

    from marsseg.training.feed import network_input
    from marsseg.training.fit import predict_probs
    from marsseg.training.reuse import FoldModel, ModelCache
    from marsseg.training.saved import load_run_model, save_run_model

    s, cache = small_synthetic, ModelCache()
    x = network_input(s.images[60:70])  # 10 rows: predicted padded to 16
    first = _fit(s, seed=3, models=cache)
    assert isinstance(first.model, FoldModel) and len(cache) == 1
    shared = first.model.shared
    train_function, first_probs = shared.train_function, predict_probs(first.model, x)
    tracing = keras.backend.backend() == "tensorflow"
    traces = _tracing_count(shared.train_function) if tracing else None
    assert traces is None or traces >= 1

    second = _fit(s, seed=4, models=cache)
    fresh = _fit(s, seed=4)  # a new network at the same seed, as before the cache
    assert second.model.shared is shared and len(cache) == 1, "the same settings found the same network"
    assert shared.train_function is train_function, "Keras kept the traced train step"
    if tracing:
        assert _tracing_count(shared.train_function) == traces, "and did not trace it again"
    # Re-initialised weights, dropout seeds, optimizer slots and iterations: fold 2 trains as a fresh model would.
    np.testing.assert_allclose(second.history["loss"], fresh.history["loss"], rtol=1e-4)
    assert second.history["loss"][0] != pytest.approx(first.history["loss"][0], rel=1e-3)
    for mine, theirs in zip(second.model.get_weights(), fresh.model.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-4)
    assert int(shared.optimizer.iterations.numpy()) == int(fresh.model.optimizer.iterations.numpy()) == 4
    # Fold 1's trained weights survived fold 2: prediction and the saved file are fold 1's, under its name.
    second_probs = predict_probs(second.model, x)
    np.testing.assert_allclose(predict_probs(first.model, x), first_probs, atol=1e-6)
    assert np.abs(second_probs - first_probs).max() > 1e-3
    reloaded = load_run_model(save_run_model(first.model, tmp_path / "fold1.keras"))
    assert reloaded.name == "stage"
    np.testing.assert_allclose(predict_probs(reloaded, x), first_probs, atol=1e-5)
    np.testing.assert_allclose(predict_probs(second.model, x), second_probs, atol=1e-6)
    assert first.model.input_shape == (None, 64, 128, 1), "a FoldModel reads as its network"


def test_settings_that_change_the_compiled_network_get_their_own():
    from marsseg.training.distribute import Replicas
    from marsseg.training.reuse import setting_key

    stage, one = _stage(), Replicas("single")
    key = setting_key(stage, 1, 5, [1, 2, 3, 4, 5], False, one, False)
    assert key == setting_key(
        replace(stage, train=replace(stage.train, epochs=9)), 1, 5, [1, 2, 3, 4, 5], False, one, False
    )
    others = [
        setting_key(stage, 6, 5, [1, 2, 3, 4, 5], False, one, False),
        setting_key(stage, 1, 5, [1, 2, 3, 4, 6], False, one, False),
        setting_key(stage, 1, 5, None, False, one, False),
        setting_key(stage, 1, 5, [1, 2, 3, 4, 5], True, one, False),
        setting_key(replace(stage, model=replace(stage.model, depth=3)), 1, 5, [1, 2, 3, 4, 5], False, one, False),
        setting_key(replace(stage, train=replace(stage.train, learning_rate=0.1)), 1, 5, None, False, one, False),
    ]
    assert key not in others and len(set(others)) == len(others)


def test_full_batches_drop_the_remainder_unless_there_is_only_one(small_synthetic):
    from marsseg.config import AugmentConfig
    from marsseg.prep.augment import sequence_from_config
    from marsseg.training.reuse import FullBatches

    s, cfg = small_synthetic, AugmentConfig(strength="none", bigrock_oversample=1.0, workers=1)
    full = FullBatches(sequence_from_config(s.images[:20], s.masks[:20], cfg, 8, seed=1))
    assert len(full) == 2 and all(full[i][0].shape[0] == 8 for i in range(2))
    with pytest.raises(IndexError):
        full[2]
    full.on_epoch_end()
    assert full.source.epoch == 1
    small = FullBatches(sequence_from_config(s.images[:5], s.masks[:5], cfg, 8, seed=1))
    assert len(small) == 1 and small[0][0].shape[0] == 5


@pytest.mark.parametrize("n, batch, want", [(0, 64, 0), (1, 64, 1), (10, 64, 16), (64, 64, 64), (65, 64, 128)])
def test_rows_are_padded_to_whole_batches_or_a_power_of_two(n, batch, want):
    from marsseg.training.reuse import pad_rows, padded_length

    assert padded_length(n, batch) == want
    x = np.ones((n, 2, 3), np.float32)
    padded = pad_rows(x, want)
    assert padded.shape == (want, 2, 3) and padded[:n].all() and not padded[n:].any()


def test_background_padding_leaves_the_monitored_miou_unchanged():
    from marsseg.training.metrics import MeanIoU
    from marsseg.training.reuse import pad_rows

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, (6, 8, 8))
    p = rng.random((6, 8, 8, 5)).astype(np.float32)
    plain, padded = MeanIoU(), MeanIoU()
    plain.update_state(y, p)
    padded.update_state(pad_rows(y, 16), pad_rows(p, 16) + rng.random((16, 8, 8, 5)).astype(np.float32) * (
        np.arange(16) >= 6
    )[:, None, None, None])  # fmt: skip
    assert float(padded.result()) == pytest.approx(float(plain.result()), abs=1e-7)
