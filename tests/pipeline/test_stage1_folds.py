"""Stage 1's fold models: out-of-fold inputs for stage 2, and how many models train in the stage's time."""

import numpy as np
import pytest

from tests.pipeline.fakes import FitResult


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

    def fit(stage_cfg, data, **kwargs):
        return FitResult(_Remembers(kwargs["seed"], data.train_images))

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

    def fit(stage_cfg, data, **kwargs):
        calls.append((len(data.train_images), len(data.val_x), kwargs["deadline"].at))
        return FitResult()

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
