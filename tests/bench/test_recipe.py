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
    assert f"pairs measured at commit(s) {record['commit']}." in text
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


@pytest.fixture()
def fake_ensemble(tiny, monkeypatch):
    """(runner, combine, ran, combined, truth): member a labels the top half of every image right, member b (any
    ASPP network) the bottom half; equal weights label everything right, tuned weights member a's half only."""
    from marsseg.data.synth import make_synthetic
    from marsseg.pipeline.outputs import write_submissions
    from marsseg_bench import ensemble_bench

    monkeypatch.setattr(ensemble_bench, "N_TRAIN", 8)
    monkeypatch.setattr(ensemble_bench, "N_TEST", 16)
    monkeypatch.delenv("MARSSEG_BENCH_ENSEMBLE_B", raising=False)
    truth = make_synthetic(8, 16, seed=quality.DATA_SEED).test_labels
    ran, combined = [], []

    def runner(cfg, data, out, **kwargs):
        ran.append((cfg.stage1.model.context, cfg.stage1.model.attention))
        labels = np.ones_like(truth)
        half = slice(0, 32) if cfg.stage1.model.context == "none" else slice(32, 64)
        labels[:, half] = truth[:, half]
        out.mkdir(parents=True)
        write_submissions(out, labels)
        return {"submission": str(out / "submission.csv"), "final_stage": 1, "val_miou_final": 0.5}

    def combine(run_dirs, out, data=None, log=None, weights="equal"):
        combined.append(weights)
        labels = truth.copy()
        if weights == "tuned":
            labels[:, 32:] = 1
        out.mkdir(parents=True)
        write_submissions(out, labels)
        return {"val_miou_final": 0.9, "weights": [0.5, 0.5] if weights == "equal" else [0.8, 0.2]}

    return runner, combine, ran, combined, truth


def test_the_ensemble_section_scores_both_members_and_their_average(fake_ensemble):
    from marsseg_bench import ensemble_bench

    runner, combine, ran, combined, truth = fake_ensemble
    text = ensemble_bench.section_ensemble(1, lambda m: None, seed=2, budget=30.0, runner=runner, combine=combine)
    assert ran == [("none", False), ("aspp", True)] and combined == ["equal", "tuned"]
    assert "gated_aspp (attention gates and an ASPP context block): median" in text and "too few seeds" in text
    for seed in (3, 4):
        text = ensemble_bench.section_ensemble(
            1, lambda m: None, seed=seed, budget=30.0, runner=runner, combine=combine
        )
    assert "over 3 seed(s), ahead in 3 of 3: met." in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| gated_aspp")]
    assert [row[1] for row in rows] == ["equal", "tuned"] and all(row[2] == "2, 3, 4" for row in rows)
    gain = {row[1]: float(row[-1].rstrip(" |").split(" (")[0]) for row in rows}
    # equal weights label every pixel right (a gain over both halves); the tuned labels are member a's exactly
    halves = []
    for rows in (slice(0, 32), slice(32, 64)):
        labels = np.ones_like(truth)
        labels[:, rows] = truth[:, rows]
        halves.append(quality._scores(truth, labels)["miou_keras"])
    assert gain["equal"] == pytest.approx(1.0 - max(halves), abs=1e-4) and gain["equal"] > 0.1
    assert gain["tuned"] == pytest.approx(halves[0] - max(halves), abs=1e-4)
    assert "gated_aspp seed 2: 0.8, 0.2" in text and "Seeds measured at commit(s) " in text
    ensemble_bench.section_ensemble(1, lambda m: None, seed=2, budget=30.0, runner=runner, combine=combine)
    assert len(ran) == 6, "a stored seed was run again"


def test_a_stored_seed_from_before_the_named_networks_is_the_default_series(fake_ensemble):
    """Records stored before NETWORKS_B had no network_b_name: their settings place them, and they are not rerun."""
    from marsseg_bench import ensemble_bench
    from marsseg_bench.quality_store import read_results, results_path, store_result

    runner, combine, ran, _, _ = fake_ensemble
    ensemble_bench.section_ensemble(1, lambda m: None, seed=2, budget=30.0, runner=runner, combine=combine)
    path = results_path(name="ensemble.jsonl")
    (old,) = read_results(path)
    old.pop("network_b_name")
    old["models"]["ensemble"]["scores"]["miou_keras"] = 0.123  # marks the rewritten record
    path.unlink()
    store_result(path, old, key=ensemble_bench._key)
    text = ensemble_bench.section_ensemble(1, lambda m: None, seed=2, budget=30.0, runner=runner, combine=combine)
    assert len(ran) == 2, "the stored seed was run again"
    (equal,) = [line for line in text.splitlines() if line.startswith("| gated_aspp") and "| equal |" in line]
    assert "| 0.1230 |" in equal


