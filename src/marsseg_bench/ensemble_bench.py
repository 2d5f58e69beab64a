"""`make bench` ensemble section: two kit runs with different networks, and `marsseg ensemble` of the two.

At each seed the `cpu` preset runs twice on the quality section's data (600 s each by default, one after the
other): member "a" as the preset is, member "b" with a different stage-1 network (NETWORK_B). `pipeline.ensemble`
then averages the two runs' final stages from their saved models, once with equal weights (the command's default)
and once with weights chosen on the shared tuning part (`--weights tuned`); all are scored on the 2000-image
synthetic test set by the leaderboard's Keras rule. The target reads the default; the tuned row is beside it, from
the same two runs. The ensemble costs both runs' seconds: the comparison is the
issue's (the pair against the better of its members), not one at equal compute. Each seed is one JSON line in
`.bench/ensemble.jsonl`; a seed already stored with the same settings is not run again.
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
from marsseg_bench.quality_report import median_range, signed
from marsseg_bench.quality_store import config_fingerprint, read_results, results_path, store_result
from marsseg_bench.timing import machine_description

ENSEMBLE_BUDGET = float(os.environ.get("MARSSEG_BENCH_ENSEMBLE_BUDGET", str(QUALITY_BUDGET)))
PRESET = "cpu"
# Member b's network: attention gates and an ASPP context block (the write-ups' "gated, then ASPP" pair).
NETWORK_B = ["stage1.model.attention=true", "stage1.model.context=aspp"]
TARGET = 0.01  # the ensemble over the better member (the target)


def member_configs(seed: int, budget: float) -> dict:
    base = replace(preset(PRESET), budget_seconds=budget, seed=int(seed))
    return {"a": base, "b": override(base, NETWORK_B)}


def _key(record: dict) -> tuple:
    return (int(record["seed"]), float(record["budget"]), record["settings"]["a"], record["settings"]["b"])


def measure_ensemble(seed: int, budget: float, log, runner=run, combine=None) -> dict:
    """Both members and their ensemble at `seed`: test scores and each run's own figures."""
    from marsseg.pipeline.ensemble import ensemble

    combine = combine or ensemble
    configs = member_configs(seed, budget)
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
    import keras

    seed = preset(PRESET).seed if seed is None else int(seed)
    path = results_path(name="ensemble.jsonl")
    settings = {n: config_fingerprint(to_dict(c)) for n, c in member_configs(seed, budget).items()}
    probe = {"seed": seed, "budget": budget, "settings": settings}
    if any(_key(r) == _key(probe) for r in on_quality_data(read_results(path))):
        log(f"ensemble: seed {seed} already stored; skipped")
    else:
        record = {
            "section": "ensemble",
            "seed": seed,
            "budget": float(budget),
            "data": quality_data(),
            "preset": PRESET,
            "network_b": NETWORK_B,
            "commit": git_commit("short", cwd=Path.cwd()),
            "machine": machine_description(),
            "backend": keras.backend.backend(),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **measure_ensemble(seed, budget, log, runner, combine),
        }
        store_result(path, record, key=_key)
    latest = {n: config_fingerprint(to_dict(c)) for n, c in member_configs(0, budget).items()}
    records = [
        r for r in on_quality_data(read_results(path)) if r["settings"] == latest and float(r["budget"]) == budget
    ]
    return render_ensemble(records, budget)


def render_ensemble(records: list[dict], budget: float) -> str:
    records = sorted(records, key=lambda r: int(r["seed"]))

    def test(r, name):
        return r["models"][name]["scores"]["miou_keras"]

    gains = [test(r, "ensemble") - max(test(r, "a"), test(r, "b")) for r in records]
    met = bool(gains) and statistics.median(gains) >= TARGET
    tuned = [r for r in records if "ensemble_tuned" in r["models"]]
    tuned_gains = [test(r, "ensemble_tuned") - max(test(r, "a"), test(r, "b")) for r in tuned]
    lines = [
        f"## An ensemble of two runs with different networks ({budget:.0f} s a run, synthetic data)",
        "",
        "Member a: the `cpu` preset. Member b: the same with " + ", ".join(f"`{o}`" for o in NETWORK_B) + ". "
        "`marsseg ensemble` averages their final stages (from the saved models) and decides its post-processing "
        "on their shared tuning part; test mIoU on the 2000-image synthetic test set by the leaderboard's Keras "
        "rule. The ensemble costs both runs' seconds. Equal weights are the command's default; the tuned row "
        "(`--weights tuned`: weights on a 0.1 grid chosen by the tuning part's mIoU) combines the same two runs.",
        "",
        f"{len(records)} seed(s): {', '.join(str(r['seed']) for r in records) or 'none yet'}. Medians (min – max):",
        "",
        "| | n | member a | member b | ensemble | ensemble − better member |",
        "|---|---:|---:|---:|---:|---:|",
        f"| equal weights | {len(records)} | {median_range([test(r, 'a') for r in records])} | "
        f"{median_range([test(r, 'b') for r in records])} | {median_range([test(r, 'ensemble') for r in records])} | "
        f"{median_range(gains, signed)} |",
    ]
    if tuned:
        lines.append(
            f"| tuned weights | {len(tuned)} | {median_range([test(r, 'a') for r in tuned])} | "
            f"{median_range([test(r, 'b') for r in tuned])} | "
            f"{median_range([test(r, 'ensemble_tuned') for r in tuned])} | {median_range(tuned_gains, signed)} |"
        )
    lines += [
        "",
        f"Target (the default, equal weights): ensemble ≥ better member + {TARGET:.2f}: "
        + (
            "n/a (no seed yet)"
            if not gains
            else "met"
            if met
            else f"NOT met (median {signed(statistics.median(gains))})"
        )
        + f"; ahead in {sum(g > 0 for g in gains)} of {len(gains)} seeds. Stored in `.bench/ensemble.jsonl`; "
        "`marsseg bench --only ensemble --seed S` adds seed S.",
    ]
    if tuned:
        chosen = "; ".join(
            f"seed {r['seed']}: " + ", ".join(f"{w:.1f}" for w in r["models"]["ensemble_tuned"]["weights"])
            for r in tuned
        )
        lines += ["", f"Tuned weights (member a, member b): {chosen}."]
    return "\n".join(lines)
