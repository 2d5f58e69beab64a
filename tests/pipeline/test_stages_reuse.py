"""Stage 1's fold models share one compiled network; each keeps its own weights for every later use."""

from dataclasses import replace

import numpy as np


def test_fold_models_share_a_network_and_keep_their_own_weights(small_synthetic, tmp_path):
    import time

    from marsseg.config import preset
    from marsseg.pipeline.outputs import save_models, stage1_model_name
    from marsseg.pipeline.stages import ensemble_probs, stage1_folds
    from marsseg.training.context import StageContext
    from marsseg.training.feed import network_input
    from marsseg.training.fit import predict_probs
    from marsseg.training.reuse import FoldModel
    from marsseg.training.saved import load_run_model

    cfg = preset("smoke")
    cfg = replace(
        cfg, stage1=replace(cfg.stage1, train=replace(cfg.stage1.train, epochs=1)), post=replace(cfg.post, tta="off")
    )
    s = small_synthetic
    images, masks = s.images[:36], s.masks[:36]
    fold_of = np.arange(36) % 2
    context = StageContext(log=lambda line: None, verbose=0)
    outcome = stage1_folds(images, masks, fold_of, cfg, context, stage_end=time.monotonic() + 600)
    models = outcome.models
    assert len(models) == 2 and all(isinstance(m, FoldModel) for m in models)
    assert models[0].shared is models[1].shared, "fold 2 reused fold 1's network"
    # Each fold's out-of-fold probabilities are still what its model predicts, after the other fold trained.
    for f, run in enumerate(outcome.folds):
        oof = predict_probs(models[f], network_input(images[run.val_index]))
        np.testing.assert_allclose(oof, outcome.oof[run.val_index], atol=1e-5)
    x = network_input(s.images[60:72])
    each = [predict_probs(m, x) for m in models]
    assert np.abs(each[0] - each[1]).max() > 1e-3, "two folds, two sets of weights"
    np.testing.assert_allclose(ensemble_probs(models, x), (each[0] + each[1]) / 2, atol=1e-6)
    names = save_models(tmp_path, {stage1_model_name(f.fold): f.result.model for f in outcome.folds})
    for name, probs in zip(names, each):
        np.testing.assert_allclose(predict_probs(load_run_model(tmp_path / name), x), probs, atol=1e-5)
