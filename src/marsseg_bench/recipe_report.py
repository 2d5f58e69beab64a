"""The `recipe` block of BENCHMARKS.md: each recipe item's paired on/off gains, from every stored pair.

An item earns its place in a preset only where the median of its paired gains (on − off at the same seed, test
mIoU by the leaderboard's Keras rule) beats their spread (half the range) and at least MIN_SEEDS seeds were run.
The whole recipe's pairs ("recipe": the preset as it ships against it with its items off) count towards the target
only at seeds where no item pair ran, since those chose the items, and only for the preset as it is now.
"""

from __future__ import annotations

import statistics

from marsseg_bench.quality_report import gains_over_better, median_range, signed

MIN_SEEDS = 3  # the "medians of 3"
TARGET = 0.02  # the measured recipe over the same preset without it (the target)


def gains(records: list[dict]) -> list[float]:
    """on − off test mIoU (Keras rule) per stored pair."""
    return [r["sides"]["on"]["scores"]["miou_keras"] - r["sides"]["off"]["scores"]["miou_keras"] for r in records]


def verdict(values: list[float]) -> str:
    """ "on" where the median gain beats half the range of the gains over >= MIN_SEEDS seeds, "off" where the
    median gain is at most minus that spread, else "undecided" (or how many seeds are missing)."""
    if len(values) < MIN_SEEDS:
        return f"undecided ({len(values)} of {MIN_SEEDS} seeds)"
    median, half_range = statistics.median(values), (max(values) - min(values)) / 2
    if median > half_range:
        return "on"
    if median < -half_range:
        return "off"
    return "undecided (gain within the spread)"


def findings(quality: list[dict], recipe: list[dict], ensembles: list[dict]) -> list[str]:
    """Which public findings the stand-in reproduces, from every stored run that measures one."""

    def tta_gain(r):
        tta = (r.get("kit_run", {}).get("post", {}).get("stage1") or {}).get("tta") or {}
        return None if tta.get("with") is None else tta["with"] - tta["without"]

    naive = [r["scores"]["naive"] for r in quality if "naive" in r.get("scores", {})]
    jump = [n["miou_scored"] - n["miou_keras"] for n in naive]
    tta = [g for g in map(tta_gain, quality) if g is not None]
    copy = gains([r for r in recipe if r["item"] == "copy_paste"])
    flips = gains([r for r in recipe if r["item"] == "flips"])
    cycle = gains([r for r in recipe if r["item"] == "model_cycle"])
    pair = gains_over_better(ensembles, "ensemble")

    def line(claim, values, reproduced):
        if not values:
            return f"- {claim}: not measured yet."
        verdict = "reproduced" if reproduced(statistics.median(values)) else "not reproduced"
        return f"- {claim}: {median_range(values, signed)} over {len(values)} run(s): {verdict}."

    def gain_line(claim, values):
        """A claimed gain is reproduced only where its median beats its spread (half the range), as an item's is."""
        if not values:
            return f"- {claim}: not measured yet."
        median, half_range = statistics.median(values), (max(values) - min(values)) / 2
        if median <= 0:
            verdict = "not reproduced"
        elif len(values) > 1 and median <= half_range:
            verdict = "not shown (the median gain is within the spread)"
        else:
            verdict = "reproduced" + (" (one run)" if len(values) == 1 else "")
        return f"- {claim}: {median_range(values, signed)} over {len(values)} run(s): {verdict}."

    return [
        "Public findings against the stand-in (medians, min – max):",
        "",
        line(
            "Background weight 0 / argmax over 1-4 is worth 10-17 points: what predicting background costs under "
            "the Keras rule (the naive U-Net, which predicts it: its mean over classes 1-4 minus its Keras-rule "
            "score, `quality`)",
            jump,
            lambda m: m >= 0.10,
        ),
        line(
            "TTA adds little (the kit's flip TTA on the tuning part, stage 1, `quality`)", tta, lambda m: abs(m) < 0.01
        ),
        gain_line(
            "Flips beat heavier augmentation, whose rotation, zoom and noise cost 1-3 points (`recipe`, flips: flips "
            "only against the medium augmentation)",
            flips,
        ),
        gain_line("Big-rock copy-paste gains (`recipe`, copy_paste)", copy),
        gain_line("Different networks gain: a stage 1 of two networks over one (`recipe`, model_cycle)", cycle),
        gain_line("An ensemble of two runs over the better one (`ensemble`)", pair),
    ]


