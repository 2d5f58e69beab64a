"""The canary's configuration and its projection of the full run: pure arithmetic on configs and numbers."""

import pytest

from marsseg.config import override, preset, validate
from marsseg.pipeline.canary import canary_config, epoch_split, estimate, project


def test_a_canary_keeps_the_networks_and_paths_and_cuts_epochs_budget_and_fold_models():
    full = preset("kaggle")
    cfg = validate(canary_config(full))
    assert cfg.budget_seconds == full.canary.budget_seconds == 600
    assert cfg.data.folds == full.data.folds and cfg.data.fold_models == 2  # one per network of the model cycle
    assert cfg.stage1.train.epochs == cfg.stage2.train.epochs == full.canary.epochs == 3
    assert cfg.stage1.model_cycle == full.stage1.model_cycle and cfg.stage1.model == full.stage1.model
    assert cfg.augment == full.augment and cfg.post == full.post and cfg.stage2.model == full.stage2.model
    assert cfg.stage1.train.mixed_precision == full.stage1.train.mixed_precision and cfg.require_gpu
    # One network: still two fold models, so the fold-to-fold reuse of a compiled network runs too.
    assert canary_config(override(full, ["stage1.model_cycle="])).data.fold_models == 2
    assert canary_config(override(full, ["data.folds=1"])).data.fold_models == 1


@pytest.mark.parametrize(
    "seconds, cut, expected",
    [
        ([30.0, 6.0, 5.0], False, (24.5, 5.5)),
        ([30.0, 6.0, 2.0], True, (24.0, 6.0)),  # a last epoch cut at the deadline is left out
        ([30.0], False, (None, None)),
        ([30.0, 6.0], True, (None, None)),
        ([], False, (None, None)),
    ],
)
def test_epoch_split_takes_the_first_epoch_beyond_the_steady_one_as_compilation(seconds, cut, expected):
    assert epoch_split(seconds, cut) == expected


def _network(compile_seconds, steady):
    return {"compile_seconds": compile_seconds, "steady_epoch_seconds": steady}


def test_the_projection_runs_every_fold_and_epoch_and_compiles_each_network_once():
    full = preset("kaggle")  # 5 folds, 100 + 80 epochs, flip TTA, two networks cycling over the folds
    measured = {
        "stage1": [_network(40.0, 8.0), _network(50.0, 10.0)],
        "stage2": _network(30.0, 4.0),
        "stage2_rows": 400,  # the canary's 2 fold models predicted 2 of 5 folds out of fold
        "stage2_rows_full": 1000,
        "infer1": 1000.0,
        "infer2": 500.0,
        "n_test": 10000,
        "n_val": 400,
        "n_dev": 2000,
    }
    phases = {"load": 10.0, "clean": 20.0, "stage1": 999.0, "stage1 test prediction": 999.0, "total": 9999.0}
    p = project(full, measured, phases)
    assert p["stage1_training"] == 40 + 50 + 100 * (8 + 10 + 8 + 10 + 8)  # folds 1-5: networks 1, 2, 1, 2, 1
    assert p["stage1_prediction"] == pytest.approx(5 * 2 * (400 + 10000) / 1000 + 2000 / 5 * 5 * 2 / 1000, abs=0.1)
    assert p["stage2_training"] == 30 + 80 * 4.0 * 2.5  # scaled to the full run's out-of-fold rows
    assert p["stage2_prediction"] == pytest.approx(2 * 10400 / 500, abs=0.1)
    assert p["other"] == 30.0  # load and clean as measured; the replaced phases and the total are not counted
    assert p["total"] == pytest.approx(sum(p[k] for k in p if k not in ("total", "budget_seconds", "fits_budget")))
    assert p["fits_budget"] == (p["total"] <= full.budget_seconds)
    assert project(full, {**measured, "stage1": [_network(None, None)]}, phases) is None


def test_the_estimate_without_a_canary_grows_with_the_work():
    kaggle = preset("kaggle")
    base = estimate(kaggle, 2615, 10022)["total"]
    assert estimate(override(kaggle, ["stage1.train.epochs=200"]), 2615, 10022)["total"] > 1.5 * base
    assert estimate(kaggle, 2615, 20044)["total"] > base
    assert estimate(override(kaggle, ["two_stage=false"]), 2615, 10022)["stage2_training"] == 0
