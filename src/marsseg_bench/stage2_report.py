"""The `stage2` block of BENCHMARKS.md: every stage-2 design screened, from every stored seed.

The design is chosen by its median score on the hold-out's tuning part; the reporting part and the test set
only report, so the chosen design's lead there is not the figure it was chosen by.
"""

from __future__ import annotations

import statistics

from marsseg_bench.quality_report import median_range, signed

TARGET = 0.01  # stage 2 over stage 1, both under flip TTA, on the reporting part (the target)


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def render_stage2(records: list[dict]) -> str:
    latest = max(records, key=lambda r: r["measured_at"])
    seconds, seeds = latest["budget"], sorted(int(r["seed"]) for r in records)
    names = list(latest["designs"])
    lines = [
        f"## Stage-2 designs on cached stage-1 probabilities ({seconds:.0f} s each, synthetic data)",
        "",
        f"Stage 1 is the `cpu` preset's fold models with their share of a 600 s run ({latest['stage1_seconds']:.0f} s "
        "in the latest seed, test passes included), run once per seed on the quality section's data and cached; "
        f"each design then trains stage 2 for the same {seconds:.0f} s at the same seed on the same inputs (the "
        "flip-TTA'd out-of-fold probabilities, tempered). Scores are bare: argmax over classes 1-4 under flip TTA, "
        "no class biases or clean-up, for stage 1 and stage 2 alike. The **tuning** part of the hold-out chooses "
        "the design; the **reporting** part and the 2000-image test set (leaderboard's Keras rule) only report.",
        "",
        f"{len(records)} seed(s): {', '.join(map(str, seeds))}. Medians (min – max):",
        "",
        "| design | tuning | reporting | reporting − stage 1 | test (Keras rule) | test − stage 1 | epochs "
        "| best epoch | train img/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| stage 1 alone | "
        + " | ".join(
            [
                median_range([r["stage1"]["tune"] for r in records]),
                median_range([r["stage1"]["report"] for r in records]),
                "",
                median_range([r["stage1"]["test_keras"] for r in records]),
                "",
                "",
                "",
                "",
            ]
        )
        + " |",
    ]
    for name in names:
        rows = [r for r in records if name in r["designs"]]
        d = [r["designs"][name] for r in rows]
        lines.append(
            f"| {name} | "
            + " | ".join(
                [
                    median_range([x["tune"] for x in d]),
                    median_range([x["report"] for x in d]),
                    median_range([x["report"] - r["stage1"]["report"] for x, r in zip(d, rows)], signed),
                    median_range([x["test_keras"] for x in d]),
                    median_range([x["test_keras"] - r["stage1"]["test_keras"] for x, r in zip(d, rows)], signed),
                    median_range([x["epochs"] for x in d], lambda v: f"{v:.0f}"),
                    median_range([x["best_epoch"] for x in d], lambda v: f"{v:.0f}"),
                    median_range([x["samples_per_s"] or None for x in d], lambda v: f"{v:.0f}"),
                ]
            )
            + " |"
        )
    chosen = max(names, key=lambda n: _median([r["designs"][n]["tune"] for r in records if n in r["designs"]]))
    rows = [r for r in records if chosen in r["designs"]]
    gain = [r["designs"][chosen]["report"] - r["stage1"]["report"] for r in rows]
    test_gain = [r["designs"][chosen]["test_keras"] - r["stage1"]["test_keras"] for r in rows]
    met = _median(gain) is not None and _median(gain) >= TARGET
    lines += [
        "",
        f"Chosen on the tuning part: **{chosen}**. On the reporting part, stage 2 − stage 1 = "
        f"{median_range(gain, signed)} (ahead in {sum(g > 0 for g in gain)} of {len(gain)} seeds; "
        f"target ≥ +{TARGET:.2f}: "
        f"{'met' if met else 'NOT met'}); on the test set {median_range(test_gain, signed)}.",
        "",
        "Best epoch 0 means the untrained residual head (stage 1 unchanged) was kept. A design's epochs and "
        "images/s show the compute it got in its seconds: designs ran one after another on a shared machine.",
    ]
    return "\n".join(lines)
