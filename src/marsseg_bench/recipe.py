"""`make bench` recipe section: each setting the public write-ups used, on against off, in paired kit runs.

For every item in ITEMS and the section's seed, the kit runs twice on the quality section's data (full-size
synthetic set, 600 s each by default): the `cpu` preset with the item's "off" settings, then with its "on"
settings, in the same invocation, one after the other (the order alternates with the seed, so a drifting machine
favours neither side). Both runs are scored on the 2000-image synthetic test set by the leaderboard's Keras rule.
Each pair is one JSON line in `.bench/recipe.jsonl`, stored as it finishes; a pair already stored at the same seed,
budget, data and settings is not run again, so an interrupted series resumes (`--seed S --repeat K`).
`MARSSEG_BENCH_RECIPE_ITEMS=a,b` runs only those items. The block (`recipe_report`) is written from every stored
pair: per item the paired gains' median and spread, and whether the median beats the spread.

The whole recipe (COMPOSITE, "recipe") is one more pair: the `cpu` preset as it ships against the same preset with
every item it has on (`items_on`) switched off, run only when named (`MARSSEG_BENCH_RECIPE_ITEMS=recipe`). The
preset's items were chosen on the item pairs' seeds, so the issue's target (the recipe over the preset without it)
is read only at seeds no item pair was run at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from marsseg.config import flatten, override, preset, to_dict
from marsseg.errors import UserError
from marsseg.pipeline.run import run
from marsseg.stamps import git_commit
from marsseg_bench.quality import (
    N_TEST,
    N_TRAIN,
    QUALITY_BUDGET,
    on_quality_data,
    quality_data,
    scored_run,
    write_quality_data,
)
from marsseg_bench.quality_store import config_fingerprint, read_results, results_path, store_result
from marsseg_bench.recipe_report import render_recipe
from marsseg_bench.timing import machine_description

RECIPE_BUDGET = float(os.environ.get("MARSSEG_BENCH_RECIPE_BUDGET", str(QUALITY_BUDGET)))
PRESET = "cpu"

# name -> (what "on" means, the "off" overrides, the "on" overrides), both on top of the cpu preset.
ITEMS: dict[str, tuple[str, list[str], list[str]]] = {
    "context": (
        "ASPP + global-pooling context block after stage 1's bottleneck (rates 2,4)",
        ["stage1.model.context=none"],
        ["stage1.model.context=aspp"],
    ),
    "copy_paste": (
        "big-rock components pasted into stage-1 training images (rate 0.3)",
        ["augment.copy_paste_rate=0"],
        ["augment.copy_paste_rate=0.3"],
    ),
    "weight_cap": (
        "inverse-frequency class weights capped at 10x, against classes 1-4 weighted alike",
        ["stage1.loss.class_weight_power=0", "stage1.loss.max_weight_ratio=0"],
        ["stage1.loss.class_weight_power=1", "stage1.loss.max_weight_ratio=10"],
    ),
    "flips": (
        "flips (horizontal and vertical) only, against the medium augmentation "
        "(horizontal flips, shifts, scale, rotation, shear, brightness, gamma, noise)",
        ["augment.strength=medium"],
        ["augment.strength=flips"],
    ),
    "model_cycle": (
        "stage 1's two fold models are different networks (plain, then ASPP), against one network twice",
        ["data.fold_models=2", "stage1.model_cycle="],
        ["data.fold_models=2", "stage1.model_cycle=context=none | context=aspp"],
    ),
}


COMPOSITE = "recipe"  # the preset as it ships against the same preset with all its items off
ITEMS_ENV = "MARSSEG_BENCH_RECIPE_ITEMS"  # which items a run measures


def chosen_items(names: str | None = None) -> list[str]:
    """The items to run: `names` (comma-separated; default $MARSSEG_BENCH_RECIPE_ITEMS, else every item). The whole
    recipe (COMPOSITE) runs only when named: it counts only at seeds where no item pair ran."""
    names = names if names is not None else os.environ.get(ITEMS_ENV, "")
    known = [*ITEMS, COMPOSITE]
    wanted = [n.strip() for n in names.split(",") if n.strip()] or list(ITEMS)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise UserError(f"unknown recipe item {', '.join(unknown)}; choose from {', '.join(known)}")
    return wanted


def items_on(cfg) -> list[str]:
    """The items `cfg` has on: those whose "on" settings change nothing in it."""
    flat = flatten(cfg)
    return [name for name, (_, _, on) in ITEMS.items() if flatten(override(cfg, on)) == flat]


def off_overrides(items: list[str]) -> list[str]:
    """Every "off" setting of `items`, in order: the whole recipe's off side."""
    return [o for name in items for o in ITEMS[name][1]]


