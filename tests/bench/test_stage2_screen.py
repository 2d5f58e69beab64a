"""The stage-2 screen runs the kit's own phases through `pipeline.run.Run`'s public surface: a change inside the
run shows up here, not as a silently broken benchmark."""

import numpy as np
import pytest


@pytest.mark.slow  # runs the pipeline and trains a design for the benchmark tool: `make test-all`
def test_the_screen_caches_stage_1_from_the_run_and_trains_a_design_on_it(tmp_path, monkeypatch):
    from marsseg.config import override, preset
    from marsseg_bench import stage2_screen

    monkeypatch.setenv("MARSSEG_BENCH_RESULTS", str(tmp_path))
    monkeypatch.setattr(stage2_screen, "N_TRAIN", 48)  # a smoke-size stand-in of the quality data
    monkeypatch.setattr(stage2_screen, "N_TEST", 6)
    cfg = override(preset("smoke"), ["stage1.train.epochs=1", "stage2.train.epochs=1", "post.tta=on"])
    logged = []
    stage1 = stage2_screen.cached_stage1(cfg, logged.append)
    n_dev, n_hold = len(stage1["dev_images"]), len(stage1["hold_images"])
    assert stage1["oof"].shape == (n_dev, 64, 128, 5) and stage1["val1_tta"].shape == (n_hold, 64, 128, 5)
    assert stage1["test_tta1"].shape == (6, 64, 128, 5) and stage1["folds"] == 2
    assert (stage1["oof_model"] >= 0).any() and np.isfinite(stage1["temperature"])
    assert len(stage1["tune"]) + len(stage1["report"]) == n_hold
    again = stage2_screen.cached_stage1(cfg, logged.append)
    assert "from" in logged[-1] and all(np.array_equal(again[k], stage1[k]) for k in stage1), "cached"
    scores = stage2_screen.screen_design(cfg, stage1, 30.0, logged.append)
    assert scores["epochs"] == 1 and 0.0 <= scores["tune"] <= 1.0 and 0.0 <= scores["test_keras"] <= 1.0
