"""stage1.model_cycle: fold f trains network f mod n, each distinct network built and compiled once."""

import time
from dataclasses import replace

import numpy as np
import pytest

CYCLE = "stage1.model_cycle=attention=true context=none | attention=false deep_supervision=false context=aspp"


class _Result:
    """What stage1_folds and stage1_metrics read of a fit's result."""

    def __init__(self, model):
        self.model, self.seconds, self.epochs_run, self.best_val_miou = model, 0.0, 1, 0.5
        self.stop_reason, self.train_samples_per_s, self.extra = "epochs", 100.0, {}


@pytest.mark.parametrize("folds, fold_models, expected", [(3, 0, [0, 1, 0]), (4, 0, [0, 1, 0, 1]), (4, 3, [0, 1, 0])])
def test_fold_k_trains_variant_k_mod_n_and_the_metrics_say_which(folds, fold_models, expected):
    from marsseg.config import model_variants, override, preset
    from marsseg.pipeline.report import stage1_metrics
    from marsseg.pipeline.stages import stage1_folds
    from marsseg.training.context import StageContext

    cfg = override(preset("smoke"), [CYCLE, f"data.fold_models={fold_models}"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4 * folds, 8, 12), dtype=np.uint8)
    seen = []

    def fit(stage_cfg, *args, **kwargs):
        seen.append(stage_cfg)
        return _Result(kwargs["seed"])

    outcome = stage1_folds(
        images,
        images % 5,
        np.arange(len(images)) % folds,
        cfg,
        StageContext(log=lambda line: None, fit=fit, predict=lambda model, x: np.zeros((*x.shape[:3], 5), np.float32)),
        stage_end=time.monotonic() + 60,
    )
    variants = model_variants(cfg.stage1)
    assert [s.model for s in seen] == [variants[v] for v in expected]
    assert all(replace(s, model=cfg.stage1.model) == cfg.stage1 for s in seen), "only the model changes"
    metrics = stage1_metrics(outcome, 1.0)
    assert metrics["fold_model_variant"] == expected
    assert metrics["model_variants"] == [
        "attention=true context=none",
        "attention=false deep_supervision=false context=aspp",
    ]


def test_without_a_cycle_every_fold_trains_the_stage_model():
    from marsseg.config import preset
    from marsseg.pipeline.report import stage1_metrics
    from marsseg.pipeline.stages import stage1_folds
    from marsseg.training.context import StageContext

    cfg = preset("smoke")
    seen = []
    images = np.zeros((6, 8, 12), np.uint8)
    outcome = stage1_folds(
        images,
        images,
        np.arange(6) % 3,
        cfg,
        StageContext(
            log=lambda line: None,
            fit=lambda stage_cfg, *a, **kw: seen.append(stage_cfg) or _Result(0),
            predict=lambda model, x: np.zeros((*x.shape[:3], 5), np.float32),
        ),
        stage_end=time.monotonic() + 60,
    )
    assert seen == [cfg.stage1] * 3
    metrics = stage1_metrics(outcome, 1.0)
    assert metrics["fold_model_variant"] == [0, 0, 0] and metrics["model_variants"] == [""]


def test_three_folds_over_two_networks_compile_two_and_each_saves_its_own(small_synthetic, tmp_path, monkeypatch):
    import marsseg.training.fit as fit
    from marsseg.config import override, preset
    from marsseg.pipeline.outputs import save_models, stage1_model_name
    from marsseg.pipeline.stages import stage1_folds
    from marsseg.training.context import StageContext
    from marsseg.training.feed import network_input
    from marsseg.training.fit import predict_probs
    from marsseg.training.reuse import ModelCache
    from marsseg.training.saved import load_run_model

    compiled = []
    compile_model = fit.compile_model
    monkeypatch.setattr(
        fit, "compile_model", lambda model, *a, **kw: compiled.append(model) or compile_model(model, *a, **kw)
    )
    cfg = override(preset("smoke"), [CYCLE, "stage1.train.epochs=1", "post.tta=off"])
    s = small_synthetic
    images, masks = s.images[:24], s.masks[:24]
    cache = ModelCache()
    outcome = stage1_folds(
        images,
        masks,
        np.arange(24) % 3,
        cfg,
        StageContext(log=lambda line: None, verbose=0, models=cache),
        stage_end=time.monotonic() + 600,
    )
    assert len(outcome.folds) == 3 and [f.variant for f in outcome.folds] == [0, 1, 0]
    assert len(compiled) == 2 and len(cache) == 2, "one network per distinct setting"
    first, second, third = (m.shared for m in outcome.models)
    assert first is third and first is not second, "fold 3 reused fold 1's network, fold 2 has its own"
    assert len(first.output_names) > 1 and len(second.output_names) == 1, "two different architectures"
    x = network_input(s.images[60:68])
    each = [predict_probs(m, x) for m in outcome.models]
    assert np.abs(each[0] - each[2]).max() > 1e-3, "folds 1 and 3 keep their own weights"
    names = save_models(tmp_path, {stage1_model_name(f.fold): f.result.model for f in outcome.folds})
    for name, probs in zip(names, each):
        np.testing.assert_allclose(predict_probs(load_run_model(tmp_path / name), x), probs, atol=1e-5)
