"""The recipe section: paired on/off runs per item, stored once per seed, and a verdict only the spread allows."""

import json

import numpy as np
import pytest

from marsseg_bench import quality, recipe
from marsseg_bench.recipe_report import verdict


@pytest.fixture()
def tiny(monkeypatch, tmp_path):
    """A 16-image test set, and a fake kit run whose labels are the truth where the item is on and all soil
    where it is off (so every 'on' side wins)."""
    from marsseg.data import synth

    monkeypatch.setenv("MARSSEG_BENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(recipe, "N_TRAIN", 8)
    monkeypatch.setattr(recipe, "N_TEST", 16)
    truth = synth.make_synthetic(8, 16, seed=quality.DATA_SEED).test_labels
    calls = []

    def runner(cfg, data, out, **kwargs):
        from marsseg.pipeline.outputs import write_submissions

        on = cfg.augment.copy_paste_rate > 0
        calls.append(("on" if on else "off", cfg.seed, cfg.budget_seconds))
        out.mkdir(parents=True)
        write_submissions(out, truth if on else np.ones_like(truth))
        return {"submission": str(out / "submission.csv"), "final_stage": 2, "val_miou_final": 0.5, "stage1": {}}

    return runner, calls


def test_a_pair_runs_both_sides_at_one_seed_is_stored_and_not_run_twice(tiny, monkeypatch):
    runner, calls = tiny
    monkeypatch.setenv("MARSSEG_BENCH_RECIPE_ITEMS", "copy_paste")
    text = recipe.section_recipe(1, lambda m: None, seed=3, budget=30.0, runner=runner)
    assert sorted(calls) == [("off", 3, 30.0), ("on", 3, 30.0)]
    assert [side for side, *_ in calls] == ["on", "off"]  # odd seed: "on" first
    (record,) = [json.loads(line) for line in recipe.results_path(name="recipe.jsonl").read_text().splitlines()]
    assert record["sides"]["on"]["scores"]["miou_keras"] == pytest.approx(1.0)
    assert record["sides"]["off"]["scores"]["miou_keras"] < 0.5
    assert "| copy_paste |" in text and "undecided (1 of 3 seeds)" in text
    assert "| context | " in text and "not measured yet" in text
    recipe.section_recipe(1, lambda m: None, seed=3, budget=30.0, runner=runner)
    assert len(calls) == 2, "a pair stored at the same seed and settings was run again"
    recipe.section_recipe(1, lambda m: None, seed=4, budget=30.0, runner=runner)
    assert [side for side, seed, _ in calls if seed == 4] == ["off", "on"]


def test_the_sides_differ_only_by_the_item():
    from marsseg.config import flatten

    for item in recipe.ITEMS:
        sides = recipe.side_configs(item, 5, 600.0)
        off, on = flatten(sides["off"]), flatten(sides["on"])
        changed = {k for k in off if off[k] != on[k]}
        assert changed, f"{item}: both sides are the same run"
        assert all(k.startswith(("stage1.", "augment.")) for k in changed), (item, changed)
        assert sides["on"].seed == sides["off"].seed == 5


def test_unknown_item_is_a_one_line_error(monkeypatch):
    from marsseg.errors import UserError

    with pytest.raises(UserError, match="unknown recipe item nope; choose from context"):
        recipe.chosen_items("nope")


@pytest.mark.parametrize(
    ("gains", "expected"),
    [
        ([0.03, 0.02, 0.04], "on"),  # median 0.03 > half range 0.01
        ([0.05, -0.04, 0.01], "undecided (gain within the spread)"),  # median 0.01 < half range 0.045
        ([-0.03, -0.02, -0.04], "off"),
        ([0.1, 0.1], "undecided (2 of 3 seeds)"),
    ],
)
def test_an_item_is_turned_on_only_where_its_median_gain_beats_the_spread(gains, expected):
    assert verdict(gains) == expected


def test_the_ensemble_section_scores_both_members_and_their_average(tiny, monkeypatch):
    from marsseg.pipeline.outputs import write_submissions
    from marsseg_bench import ensemble_bench

    monkeypatch.setattr(ensemble_bench, "N_TRAIN", 8)
    monkeypatch.setattr(ensemble_bench, "N_TEST", 16)
    from marsseg.data.synth import make_synthetic

    truth = make_synthetic(8, 16, seed=quality.DATA_SEED).test_labels
    ran = []

    def runner(cfg, data, out, **kwargs):
        # member a gets the top half of every image right, member b the bottom half; their "average" all of it
        ran.append(cfg.stage1.model.context)
        labels = np.ones_like(truth)
        half = slice(0, 32) if cfg.stage1.model.context == "none" else slice(32, 64)
        labels[:, half] = truth[:, half]
        out.mkdir(parents=True)
        write_submissions(out, labels)
        return {"submission": str(out / "submission.csv"), "final_stage": 1, "val_miou_final": 0.5}

    def combine(run_dirs, out, data=None, log=None):
        out.mkdir(parents=True)
        write_submissions(out, truth)
        return {"val_miou_final": 0.9}

    text = ensemble_bench.section_ensemble(1, lambda m: None, seed=2, budget=30.0, runner=runner, combine=combine)
    assert ran == ["none", "aspp"]
    assert "1 seed(s): 2." in text and "Target: ensemble ≥ better member + 0.01: met" in text
    ensemble_bench.section_ensemble(1, lambda m: None, seed=2, budget=30.0, runner=runner, combine=combine)
    assert len(ran) == 2, "a stored seed was run again"


def test_the_findings_say_which_public_claims_the_stand_in_reproduces():
    from marsseg_bench.recipe_report import findings

    quality = [
        {
            "scores": {"naive": {"miou_scored": 0.83, "miou_keras": 0.67}},
            "kit_run": {"post": {"stage1": {"tta": {"with": 0.605, "without": 0.600}}}},
        }
    ]

    def pair(item, off, on):
        sides = {s: {"scores": {"miou_keras": v}} for s, v in (("off", off), ("on", on))}
        return {"item": item, "sides": sides}

    text = "\n".join(findings(quality, [pair("copy_paste", 0.70, 0.68)], []))
    assert "+0.1600 over 1 run(s): reproduced" in text
    assert "TTA adds little" in text and "+0.0050 over 1 run(s): reproduced" in text
    assert "copy-paste gains (`recipe`, copy_paste): -0.0200 over 1 run(s): not reproduced" in text
    assert "(`ensemble`): not measured yet" in text
