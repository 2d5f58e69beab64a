"""An exponential moving average of the weights (`train.ema_momentum`): what is scored is what is kept, saved and
reloaded."""

from dataclasses import replace

import numpy as np
import pytest

from marsseg.config import preset
from marsseg.errors import ConfigError


def _stage(momentum, epochs=3):
    stage = preset("smoke").stage1
    return replace(stage, train=replace(stage.train, epochs=epochs, patience=epochs, ema_momentum=momentum))


def test_the_averaged_weights_are_scored_kept_saved_and_reloaded(small_synthetic, tmp_path):
    from marsseg.training.context import StageContext, StageData
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage, predict_probs
    from marsseg.training.metrics import MeanIoU
    from marsseg.training.saved import load_run_model, save_run_model

    s = small_synthetic
    x_val, y_val = network_input(s.images[32:48]), s.masks[32:48]
    data, quiet = StageData(s.images[:32], s.masks[:32], x_val, y_val), StageContext(verbose=0)
    fits = {momentum: fit_stage(_stage(momentum), data, seed=3, context=quiet) for momentum in (0.0, 0.5)}
    ema = fits[0.5]
    assert ema.model.optimizer.use_ema and not fits[0.0].model.optimizer.use_ema
    # The same seed and data: averaging changes the weights that come back.
    assert not np.allclose(predict_probs(ema.model, x_val), predict_probs(fits[0.0].model, x_val))
    # The kept weights are the ones the best epoch's validation scored (the averaged ones, swapped in).
    probs = predict_probs(ema.model, x_val)
    metric = MeanIoU(num_classes=5)
    metric.update_state(y_val, probs)
    assert float(metric.result()) == pytest.approx(ema.best_val_miou, abs=1e-5)
    reloaded = load_run_model(save_run_model(ema.model, tmp_path / "ema.keras"))
    np.testing.assert_allclose(predict_probs(reloaded, x_val), probs, atol=1e-6)


def test_a_momentum_outside_zero_to_one_is_refused_in_one_line():
    from marsseg.config import override, validate

    with pytest.raises(ConfigError, match="ema_momentum"):
        validate(override(preset("smoke"), ["stage1.train.ema_momentum=1.5"]))