def side_configs(item: str, seed: int, budget: float) -> dict:
    """{"off": Config, "on": Config} for `item` (or COMPOSITE) at `seed` under `budget` seconds."""
    base = replace(preset(PRESET), budget_seconds=budget, seed=int(seed))
    if item == COMPOSITE:
        included = items_on(base)
        if not included:
            raise UserError(f"the {PRESET} preset has no recipe item on, so it has no recipe to measure")
        return {"off": override(base, off_overrides(included)), "on": base}
    _, off, on = ITEMS[item]
    return {"off": override(base, off), "on": override(base, on)}


def pair_key(record: dict) -> tuple:
    return (
        record["item"],
        int(record["seed"]),
        float(record["budget"]),
        record["settings"]["on"],
        record["settings"]["off"],
    )


def measure_pair(item: str, seed: int, budget: float, log, runner=run) -> dict:
    """Both sides of `item` at `seed`: scores on the synthetic test set, and each run's own figures."""
    configs = side_configs(item, seed, budget)
    order = ("off", "on") if seed % 2 == 0 else ("on", "off")
    tmp = Path(tempfile.mkdtemp(prefix="marsseg-recipe-"))
    sides = {}
    try:
        synthetic, data = write_quality_data(tmp, N_TRAIN, N_TEST)
        for side in order:
            log(f"recipe: {item} {side} (seed {seed}, {budget:.0f}s)")
            result = scored_run(configs[side], data, tmp / side, synthetic.test_labels, runner)
            result["fold_epochs"] = (result.pop("metrics").get("stage1") or {}).get("fold_epochs")
            sides[side] = result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "order": list(order),
        "sides": sides,
        "settings": {s: config_fingerprint(to_dict(c)) for s, c in configs.items()},
    }


def _what(item: str, configs: dict) -> dict:
    """The record's account of what the two sides are."""
    if item != COMPOSITE:
        return {"overrides": {"off": ITEMS[item][1], "on": ITEMS[item][2]}}
    included = items_on(configs["on"])
    return {"items_on": included, "overrides": {"off": off_overrides(included), "on": []}}


def section_recipe(repeats: int, log, seed: int | None = None, budget: float = RECIPE_BUDGET, runner=run) -> str:
    """Every chosen item's pair at `seed` (default the preset's), each stored as it finishes; the block from all."""
    import keras

    seed = preset(PRESET).seed if seed is None else int(seed)
    path = results_path(name="recipe.jsonl")
    for item in chosen_items():
        configs = side_configs(item, seed, budget)
        settings = {s: config_fingerprint(to_dict(c)) for s, c in configs.items()}
        probe = {"item": item, "seed": seed, "budget": budget, "settings": settings}
        if any(pair_key(r) == pair_key(probe) for r in on_quality_data(read_results(path))):
            log(f"recipe: {item} at seed {seed} already stored; skipped")
            continue
        measured = measure_pair(item, seed, budget, log, runner)
        record = {
            "section": "recipe",
            "item": item,
            "seed": seed,
            "budget": float(budget),
            "data": quality_data(),
            "preset": PRESET,
            **_what(item, configs),
            "commit": git_commit("short", cwd=Path.cwd()),
            "machine": machine_description(),
            "backend": keras.backend.backend(),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **measured,
        }
        store_result(path, record, key=pair_key)
    quality = [r for r in on_quality_data(read_results(results_path())) if r.get("section") == "quality"]
    ensembles = on_quality_data(read_results(results_path(name="ensemble.jsonl")))
    return render_recipe(on_quality_data(read_results(path)), ITEMS, quality, ensembles, current_recipe(budget))


def current_recipe(budget: float) -> dict | None:
    """The whole recipe as the preset has it now: its items and its pair's settings; None where it has none."""
    try:
        configs = side_configs(COMPOSITE, 0, budget)
    except UserError:
        return None
    return {
        "items_on": items_on(configs["on"]),
        "settings": {s: config_fingerprint(to_dict(c)) for s, c in configs.items()},
        "budget": float(budget),
    }
