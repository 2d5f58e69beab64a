"""The `paired` block of BENCHMARKS.md, written from every stored pair (`paired`), never from one run alone.

Per stand-in and pair: each side's median (min – max) over seeds, the paired differences (side a − side b at the
same seed) with how many seeds a was ahead, and a row per seed; then the target lines, misses stated plainly.
"""

from __future__ import annotations

import statistics

from marsseg_bench.quality_report import CLASS_NAMES, cell, fmt, signed
from marsseg_bench.quality_store import METRICS, spread, value

LEAD_TARGET, LEAD_SEEDS = 0.03, 5  # kit − best-practice, Keras rule, median over at least this many seeds
NOT_MEASURED_TODAY = "not measured under today's settings"  # a target with no kit|best pair under today's settings
CONVERGED_TARGET, CONVERGED_SEEDS = 0.02, 2  # the same at the converged horizon (`converged`)
# How a side's training may end at the converged horizon: its own rule, not the deadline (`fit.StageResult`).
OWN_STOPS = ("patience", "epochs")
SPREAD_TARGET = 0.01  # max |a − b| of an identical pair, Keras rule
# A candidate setting (`kit[...]|kit`) is kept only where it helps on both stand-ins: decided at this many seeds a
# stand-in, or CLOSE_SEEDS where a median gain is under the identical pairs' spread target (issue 27 item 5).
CANDIDATE_SEEDS, CLOSE_SEEDS = 3, 5
BIG_ROCK = "iou.4"
LABELS = {"miou_keras": "mIoU (Keras rule)", "miou_scored": "mIoU (classes 1-4)"} | {
    f"iou.{c}": f"{name} IoU" for c, name in CLASS_NAMES.items()
}
RUN_ROWS = {"seconds": ("seconds to test labels", 0), "train_samples_per_s": ("training samples/s", 1)}
RUN_ROWS["train_samples"] = ("training samples seen (≈ rate × epoch seconds)", 0)
HORIZON = (
    " Here the budget is a ceiling, not the measure: each side trains until its own rule stops it (the kit's "
    "patience or epoch cap, its cosine decay ending there; the reference's patience under reduce-on-plateau), as "
    "on Kaggle, and a side the deadline cut is named below."
)
EARLIER = " @ "  # in a series label: `PAIR @ COMMIT (earlier settings)`, run under settings since changed


def run_value(record: dict, side: str, key: str) -> float | None:
    found = record.get("runs", {}).get(side, {}).get(key)
    return None if found is None else float(found)


def differences(records: list[dict], metric: str) -> list[float]:
    """Side a − side b per record (the same seed), where both have the score."""
    pairs = [(value(r, "a", metric), value(r, "b", metric)) for r in records]
    return [a - b for a, b in pairs if a is not None and b is not None]


