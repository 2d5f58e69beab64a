"""`make bench` quality sections: the kit against two U-Net references at the same wall-clock seconds.

On full-size synthetic data (2615 training images; a 2000-image synthetic test set scored against its truth),
the kit runs first under the section's budget; each reference (`reference_models`) then gets the seconds the kit
took, start to test-set labels:

- kit: `pipeline.run` with the `cpu` preset (cleaning, one depth-4, base-16 stage-1 U-Net at full resolution on
  three quarters of the development rows, residual stage 2 on out-of-fold probabilities, flips with big-rock
  oversampling, cross-entropy that ignores background with inverse-frequency weights capped at 10x, warm-up + cosine
  schedules, TTA, class biases and morphology chosen on the hold-out's tuning part);
- naive: the same network at full resolution, cross-entropy over all five classes, no augmentation, no cleaning,
  argmax over all classes (the plain reference of old, unchanged);
- best-practice: base 16, depth 4 at full resolution (the public notebooks' size), background ignored,
  inverse-frequency weights capped at 10x, flips tripling the training set, AdamW, argmax over classes 1-4.

All three are scored under both readings of the metric and per class. Each run is one JSON line in
`.bench/quality.jsonl` (`quality_store`); the block is written from every stored run of the section at its
budget on its data (`quality_report`), so `marsseg bench --only quality --repeat K [--seed S]` adds K seeds and
a rerun at a seed replaces that seed's run. The `quality_gpu` section runs the same comparison with the `gpu`
preset where the Keras backend sees a GPU.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from marsseg.config import preset, to_dict
from marsseg.data.synth import STAND_INS, make_synthetic, save_synthetic
from marsseg.pipeline.run import run
from marsseg.prep.augment import augmentation_throughput
from marsseg.stamps import git_commit
from marsseg.submission.formats import read_submission
from marsseg.submission.scoring import score_masks
from marsseg_bench.gpu import gpu_here
from marsseg_bench.quality_report import render_quality
from marsseg_bench.quality_store import config_fingerprint, matching, results_path, store_result
from marsseg_bench.reference_models import REFERENCES, reference_run
from marsseg_bench.timing import machine_description

# Seconds a side (the kit, then each reference): the target of 10 minutes; three sides take ~32 minutes.
QUALITY_BUDGET = float(os.environ.get("MARSSEG_BENCH_QUALITY_BUDGET", "600"))
# The `quality_long` section: the same comparison with more time, where the kit's fixed costs (K fold models,
# stage 2, test passes) weigh less.
QUALITY_LONG_BUDGET = float(os.environ.get("MARSSEG_BENCH_QUALITY_LONG_BUDGET", "1200"))
# On a GPU (the `quality_gpu` section, `gpu` preset). Each fold model compiles for a minute or more under JAX
# (measured on an H100), so a budget of a few minutes would train one fold: give each side 20 minutes.
GPU_QUALITY_BUDGET = float(os.environ.get("MARSSEG_BENCH_GPU_QUALITY_BUDGET", "1200"))
N_TRAIN, N_TEST = 2615, 2000
DATA_SEED = 5


def quality_data(stand_in: str = "procedural") -> dict:
    """What the models are trained and scored on: runs count together only on the same data (the procedural
    stand-in's records, older than the second stand-in, name no `stand_in`)."""
    data = {"kind": "synthetic", "n_train": N_TRAIN, "n_test": N_TEST, "seed": DATA_SEED}
    return {**data, "version": STAND_INS[stand_in]} | ({"stand_in": stand_in} if stand_in != "procedural" else {})


def on_quality_data(records: list[dict]) -> list[dict]:
    """The records measured on today's `quality_data()` (a new stand-in version starts every series anew)."""
    return [r for r in records if r.get("data") == quality_data()]


def write_quality_data(folder: Path, n_train: int | None = None, n_test: int | None = None, stand_in="procedural"):
    """The quality sections' synthetic set (data seed DATA_SEED; N_TRAIN and N_TEST images unless given; the
    `stand_in`) saved as `folder/data.npz`: (it, that path)."""
    synthetic = make_synthetic(n_train or N_TRAIN, n_test or N_TEST, seed=DATA_SEED, stand_in=stand_in)
    data = Path(folder) / "data.npz"
    save_synthetic(synthetic, data)
    return synthetic, data


def _scores(truth, labels) -> dict:
    score = score_masks(truth, labels)
    return {
        "miou_keras": score["miou_keras"],
        "miou_scored": score["miou_scored"],
        "iou": {str(c): v for c, v in score["iou"].items()},
    }


def scored_run(cfg, data, out_dir, truth, runner=run) -> dict:
    """One kit run (`runner`, default `pipeline.run`) on `data` into `out_dir`, its submission scored against
    `truth`: scores, seconds, final stage, reporting figure, and the run's metrics (not for storing)."""
    started = time.monotonic()
    metrics = runner(cfg, data, out_dir, log=lambda m: None, submissions_dir=None, verbose=0)
    labels = read_submission(Path(metrics["submission"]), len(truth)).masks
    return {
        "scores": _scores(truth, labels),
        "seconds": time.monotonic() - started,
        "final_stage": metrics.get("final_stage"),
        "val_miou_final": metrics.get("val_miou_final"),
        "metrics": metrics,
    }


def _kit_summary(metrics: dict, seconds: float) -> dict:
    """What the block's details show of the kit's run, as plain JSON."""
    s1, s2 = metrics["stage1"], metrics.get("stage2") or {}
    keys = ("residual", "epochs", "best_epoch", "before_training_val_miou", "early_stopping_val_miou")
    return {
        "seconds": seconds,
        "phase_seconds": metrics.get("seconds") or {},  # where the budget went (`marsseg.pipeline.report`)
        "folds_trained": s1["folds_trained"],
        "folds_planned": s1["folds_planned"],
        "fold_epochs": s1["fold_epochs"],
        "stage1_stop_reasons": s1.get("fold_stop_reason", []),  # patience, epochs or budget, per fold model
        "stage2_status": metrics["stage2_status"],
        "final_stage": metrics["final_stage"],
        "val_miou_stage1": metrics.get("val_miou_stage1"),
        "val_miou_stage2": metrics.get("val_miou_stage2"),
        "val_miou_final": metrics.get("val_miou_final"),
        "stage1_train_samples_per_s": s1.get("train_samples_per_s"),
        "stage1_infer_samples_per_s": s1.get("infer_samples_per_s"),
        "stage2": {k: s2.get(k) for k in (*keys, "stop_reason", "train_samples_per_s", "infer_samples_per_s")}
        if s2
        else {},
        "post": metrics.get("post") or {},
    }


def measure_quality(cfg, log) -> dict:
    """One run: the kit under `cfg.budget_seconds`, then each reference in the seconds the kit took; returns
    the scores of all three, the kit's details and the references' epochs and rates."""
    tmp = Path(tempfile.mkdtemp(prefix="marsseg-quality-"))
    try:
        log(f"quality: synthetic data {N_TRAIN} train + {N_TEST} test (data seed {DATA_SEED}), run seed {cfg.seed}")
        synthetic, data = write_quality_data(tmp)
        truth = synthetic.test_labels

        log(f"quality: kit ({cfg.preset} preset) under a {cfg.budget_seconds:.0f}s budget")
        started = time.monotonic()
        metrics = run(cfg, data, tmp / "kit", log=lambda m: None, submissions_dir=None, verbose=0)
        kit_seconds = time.monotonic() - started
        scores = {"kit": _scores(truth, read_submission(Path(metrics["submission"]), N_TEST).masks)}
        references = {}
        for kind in ("naive", "best"):
            log(f"quality: {REFERENCES[kind]} in the kit's {kit_seconds:.0f}s")
            result = reference_run(
                kind, cfg, synthetic.images, synthetic.masks, synthetic.test_images, kit_seconds, log
            )
            scores[kind] = _scores(truth, result.pop("labels"))
            references[kind] = result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log("quality: augmentation throughput")
    aug_rate = augmentation_throughput(
        n_batches=20, strength=cfg.augment.strength, batch_size=cfg.stage1.train.batch_size
    )
    return {
        "scores": scores,
        "kit_run": _kit_summary(metrics, kit_seconds),
        "references": references,
        "augment": {"strength": cfg.augment.strength, "samples_per_s": aug_rate},
    }


def section_quality(
    repeats: int,
    log,
    preset_name: str = "cpu",
    budget: float = QUALITY_BUDGET,
    device: str | None = None,
    seed: int | None = None,
    section: str = "quality",
) -> str:
    """One run of the kit and both references at `budget` a side (seed `seed`, default the preset's), stored
    with the section's other runs; returns the block written from all of them."""
    import keras

    cfg = replace(preset(preset_name), budget_seconds=budget)
    cfg = cfg if seed is None else replace(cfg, seed=int(seed))
    measured = measure_quality(cfg, log)
    record = {
        "section": section,
        "seed": cfg.seed,
        "budget": float(budget),
        "data": quality_data(),
        "preset": preset_name,
        "kit_config": config_fingerprint(to_dict(cfg)),
        "commit": git_commit("short", cwd=Path.cwd()),
        "machine": machine_description(),
        "device": device,
        "backend": keras.backend.backend(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **measured,
    }
    path = results_path()
    runs = matching(store_result(path, record), section, budget, record["data"], record["kit_config"])
    log(f"quality: seed {cfg.seed} stored in {path}; {len(runs)} run(s) of {section} at {budget:.0f}s")
    return render_quality(runs, record)


def section_quality_long(repeats: int, log, seed: int | None = None) -> str:
    """The same comparison at 1200 s a side: how the kit's lead grows with time."""
    return section_quality(repeats, log, budget=QUALITY_LONG_BUDGET, seed=seed, section="quality_long")


def section_quality_gpu(repeats: int, log, seed: int | None = None) -> str | None:
    """On a GPU: the kit (`gpu` preset) against both references at the same seconds; None where the Keras backend
    sees no GPU (the section keeps its block)."""
    gpu = gpu_here("quality_gpu", log)
    if gpu is None:
        return None
    return section_quality(
        repeats, log, preset_name="gpu", budget=GPU_QUALITY_BUDGET, device=gpu, seed=seed, section="quality_gpu"
    )
