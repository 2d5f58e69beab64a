"""`make bench` on a machine with a GPU: epoch times and a capped `kaggle` preset run, projected to the full one.

Where the Keras backend sees no GPU the section measures nothing and BENCHMARKS.md keeps the block it had, so
`make bench` on a laptop does not erase numbers taken on a GPU box. On a GPU image without TensorFlow, run it with
`KERAS_BACKEND=jax` (see README, "GPU timings").
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

GPU_BUDGET = float(os.environ.get("MARSSEG_BENCH_GPU_BUDGET", "420"))
N_TRAIN, N_TEST = 2615, 10022  # the real data's sizes: the test-prediction phase is timed at full size


def accelerator_name() -> str | None:
    """The first GPU's name (nvidia-smi where it exists, else the backend's device name); None without a GPU."""
    from marsseg.distribute import accelerator_devices

    devices = accelerator_devices()
    if not devices:
        return None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, check=True, timeout=30).stdout.split("\n")[0].strip()
            if out:
                return f"{len(devices)} × {out}"
        except (OSError, subprocess.SubprocessError):
            pass
    return f"{len(devices)} × {devices[0]}"


def steady_epoch_seconds(per_fold: list[list[float]]) -> tuple[float | None, float | None]:
    """(first epoch, median of the later ones) over all folds: the first epoch carries the compilation."""
    firsts = [epochs[0] for epochs in per_fold if epochs]
    later = [t for epochs in per_fold for t in epochs[1:]]
    first = statistics.median(firsts) if firsts else None
    return first, (statistics.median(later) if later else None)


def projected_seconds(cfg, metrics: dict) -> dict | None:
    """Upper bound of the uncapped preset's run: every fold and stage 2 run all their epochs at the measured
    steady epoch time (early stopping only shortens it), plus the measured one-off costs."""
    s1, s2, seconds = metrics["stage1"], metrics.get("stage2") or {}, metrics["seconds"]
    first1, steady1 = steady_epoch_seconds(s1["fold_epoch_seconds"])
    first2, steady2 = steady_epoch_seconds([s2.get("epoch_seconds", [])])
    if steady1 is None:
        return None
    compile1 = max(first1 - steady1, 0.0)
    stage1 = s1["folds_planned"] * (compile1 + cfg.stage1.train.epochs * steady1)
    stage2 = 0.0
    if cfg.two_stage and steady2 is not None:
        stage2 = max(first2 - steady2, 0.0) + cfg.stage2.train.epochs * steady2
    elif cfg.two_stage and first2 is not None:
        stage2 = cfg.stage2.train.epochs * first2  # one epoch measured: compilation counted in every epoch
    fixed = sum(v for k, v in seconds.items() if k not in ("stage1", "stage2", "total"))
    # The capped run predicted the test set with the folds it trained; the full run uses all of them.
    per_model = seconds.get("stage1 test prediction", 0.0) / max(s1["folds_trained"], 1)
    fixed += per_model * (s1["folds_planned"] - s1["folds_trained"])
    return {"stage1": stage1, "stage2": stage2, "other": fixed, "total": stage1 + stage2 + fixed,
            "steady1": steady1, "steady2": steady2, "compile1": compile1}


def section_gpu(repeats: int, log, preset_name: str = "kaggle", budget: float | None = None,
                n_train: int = N_TRAIN, n_test: int = N_TEST, gpu: str | None = None) -> str | None:
    """Networks' step times and a `preset_name` run capped at `budget` seconds on full-size synthetic data."""
    import keras

    from marsseg.bench import section_models
    from marsseg.config import preset
    from marsseg.pipeline import run
    from marsseg.scoring import score_masks
    from marsseg.submission import read_submission
    from marsseg.synth import make_synthetic, save_synthetic

    gpu = gpu or accelerator_name()
    if gpu is None:
        log("gpu: the Keras backend sees no GPU here; the section is left as it was")
        return None
    budget = GPU_BUDGET if budget is None else budget
    full = preset(preset_name)
    cfg = replace(full, budget_seconds=budget)
    networks = section_models(repeats, log, presets=(preset_name,), batch=full.stage1.train.batch_size,
                              device=gpu, mixed_precision=True)
    tmp = Path(tempfile.mkdtemp(prefix="marsseg-gpu-bench-"))
    try:
        log(f"gpu: synthetic data {n_train} train + {n_test} test")
        synthetic = make_synthetic(n_train, n_test, seed=5)
        data = tmp / "data.npz"
        save_synthetic(synthetic, data)
        log(f"gpu: `{preset_name}` preset capped at {budget:.0f} s")
        started = time.monotonic()
        metrics = run(cfg, data, tmp / "run", log=log, submissions_dir=None, verbose=0)
        wall = time.monotonic() - started
        test = score_masks(synthetic.test_labels, read_submission(Path(metrics["submission"]), n_test).masks)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s1, s2 = metrics["stage1"], metrics.get("stage2") or {}
    first1, steady1 = steady_epoch_seconds(s1["fold_epoch_seconds"])
    first2, steady2 = steady_epoch_seconds([s2.get("epoch_seconds", [])])
    projection = projected_seconds(full, metrics)
    fmt = lambda v, spec=".1f", unit="": "n/a" if v is None else format(v, spec) + unit  # noqa: E731
    phases = [(k, v) for k, v in metrics["seconds"].items() if k != "total" and v >= 0.05]
    lines = [
        f"## On a GPU: the `{preset_name}` preset ({gpu}, Keras backend {keras.backend.backend()})",
        "",
        "#" + networks,
        "",
        f"### The `{preset_name}` preset capped at {budget:.0f} s",
        "",
        f"`marsseg train --preset {preset_name} --budget {budget:.0f}` on synthetic data ({n_train} training "
        f"images, a {n_test}-image test set, seed 5): wall clock {wall:.0f} s. Stage 1 trained "
        f"{s1['folds_trained']} of {s1['folds_planned']} folds, epochs {s1['fold_epochs']}; stage 2 "
        f"{metrics['stage2_status']}, {s2.get('epochs', 0)} epoch(s); final stage {metrics['final_stage']}.",
        "",
        "| epoch (training + validation) | stage 1 (one fold) | stage 2 |",
        "|---|---:|---:|",
        f"| first (includes compilation) | {fmt(first1, unit=' s')} | {fmt(first2, unit=' s')} |",
        f"| later (median) | {fmt(steady1, unit=' s')} | {fmt(steady2, unit=' s')} |",
        f"| training samples/s | {fmt(s1.get('train_samples_per_s'), '.0f')} | "
        f"{fmt(s2.get('train_samples_per_s'), '.0f')} |",
        f"| inference samples/s | {fmt(s1.get('infer_samples_per_s'), '.0f')} | "
        f"{fmt(s2.get('infer_samples_per_s'), '.0f')} |",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *[f"| {name} | {value:.1f} |" for name, value in phases],
        f"| **total** | **{metrics['seconds']['total']:.1f}** |",
        "",
        f"Hold-out mIoU: stage 1 {fmt(metrics['val_miou_stage1'], '.4f')}, stage 2 "
        f"{fmt(metrics.get('val_miou_stage2'), '.4f')}, final {fmt(metrics['val_miou_final'], '.4f')}; test mIoU "
        f"against the synthetic truth {test['miou']:.4f} (after {budget:.0f} s, not the preset's full training).",
    ]
    if projection is not None:
        hours = projection["total"] / 3600
        lines += [
            "",
            f"### The full `{preset_name}` preset, projected",
            "",
            f"Every fold and stage 2 running all their epochs at the steady epoch times above (early stopping, "
            f"patience {full.stage1.train.patience} and {full.stage2.train.patience}, only shortens this): stage 1 "
            f"{s1['folds_planned']} folds × ({full.stage1.train.epochs} epochs × {projection['steady1']:.1f} s + "
            f"{projection['compile1']:.0f} s compilation) = {projection['stage1'] / 60:.0f} min; stage 2 "
            f"{full.stage2.train.epochs} epochs = {projection['stage2'] / 60:.0f} min; test prediction, validation, "
            f"post-processing and the rest as measured (test prediction scaled to {s1['folds_planned']} fold "
            f"models) = {projection['other'] / 60:.1f} min. At most **{hours:.1f} h** on this GPU, against the "
            f"preset's {full.budget_seconds / 3600:.0f} h budget (Kaggle stops a session at 12 h; a T4 is several "
            f"times slower than this GPU, and the budget logic trims epochs to fit).",
        ]
    return "\n".join(lines)