def test_a_member_b_that_equals_the_preset_is_refused(monkeypatch):
    from marsseg.errors import UserError
    from marsseg_bench import ensemble_bench

    monkeypatch.setitem(ensemble_bench.NETWORKS_B, "plain", ("the preset's own network", ["stage1.model.context=none"]))
    with pytest.raises(UserError, match=r"member b \(plain\) is the cpu preset itself"):
        ensemble_bench.member_configs(2, 30.0, "plain")
    assert ensemble_bench.current_series([], 30.0) == {}, "a network equal to the preset broke the render"


def test_each_member_b_network_is_its_own_series_and_an_unknown_one_is_refused(fake_ensemble, monkeypatch):
    from marsseg.errors import UserError
    from marsseg_bench import ensemble_bench

    runner, combine, ran, _, _ = fake_ensemble
    ensemble_bench.section_ensemble(1, lambda m: None, seed=2, budget=30.0, runner=runner, combine=combine)
    monkeypatch.setenv("MARSSEG_BENCH_ENSEMBLE_B", "aspp")
    text = ensemble_bench.section_ensemble(1, lambda m: None, seed=2, budget=30.0, runner=runner, combine=combine)
    assert ran == [("none", False), ("aspp", True), ("none", False), ("aspp", False)], "the same seed, another b"
    series = [line.split(" | ")[0][2:].split(":")[0] for line in text.splitlines() if line.startswith("| ")]
    assert series[1:] == ["gated_aspp", "gated_aspp", "aspp", "aspp"]  # after the header row
    assert "- gated_aspp (" in text and "- aspp (" in text and "aspp seed 2: 0.8, 0.2" in text
    monkeypatch.setenv("MARSSEG_BENCH_ENSEMBLE_B", "resnet")
    with pytest.raises(UserError, match="unknown ensemble member-b network 'resnet'.*gated_aspp, aspp"):
        ensemble_bench.section_ensemble(1, lambda m: None, seed=2, budget=30.0, runner=runner, combine=combine)
    assert len(ran) == 4


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

    text = "\n".join(findings(quality, [pair("copy_paste", 0.70, 0.68), pair("flips", 0.70, 0.75)], []))
    assert "+0.1600 over 1 run(s): reproduced" in text
    assert "TTA adds little" in text and "+0.0050 over 1 run(s): reproduced" in text
    assert "copy-paste gains (`recipe`, copy_paste): -0.0200 over 1 run(s): not reproduced" in text
    assert "against the medium augmentation): +0.0500 over 1 run(s): reproduced (one run)" in text
    # a positive median within the spread is not a reproduced gain; one beyond it is
    noisy = [pair("copy_paste", 0.70, 0.70 + g) for g in (0.03, 0.009, -0.01)]
    assert "+0.0090 (-0.0100 – +0.0300) over 3 run(s): not shown (the median gain is within the spread)" in "\n".join(
        findings(quality, noisy, [])
    )
    steady = [pair("copy_paste", 0.70, 0.70 + g) for g in (0.02, 0.03, 0.025)]
    assert "+0.0250 (+0.0200 – +0.0300) over 3 run(s): reproduced." in "\n".join(findings(quality, steady, []))
    assert "(`ensemble`): not measured yet" in text


def test_the_whole_recipe_switches_off_exactly_the_items_the_preset_has_on():
    from marsseg.config import flatten, override, preset

    base = preset("cpu")
    assert "flips" in recipe.items_on(base) and "copy_paste" not in recipe.items_on(base)
    with_paste = override(base, ["augment.copy_paste_rate=0.3"])
    assert set(recipe.items_on(with_paste)) == set(recipe.items_on(base)) | {"copy_paste"}
    sides = recipe.side_configs(recipe.COMPOSITE, 7, 600.0)
    assert flatten(sides["on"]) == flatten(replace_budget(base, 600.0, 7))
    off, on = flatten(sides["off"]), flatten(sides["on"])
    expected = {o.split("=")[0] for name in recipe.items_on(base) for o in recipe.ITEMS[name][1]}
    assert {k for k in off if off[k] != on[k]} == expected
    assert recipe.items_on(sides["off"]) == []


