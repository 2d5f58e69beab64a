import math

import numpy as np


def _tiny_stage():
    from dataclasses import replace

    from marsseg.config import preset

    stage = preset("cpu").stage1
    return replace(stage, model=replace(stage.model, depth=2, base_filters=4))


def test_miou_counts_validation_batches_only_and_reports_the_same_validation_score():
    import keras

    from marsseg.models import build_unet
    from marsseg.training.callbacks import ValidationMetrics
    from marsseg.training.fit import compile_model

    rng = np.random.default_rng(0)
    x = rng.random((8, 64, 128, 1), dtype=np.float32)
    y = rng.integers(0, 5, (8, 64, 128)).astype(np.int32)
    stage = _tiny_stage()
    keras.utils.set_random_seed(0)
    model = build_unet(stage.model, 1)
    monitor = compile_model(model, stage)
    history = model.fit(
        x[:4], y[:4], batch_size=2, epochs=1, verbose=0, validation_data=(x[4:], y[4:]), callbacks=[ValidationMetrics()]
    ).history
    assert "miou" not in history, "the train step does not count, and its reset value is not logged"
    assert 0.0 < history[monitor][0] <= 1.0
    # The validation score is what evaluate gives on the same weights, and counting is back on after fit.
    scores = model.evaluate(x[4:], y[4:], batch_size=2, verbose=0, return_dict=True)
    assert math.isclose(scores["miou"], history[monitor][0], rel_tol=1e-6)
    miou = [m for m in model.metrics for m in [m, *getattr(m, "metrics", [])] if hasattr(m, "counting")]
    assert miou and all(m.counting for m in miou)
