"""`make bench` ensemble section: two kit runs with different networks, and `marsseg ensemble` of the two.

At each seed the `cpu` preset runs twice on the quality section's data (600 s each by default, one after the
other): member "a" as the preset is, member "b" with a different stage-1 network, one of NETWORKS_B
(`MARSSEG_BENCH_ENSEMBLE_B`, default the first). `pipeline.ensemble` then averages the two runs' final stages
from their saved models, once with equal weights (the command's default) and once with weights chosen on the
shared tuning part (`--weights tuned`); all are scored on the 2000-image synthetic test set by the leaderboard's
Keras rule. Each member-b network is its own series with its own target line; the tuned row is beside the equal
one, from the same two runs. The ensemble costs both runs' seconds: the comparison is the issue's (the pair against
the better of its members), not one at equal compute. Each seed is one JSON line in `.bench/ensemble.jsonl`; a seed
already stored with the same settings is not run again.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from marsseg.config import override, preset, to_dict
from marsseg.errors import UserError
from marsseg.pipeline.run import run
from marsseg.stamps import git_commit
from marsseg.submission.formats import read_submission
from marsseg_bench.quality import (
    N_TEST,
    N_TRAIN,
    QUALITY_BUDGET,
    _scores,
    on_quality_data,
    quality_data,
    scored_run,
    write_quality_data,
)
from marsseg_bench.quality_report import ensemble_test_miou as _test
from marsseg_bench.quality_report import gains_over_better, median_range, signed
from marsseg_bench.quality_store import config_fingerprint, read_results, results_path, store_result
from marsseg_bench.timing import machine_description

ENSEMBLE_BUDGET = float(os.environ.get("MARSSEG_BENCH_ENSEMBLE_BUDGET", str(QUALITY_BUDGET)))
PRESET = "cpu"
# Member b's network, by name -> (what it is, its overrides on top of the preset).
NETWORKS_B: dict[str, tuple[str, list[str]]] = {
    # The write-ups' "gated, then ASPP" pair. On 2 cores attention gates cost training epochs in a fixed budget.
    "gated_aspp": (
        "attention gates and an ASPP context block",
        ["stage1.model.attention=true", "stage1.model.context=aspp"],
    ),
    # Added after gated_aspp's seeds 44-46 (b trailed a by a median 0.024): a different network of about a's speed
    # (the recipe's context item trained 5/5, 6/6 and 5/6 stage-1 epochs on/off), so measured from seed 47 on.
    "aspp": ("an ASPP context block (about as fast as member a)", ["stage1.model.context=aspp"]),
}
TARGET = 0.01  # the ensemble over the better member (the target)
NETWORK_ENV = "MARSSEG_BENCH_ENSEMBLE_B"  # member b's network, by name


def chosen_network(name: str | None = None) -> str:
    """Member b's network: `name`, default $MARSSEG_BENCH_ENSEMBLE_B, else the first of NETWORKS_B."""
    name = (name if name is not None else os.environ.get(NETWORK_ENV, "")).strip() or next(iter(NETWORKS_B))
    if name not in NETWORKS_B:
        raise UserError(
            f"unknown ensemble member-b network {name!r} ({NETWORK_ENV}); choose from {', '.join(NETWORKS_B)}"
        )
    return name


def member_configs(seed: int, budget: float, network: str | None = None) -> dict:
    name = chosen_network(network)
    base = replace(preset(PRESET), budget_seconds=budget, seed=int(seed))
    members = {"a": base, "b": override(base, NETWORKS_B[name][1])}
    if to_dict(members["a"]) == to_dict(members["b"]):  # e.g. once the preset itself turns the block on
        raise UserError(f"ensemble member b ({name}) is the {PRESET} preset itself; choose another network")
    return members


def _settings(seed: int, budget: float, network: str) -> dict:
    return {n: config_fingerprint(to_dict(c)) for n, c in member_configs(seed, budget, network).items()}


def _key(record: dict) -> tuple:
    return (int(record["seed"]), float(record["budget"]), record["settings"]["a"], record["settings"]["b"])


def measure_ensemble(seed: int, budget: float, log, runner=run, combine=None, network: str | None = None) -> dict:
    """Both members and their ensemble at `seed`: test scores and each run's own figures."""
    from marsseg.pipeline.ensemble import ensemble

    combine = combine or ensemble
    configs = member_configs(seed, budget, network)
    tmp = Path(tempfile.mkdtemp(prefix="marsseg-ensemble-"))
    out = {}
    try:
        synthetic, data = write_quality_data(tmp, N_TRAIN, N_TEST)
        for name, cfg in configs.items():
            log(f"ensemble: member {name} (seed {seed}, {budget:.0f}s)")
            out[name] = scored_run(cfg, data, tmp / name, synthetic.test_labels, runner)
            out[name].pop("metrics")
        for name, weights in (("ensemble", "equal"), ("ensemble_tuned", "tuned")):
            log(f"ensemble: combining the two runs ({weights} weights)")
            started = time.monotonic()
            summary = combine([tmp / "a", tmp / "b"], tmp / name, data=data, log=lambda m: None, weights=weights)
            labels = read_submission(tmp / name / "submission.csv", N_TEST).masks
            out[name] = {
                "scores": _scores(synthetic.test_labels, labels),
                "seconds": time.monotonic() - started,
                "val_miou_final": summary.get("val_miou_final"),
                "weights": summary.get("weights"),
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"models": out, "settings": {n: config_fingerprint(to_dict(c)) for n, c in configs.items()}}