def groups(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Records by (stand-in, pair), each list by seed."""
    found: dict[tuple[str, str], list[dict]] = {}
    for record in sorted(records, key=lambda r: (r["stand_in"], r["pair"], int(r["seed"]))):
        found.setdefault((record["stand_in"], record["pair"]), []).append(record)
    return found


def lead_line(
    pair: str, by_stand_in: dict[str, list[dict]], stand_ins, target: float = LEAD_TARGET, seeds: int = LEAD_SEEDS
) -> str:
    """kit − best-practice ≥ +`target` (Keras rule, median) over ≥ `seeds` seeds on each stand-in."""
    parts, met = [], True
    for stand_in in stand_ins:
        diffs = differences(by_stand_in.get(stand_in, []), "miou_keras")
        if not diffs:
            parts.append(f"{stand_in}: {NOT_MEASURED_TODAY}")
            met = False
            continue
        median, n = statistics.median(diffs), len(diffs)
        ok = median >= target and n >= seeds
        met &= ok
        short = [] if median >= target else [f"short by {target - median:.4f}"]
        short += [] if n >= seeds else [f"only {n} of {seeds} seeds"]
        parts.append(
            f"{stand_in}: median {signed(median)} over {n} seed(s)" + (f", {', '.join(short)}" if short else "")
        )
    verdict = "met" if met else "NOT met"
    return (
        f"- `{pair}`: kit − best-practice ≥ +{target:.2f} (Keras rule, median of paired seeds) over "
        f"≥ {seeds} seeds on each stand-in: **{verdict}** ({'; '.join(parts)})"
    )


def big_rock_line(pair: str, by_stand_in: dict[str, list[dict]], stand_ins) -> str:
    """kit big rock ≥ best-practice big rock: the median paired difference ≥ 0 on each stand-in."""
    parts, met = [], True
    for stand_in in stand_ins:
        diffs = differences(by_stand_in.get(stand_in, []), BIG_ROCK)
        if not diffs:
            parts.append(f"{stand_in}: {NOT_MEASURED_TODAY}")
            met = False
            continue
        median = statistics.median(diffs)
        met &= median >= 0
        ahead = sum(d > 0 for d in diffs)
        parts.append(f"{stand_in}: median {signed(median, 3)}, kit ahead at {ahead} of {len(diffs)} seed(s)")
    return (
        f"- `{pair}`: kit big rock ≥ best-practice big rock (median paired difference ≥ 0 on each stand-in): "
        f"**{'met' if met else 'NOT met'}** ({'; '.join(parts)})"
    )


def candidate_line(pair: str, by_stand_in: dict[str, list[dict]], stand_ins) -> str:
    """A `kit[...]|kit` series: the candidate's median gain over the kit it ran against (today's, or its commit's
    for a series under earlier settings) per stand-in, and whether it helps on
    both: a median gain > 0 on each stand-in over ≥ 3 seeds, or ≥ 5 where a gain is under the spread target."""
    parts, medians, counts = [], [], []
    for stand_in in stand_ins:
        diffs = differences(by_stand_in.get(stand_in, []), "miou_keras")
        rock = differences(by_stand_in.get(stand_in, []), BIG_ROCK)
        counts.append(len(diffs))
        if not diffs:
            parts.append(f"{stand_in}: not measured")
            continue
        medians.append(statistics.median(diffs))
        rock_text = f", big rock {signed(statistics.median(rock), 3)}" if rock else ""
        parts.append(
            f"{stand_in}: median {signed(medians[-1])}, ahead at {sum(d > 0 for d in diffs)} of {len(diffs)} "
            f"seed(s){rock_text}"
        )
    if min(counts) < CANDIDATE_SEEDS:
        verdict = f"undecided (fewer than {CANDIDATE_SEEDS} seeds on a stand-in)"
    elif any(m <= 0 for m in medians):
        verdict = "**does not help on both**"
    elif any(m < SPREAD_TARGET for m in medians) and min(counts) < CLOSE_SEEDS:
        verdict = f"close (a gain under {SPREAD_TARGET}): undecided until {CLOSE_SEEDS} seeds a stand-in"
    else:
        verdict = "**helps on both**"
    against = "the kit of its commit" if EARLIER in pair else "today's kit"
    return f"- candidate `{pair}` against {against}: {verdict} ({'; '.join(parts)})"


def spread_line(identical: dict[tuple[str, str], list[dict]]) -> str:
    """Spread of identical pairs: the largest |a − b| (Keras rule) over every identical pair and seed."""
    if not identical:
        return "- spread of identical pairs ≤ 0.01: not measured (add `kit|kit` to MARSSEG_BENCH_PAIRED_PAIRS)"
    gaps = {key: [abs(d) for d in differences(rs, "miou_keras")] for key, rs in identical.items()}
    worst = max(max(g) for g in gaps.values() if g)
    parts = [
        f"{stand_in} `{pair}`: max {fmt(max(g))}, median {fmt(statistics.median(g))} over {len(g)} seed(s)"
        for (stand_in, pair), g in gaps.items()
        if g
    ]
    verdict = "met" if worst <= SPREAD_TARGET else f"NOT met by {worst - SPREAD_TARGET:.4f}"
    return (
        f"- spread of identical pairs ≤ {SPREAD_TARGET} (max |a − b|, Keras rule): **{verdict}** ({'; '.join(parts)})"
    )


def budget_line(records: list[dict]) -> str:
    """Every kit side that ended within 5% of its budget, and the ones that did not, with their seconds."""
    runs = [(r, side) for r in records for side in "ab" if r["runs"][side].get("kind") == "kit"]
    misses = [(r, side) for r, side in runs if not r["runs"][side].get("within_budget")]
    listed = "; ".join(
        f"seed {r['seed']} {r['stand_in']} `{r['pair']}` side {side}: {r['runs'][side]['seconds']:.1f} s"
        for r, side in misses
    )
    return f"- every kit run ends within 5% of its budget: {len(runs) - len(misses)} of {len(runs)}" + (
        f" (missed: {listed})" if misses else ""
    )


def side_stops(run: dict) -> list[str]:
    """How each training of a side ended: the kit's stage-1 fold models and its stage 2 (where it trained), or a
    reference's one network; empty where the record predates stop reasons."""
    details = run.get("details") or {}
    if run.get("kind") != "kit":
        return [details["stop_reason"]] if details.get("stop_reason") else []
    stage2 = (details.get("stage2") or {}).get("stop_reason")
    return list(details.get("stage1_stop_reasons") or []) + ([stage2] if stage2 else [])