def composite_lines(records: list[dict], current: dict | None, items: dict) -> list[str]:
    """The whole recipe against the preset without it: the target, read at seeds that chose nothing."""
    if current is None:
        return ["The whole recipe: the preset has no recipe item on, so there is nothing to measure."]
    included = ", ".join(current["items_on"])
    head = (
        f"The whole recipe: the `cpu` preset as it ships against the same preset with the items it has on "
        f"({included}) switched off (`MARSSEG_BENCH_RECIPE_ITEMS=recipe`). "
    )
    rows = sorted(
        (
            r
            for r in records
            if r["item"] == "recipe"
            and r["settings"] == current["settings"]
            and float(r["budget"]) == current.get("budget", float(r["budget"]))
        ),
        key=lambda r: int(r["seed"]),
    )
    choosing = {int(r["seed"]) for r in records if r["item"] in items}
    fresh = [r for r in rows if int(r["seed"]) not in choosing]
    used = [r for r in rows if int(r["seed"]) in choosing]
    g = gains(fresh)
    if not g:
        verdict_text = "n/a: not measured yet at a seed where no item pair ran (those chose the items)"
    else:
        met = len(g) >= MIN_SEEDS and statistics.median(g) >= TARGET
        verdict_text = (
            f"{'met' if met else 'NOT met'}: gain {median_range(g, signed)} over seed(s) "
            f"{', '.join(str(r['seed']) for r in fresh)}, ahead in {sum(x > 0 for x in g)} of {len(g)}"
            + ("" if len(g) >= MIN_SEEDS else f" ({len(g)} of {MIN_SEEDS} seeds)")
        )
    line = head + f"Target ≥ +{TARGET:.2f} (medians of {MIN_SEEDS}, seeds no item pair ran at): {verdict_text}."
    if used:
        line += (
            f" At seeds that chose the items (not counted): {median_range(gains(used), signed)} over "
            f"{', '.join(str(r['seed']) for r in used)}."
        )
    return [line]


def noise_lines(records: list[dict], current: dict | None) -> list[str]:
    """Run-to-run spread: the preset as it ships, run more than once at one seed (sides of different pairs that have
    the same settings, such as the "off" sides of copy_paste and context). Wall-clock budgets and threads make no two
    runs alike, so a pair's gain below this spread is not a measured gain."""
    if current is None:
        return []
    shipped = current["settings"]["on"]
    budget = current.get("budget")
    by_seed: dict[int, list[float]] = {}
    for r in records:
        if budget is not None and float(r["budget"]) != budget:
            continue
        for side in ("off", "on"):
            if r["settings"][side] == shipped:
                by_seed.setdefault(int(r["seed"]), []).append(r["sides"][side]["scores"]["miou_keras"])
    repeated = {seed: v for seed, v in sorted(by_seed.items()) if len(v) > 1}
    if not repeated:
        return ["Run-to-run spread: the shipped preset has not run twice at one seed yet."]
    ranges = [max(v) - min(v) for v in repeated.values()]
    per_seed = "; ".join(
        f"seed {seed}: {', '.join(f'{x:.4f}' for x in v)} (range {max(v) - min(v):.4f})" for seed, v in repeated.items()
    )
    return [
        f"Run-to-run spread: the `cpu` preset as it ships, run more than once at one seed (sides of different pairs "
        f"with the same settings): {per_seed}; median range {statistics.median(ranges):.4f}. A pair's gain below it "
        "is within what two identical runs differ by (the wall-clock budget and threads make no two runs alike)."
    ]


def render_recipe(records: list[dict], items: dict, quality=(), ensembles=(), current=None) -> str:
    """The block; `current` is the whole recipe as the preset has it now ({"items_on", "settings"}) or None."""
    records = [r for r in records if r.get("section") == "recipe"]
    lines = [
        "## The recipe, item by item (paired on/off kit runs, synthetic data)",
        "",
        "Each row: the `cpu` preset run twice at the same seed for the same seconds, with the item off and on "
        "(one after the other, in an order that alternates with the seed), on the quality section's data; test "
        "mIoU on the 2000-image synthetic test set by the leaderboard's Keras rule. Gain = on − off at the same "
        f"seed: median (min – max). An item is turned on where the median gain beats half the range over ≥ "
        f"{MIN_SEEDS} seeds.",
        "",
        "| item | on means | seeds | off | on | gain | ahead | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, (meaning, _, _) in items.items():
        rows = sorted((r for r in records if r["item"] == name), key=lambda r: int(r["seed"]))
        if not rows:
            lines.append(f"| {name} | {meaning} | 0 | | | | | not measured yet |")
            continue
        g = gains(rows)
        lines.append(
            f"| {name} | {meaning} | {', '.join(str(r['seed']) for r in rows)} | "
            f"{median_range([r['sides']['off']['scores']['miou_keras'] for r in rows])} | "
            f"{median_range([r['sides']['on']['scores']['miou_keras'] for r in rows])} | {median_range(g, signed)} | "
            f"{sum(x > 0 for x in g)} of {len(g)} | {verdict(g)} |"
        )
    budgets = sorted({float(r["budget"]) for r in records})
    lines += [
        "",
        f"Seconds a side: {', '.join(f'{b:.0f}' for b in budgets) or 'n/a'}; pairs measured at commit(s) "
        f"{', '.join(sorted({str(r.get('commit', '?')) for r in records})) or 'n/a'}. Pairs are stored in "
        "`.bench/recipe.jsonl`; `marsseg bench --only recipe --seed S` adds seed S for every item not yet stored "
        "there (`MARSSEG_BENCH_RECIPE_ITEMS=a,b` for some).",
        "",
        *composite_lines(records, current, items),
        "",
        *noise_lines(records, current),
        "",
        *findings(list(quality), records, list(ensembles)),
    ]
    return "\n".join(lines)