def section_ensemble(
    repeats: int, log, seed: int | None = None, budget: float = ENSEMBLE_BUDGET, runner=run, combine=None
) -> str:
    network = chosen_network()  # before the slow import: a bad name is one line at once

    import keras

    seed = preset(PRESET).seed if seed is None else int(seed)
    path = results_path(name="ensemble.jsonl")
    probe = {"seed": seed, "budget": budget, "settings": _settings(seed, budget, network)}
    if any(_key(r) == _key(probe) for r in on_quality_data(read_results(path))):
        log(f"ensemble: seed {seed} ({network}) already stored; skipped")
    else:
        record = {
            "section": "ensemble",
            "seed": seed,
            "budget": float(budget),
            "data": quality_data(),
            "preset": PRESET,
            "network_b_name": network,
            "network_b": NETWORKS_B[network][1],
            "commit": git_commit("short", cwd=Path.cwd()),
            "machine": machine_description(),
            "backend": keras.backend.backend(),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **measure_ensemble(seed, budget, log, runner, combine, network),
        }
        store_result(path, record, key=_key)
    return render_ensemble(current_series(on_quality_data(read_results(path)), budget), budget)


def current_series(records: list[dict], budget: float) -> dict[str, list[dict]]:
    """Member-b network name -> its stored seeds at today's settings and `budget` (networks without any left out)."""
    series = {}
    for name in NETWORKS_B:
        try:
            latest = _settings(0, budget, name)
        except UserError:  # member b is the preset itself now: no series at today's settings
            continue
        found = [r for r in records if r["settings"] == latest and float(r["budget"]) == budget]
        if found:
            series[name] = sorted(found, key=lambda r: int(r["seed"]))
    return series


def render_ensemble(series: dict[str, list[dict]], budget: float) -> str:
    """One row per member-b network and weighting, one target line per network."""
    lines = [
        f"## An ensemble of two runs with different networks ({budget:.0f} s a run, synthetic data)",
        "",
        "Member a: the `cpu` preset. Member b: the same with a different stage-1 network (one series per network, "
        "`MARSSEG_BENCH_ENSEMBLE_B`). `marsseg ensemble` averages their final stages (from the saved models) and "
        "decides its post-processing on their shared tuning part; test mIoU on the 2000-image synthetic test set by "
        "the leaderboard's Keras rule. The ensemble costs both runs' seconds. Equal weights are the command's "
        "default; the tuned row (`--weights tuned`: weights on a 0.1 grid chosen by the tuning part's mIoU) combines "
        "the same two runs. Medians (min – max):",
        "",
        "| member b | weights | seeds | member a | member b | ensemble | ensemble − better member |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    targets, chosen = [], []
    for name, records in series.items():
        overrides = ", ".join(f"`{o}`" for o in NETWORKS_B[name][1])
        for weights, column in (("equal", "ensemble"), ("tuned", "ensemble_tuned")):
            rows = [r for r in records if column in r["models"]]
            if not rows:
                continue
            lines.append(
                f"| {name}: {overrides} | {weights} | {', '.join(str(r['seed']) for r in rows)} | "
                f"{median_range([_test(r, 'a') for r in rows])} | {median_range([_test(r, 'b') for r in rows])} | "
                f"{median_range([_test(r, column) for r in rows])} | "
                f"{median_range(gains_over_better(rows, column), signed)} |"
            )
        gains = gains_over_better(records, "ensemble")
        median = statistics.median(gains)
        verdict = "met" if len(gains) >= 3 and median >= TARGET else "NOT met" if len(gains) >= 3 else "too few seeds"
        targets.append(
            f"- {name} ({NETWORKS_B[name][0]}): median {signed(median)} over {len(gains)} seed(s), ahead in "
            f"{sum(g > 0 for g in gains)} of {len(gains)}: {verdict}."
        )
        tuned = [r for r in records if "ensemble_tuned" in r["models"]]
        chosen += [
            f"{name} seed {r['seed']}: " + ", ".join(f"{w:.1f}" for w in r["models"]["ensemble_tuned"]["weights"])
            for r in tuned
        ]
    if not series:
        lines.append("| none yet | | | | | | |")
    lines += [
        "",
        f"Target (the default, equal weights; medians of ≥ 3 seeds): ensemble ≥ better member + {TARGET:.2f}."
        + (" No seed yet." if not series else ""),
        "",
        *targets,
    ]
    if chosen:
        lines += ["", f"Tuned weights (member a, member b): {'; '.join(chosen)}."]
    stored = [r for rows in series.values() for r in rows]
    measured = sorted({f"{r.get('commit', '?')} ({r.get('measured_at', '')[:10]})" for r in stored})
    lines += [
        "",
        (f"Seeds measured at commit(s) {', '.join(measured)}. " if measured else "")
        + "Stored in `.bench/ensemble.jsonl`; `MARSSEG_BENCH_ENSEMBLE_B=NAME marsseg bench --only ensemble --seed S` "
        f"adds seed S for that network ({', '.join(NETWORKS_B)}; default {next(iter(NETWORKS_B))}).",
    ]
    return "\n".join(lines)