def converged_line(records: list[dict]) -> str:
    """Every side trained until its own rule stopped it (patience or its epoch cap), not the deadline: the
    condition under which a converged-horizon pair measures what it says."""
    runs = [(r, side, side_stops(r["runs"][side])) for r in records for side in "ab"]
    cut = [(r, side, stops) for r, side, stops in runs if not stops or any(s not in OWN_STOPS for s in stops)]
    listed = "; ".join(
        f"seed {r['seed']} {r['stand_in']} side {side} ({r['runs'][side].get('kind')}): "
        + (", ".join(stops) if stops else "no stop reason stored")
        for r, side, stops in cut
    )
    verdict = "met" if runs and not cut else "NOT met"
    return (
        f"- every side stopped by its own rule ({' or '.join(OWN_STOPS)}), not the deadline: **{verdict}**, "
        f"{len(runs) - len(cut)} of {len(runs)} sides" + (f" (cut or unknown: {listed})" if cut else "")
    )


def group_table(a: str, b: str, records: list[dict]) -> list[str]:
    """Medians (min – max) per side (specs `a`, `b`), paired differences and seeds ahead, then a row per seed."""
    lines = [f"| | `{a}` (a) | `{b}` (b) | a − b: median (min – max) | a ahead |", "|---|---|---|---|---|"]
    for metric in METRICS:
        digits = 4 if metric.startswith("miou") else 3
        side = [cell(spread(value(r, s, metric) for r in records), digits) for s in "ab"]
        diffs = differences(records, metric)
        ahead = f"{sum(d > 0 for d in diffs)} of {len(diffs)}" if diffs else "n/a"
        lines.append(f"| {LABELS[metric]} | {side[0]} | {side[1]} | {cell(spread(diffs), digits, signed)} | {ahead} |")
    for key, (label, digits) in RUN_ROWS.items():
        side = [cell(spread(run_value(r, s, key) for r in records), digits) for s in "ab"]
        lines.append(f"| {label} | {side[0]} | {side[1]} | | |")
    lines += ["", "| seed | cores (a, b) | a (Keras rule) | b (Keras rule) | a − b | a seconds | b seconds |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in records:
        cores = r["cores"]
        where = f"{cores['a']}, {cores['b']}" + ("" if cores.get("parallel") else " (one after the other)")
        ka, kb = value(r, "a", "miou_keras"), value(r, "b", "miou_keras")
        gap = None if ka is None or kb is None else ka - kb
        sa, sb = (f"{r['runs'][s]['seconds']:.0f}" for s in "ab")
        lines.append(f"| {r['seed']} | {where} | {fmt(ka)} | {fmt(kb)} | {signed(gap)} | {sa} | {sb} |")
    return lines


def render_paired(
    records: list[dict], budget: float, preset_name: str, stand_ins, pairs, converged: bool = False
) -> str:
    """The block: protocol, target lines, then per stand-in and pair its table. `pairs`: {label: (Side, Side)} (or
    a list of (Side, Side), labelled by their specs); a label with ' @ ' is a series under earlier settings.
    `converged`: the converged horizon's block (`converged`): its lead target, and whether every side stopped by
    its own rule in place of the 5% budget window."""
    found = groups(records)
    commits = sorted({r.get("commit", "unknown") for r in records})
    sizes = ", ".join(sorted({f"{r['data']['n_train']} train / {r['data']['n_test']} test images" for r in records}))
    sizes = sizes or "no data yet"
    title = f"## Paired runs: two sides at once, one core each ({budget:.0f} s a side, `{preset_name}` preset)"
    if converged:
        title = (
            f"## Converged horizon: paired runs until every side stops improving (at most {budget:.0f} s a side, "
            f"`{preset_name}` preset)"
        )
    lines = [
        title,
        "",
        "Each pair starts two processes together, each pinned to its own core with one thread pool (which side gets "
        "the first core alternates with the seed), and gives both the same wall clock, counted from each side's own "
        "start (after its imports) to test labels, so the machine's speed swings hit both alike. Differences are "
        "side a − side b at the same seed on the quality sections' synthetic test set (data seed 5) under the Keras "
        "rule, over classes 1-4 and per class; identical pairs (one side on both cores) measure the protocol's noise."
        + (HORIZON if converged else ""),
        "",
        f"{len(records)} stored pair(s) on {sizes}; stand-ins {', '.join(stand_ins)}; "
        f"commits {', '.join(commits) or 'none'}.",
        "",
        "### Targets",
        "",
    ]
    names = pairs if isinstance(pairs, dict) else {f"{a.spec}|{b.spec}": (a, b) for a, b in pairs}
    # The lead targets always show: where no `kit|best` ran under today's settings they read "not measured" (a
    # series since changed keeps its table below, and decides nothing about today's kit).
    leads = [p for p, (a, b) in names.items() if (a.kind, b.kind) == ("kit", "best") and EARLIER not in p]
    target = (CONVERGED_TARGET, CONVERGED_SEEDS) if converged else (LEAD_TARGET, LEAD_SEEDS)
    for pair in leads or ["kit|best"]:
        by_stand_in = {s: found.get((s, pair), []) for s in stand_ins}
        lines += [lead_line(pair, by_stand_in, stand_ins, *target), big_rock_line(pair, by_stand_in, stand_ins)]
    identical = {key: rs for key, rs in found.items() if rs[0].get("identical")}
    if converged:
        lines += [converged_line(records)] + ([spread_line(identical)] if identical else [])
    else:
        lines += [spread_line(identical), budget_line(records)]
    # A candidate measured under earlier settings keeps its verdict (the one a preset choice made then cites),
    # worded against the kit of its commit; it decides nothing about today's kit.
    candidates = [
        pair for pair, (a, b) in names.items() if a.kind == b.kind == "kit" and a.overrides and not b.overrides
    ]
    if candidates:
        lines += ["", "### Candidate settings (kept only where they help on both stand-ins)", ""]
        for pair in sorted(candidates, key=lambda p: EARLIER in p):
            lines.append(candidate_line(pair, {s: found.get((s, pair), []) for s in stand_ins}, stand_ins))
    for stand_in in stand_ins:
        for pair, (a, b) in names.items():
            chosen = found.get((stand_in, pair), [])
            if not chosen:
                continue
            version = chosen[0]["data"].get("version")
            seeds = ", ".join(str(r["seed"]) for r in chosen)
            lines += ["", f"### {stand_in} stand-in (version {version}): `{pair}`, {len(chosen)} seed(s) ({seeds})", ""]
            lines += group_table(a.spec, b.spec, chosen)
    return "\n".join(lines)