def replace_budget(cfg, budget, seed):
    import dataclasses

    return dataclasses.replace(cfg, budget_seconds=budget, seed=seed)


def test_the_recipe_target_counts_only_seeds_that_chose_nothing():
    from marsseg_bench.recipe_report import render_recipe

    current = {"items_on": ["flips"], "settings": {"on": "A", "off": "B"}}

    def pair(item, seed, off, on, settings=None):
        sides = {s: {"scores": {"miou_keras": v}} for s, v in (("off", off), ("on", on))}
        return {"section": "recipe", "item": item, "seed": seed, "budget": 600.0, "sides": sides,
                "settings": settings or current["settings"]}  # fmt: skip

    chose = [pair("flips", 44, 0.70, 0.75)]
    whole = [pair("recipe", 44, 0.70, 0.80)]  # a big gain at the seed that chose flips: not counted
    text = render_recipe(chose + whole, recipe.ITEMS, current=current)
    assert "n/a: not measured yet at a seed where no item pair ran" in text and "(not counted): +0.1000 over 44" in text
    fresh = [pair("recipe", s, 0.70, 0.70 + g) for s, g in ((47, 0.01), (48, 0.03), (49, 0.025))]
    stale = [pair("recipe", 50, 0.70, 0.90, settings={"on": "old", "off": "B"})]  # the preset has changed since
    other_budget = [{**pair("recipe", 51, 0.70, 0.90), "budget": 300.0}]
    text = render_recipe(
        chose + whole + fresh + stale + other_budget, recipe.ITEMS, current={**current, "budget": 600.0}
    )
    assert "(flips) switched off" in text
    assert "met: gain +0.0250 (+0.0100 – +0.0300) over seed(s) 47, 48, 49, ahead in 3 of 3." in text
    text = render_recipe(chose + fresh[:2], recipe.ITEMS, current=current)
    assert "NOT met: gain +0.0200 (+0.0100 – +0.0300) over seed(s) 47, 48, ahead in 2 of 2 (2 of 3 seeds)." in text
    assert "| recipe |" not in text  # the whole recipe is not an item row


def test_the_whole_recipe_runs_only_when_named_and_is_named_in_the_unknown_item_error():
    from marsseg.errors import UserError

    assert recipe.chosen_items("") == list(recipe.ITEMS) and recipe.COMPOSITE not in recipe.ITEMS
    assert recipe.chosen_items("recipe") == ["recipe"]
    with pytest.raises(UserError, match="choose from context, .*, recipe"):
        recipe.chosen_items("nope")


def test_the_run_to_run_spread_reads_the_shipped_settings_run_twice_at_one_seed():
    from marsseg_bench.recipe_report import noise_lines

    current = {"items_on": ["flips"], "settings": {"on": "SHIP", "off": "B"}, "budget": 600.0}

    def pair(item, seed, off, on, off_settings, budget=600.0):
        sides = {s: {"scores": {"miou_keras": v}} for s, v in (("off", off), ("on", on))}
        return {"item": item, "seed": seed, "budget": budget, "sides": sides,
                "settings": {"off": off_settings, "on": "OTHER"}}  # fmt: skip

    assert "has not run twice" in noise_lines([pair("context", 44, 0.79, 0.78, "SHIP")], current)[0]
    records = [
        pair("copy_paste", 44, 0.7893, 0.82, "SHIP"),
        pair("context", 44, 0.7915, 0.78, "SHIP"),
        pair("flips", 44, 0.70, 0.79, "MEDIUM"),  # another setting: not the shipped preset
        pair("context", 44, 0.60, 0.78, "SHIP", budget=300.0),  # another budget
        pair("copy_paste", 45, 0.7666, 0.77, "SHIP"),
        pair("context", 45, 0.7866, 0.80, "SHIP"),
    ]
    (line,) = noise_lines(records, current)
    assert "seed 44: 0.7893, 0.7915 (range 0.0022); seed 45: 0.7666, 0.7866 (range 0.0200)" in line
    assert "median range 0.0111" in line
