"""`marsseg bench --only stage2`: stage-2 designs screened on one cached stage-1 run.

Stage 1 (the `cpu` preset's fold models, with its share of a 600 s run) runs once per seed on the quality
section's data; what stage 2 reads of it is cached in `.bench/cache/` (out-of-fold probabilities of the
development rows, the hold-out's and the test set's flip-TTA'd probabilities, the input temperature), so each
design costs stage 2's seconds alone. Every design is a list of `--set` overrides of `stage2.*`, trained for the
same seconds at the same seed on the same inputs. It is scored bare (argmax over classes 1-4 under flip TTA, no
class biases or clean-up) on the hold-out's tuning part, which chooses; on its reporting part and on the 2000-image
test set (the leaderboard's Keras rule), which only report. Each result is one JSON line in `.bench/stage2.jsonl`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from marsseg.config import override, preset, to_dict, validate
from marsseg.data.synth import make_synthetic, save_synthetic
from marsseg.pipeline.budget import Budget
from marsseg.pipeline.holdout import Holdout, argmax_score
from marsseg.pipeline.postprocess import labels_from_probs, predict_tta
from marsseg.pipeline.stages import Stage1Outcome, Stage2Data, stage2_fit, stage2_probs
from marsseg.pipeline.testset import TEST_CHUNK
from marsseg.prep.analysis import class_weights
from marsseg.stamps import git_commit
from marsseg.submission.scoring import score_masks
from marsseg.training.context import StageContext
from marsseg_bench.quality import DATA_SEED, N_TEST, N_TRAIN, QUALITY_BUDGET, quality_data
from marsseg_bench.quality_store import config_fingerprint, results_path, store_result
from marsseg_bench.stage2_report import render_stage2
from marsseg_bench.timing import machine_description

# Seconds each design trains: about what a 600 s cpu run leaves stage 2 after its fold models and test passes.
SCREEN_SECONDS = float(os.environ.get("MARSSEG_BENCH_STAGE2_SECONDS", "240"))

# name -> --set overrides on top of the cpu preset's stage 2 (residual, cross-entropy, cosine schedule).
DESIGNS: dict[str, list[str]] = {
    # Seed 42 (9f712af) stored "cpu today (depth 2, base 8, half resolution)" with no overrides: the preset's stage 2
    # was half resolution then. It is full resolution now, so the half-resolution design names its stride.
    "half resolution (depth 2, base 8)": ["stage2.model.input_stride=2"],
    "full resolution (depth 2, base 8; cpu today)": ["stage2.model.input_stride=1"],
    "full resolution, depth 4, base 16": [
        "stage2.model.input_stride=1",
        "stage2.model.depth=4",
        "stage2.model.base_filters=16",
    ],
    "full resolution, depth 4, base 16, ASPP context": [
        "stage2.model.input_stride=1",
        "stage2.model.depth=4",
        "stage2.model.base_filters=16",
        "stage2.model.context=aspp",
    ],
    "full resolution, depth 4, base 16, not residual": [
        "stage2.model.input_stride=1",
        "stage2.model.depth=4",
        "stage2.model.base_filters=16",
        "stage2.model.residual=false",
    ],
}


def cache_dir() -> Path:
    return results_path().parent / "cache"


def _stage1_key(cfg) -> str:
    """What stage 1's outputs depend on: everything but stage 2's settings, and the data."""
    settings = {k: v for k, v in to_dict(cfg).items() if k not in ("stage2", "post", "submission")}
    blob = json.dumps({"cfg": settings, "data": quality_data()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_stage1(cfg, truth_log) -> dict:
    """Stage 1's outputs for `cfg` on the quality data: from the cache, else run once and cache them."""
    from marsseg.pipeline import testset
    from marsseg.pipeline.run import Run

    path = cache_dir() / f"stage1-{_stage1_key(cfg)}.npz"
    if path.is_file():
        truth_log(f"stage2 screen: stage 1 from {path}")
        with np.load(path) as cached:
            return {k: cached[k] for k in cached.files}
    synthetic = make_synthetic(N_TRAIN, N_TEST, seed=DATA_SEED)
    with tempfile.TemporaryDirectory(prefix="marsseg-stage2-") as tmp:
        data = Path(tmp) / "data.npz"
        save_synthetic(synthetic, data)
        truth_log(f"stage2 screen: stage 1 ({cfg.preset} preset, seed {cfg.seed}) once, then cached")
        started = time.monotonic()
        # The run's own phases, up to stage 1's hold-out validation: the same inputs a real run gives stage 2.
        quiet = lambda *_: None  # noqa: E731
        context = StageContext.for_budget(Budget(cfg.budget_seconds, quiet), quiet, verbose=0)
        run = Run(cfg, data, Path(tmp) / "kit", context=context)
        run.load_and_clean()
        run.split_data()
        run.run_stage1()
        models, test_images = run.stage1.models, run.loaded.test_images
        _, plain = testset.stage1_labels(models, test_images, run.stage1_choice, cfg.post, tta=False, keep_probs=True)
        test_tta1 = testset.stage1_flip(models, test_images, plain)
        seconds = time.monotonic() - started
    split, holdout, holdout_probs = run.split, run.split.holdout, run.stage1_holdout_probs
    arrays = {
        "dev_images": split.dev_images,
        "dev_masks": split.dev_masks,
        "dev_groups": split.dev_groups,
        "oof": run.stage1.oof.astype(np.float16),
        "oof_model": run.stage1.oof_model,
        "hold_images": holdout.images,
        "hold_masks": holdout.masks,
        "tune": holdout.tune,
        "report": holdout.report,
        "val1_plain": holdout_probs[0].astype(np.float16),
        "val1_tta": holdout_probs[1].astype(np.float16),
        "test_images": test_images,
        "test_tta1": test_tta1,
        "test_truth": synthetic.test_labels,
        "temperature": np.float64(run.temperature),
        "stage1_seconds": np.float64(seconds),
        "folds": np.int64(run.stage1.planned_folds),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(path)  # a killed run leaves no half cache
    return arrays


def _scores(stage1: dict, plain, tta, test_probs) -> dict:
    hold = Holdout(stage1["hold_images"], stage1["hold_masks"], stage1["tune"], stage1["report"])
    tune = argmax_score(plain[hold.tune], tta[hold.tune], hold.masks[hold.tune])[0]
    report, report_iou = hold.bare((plain, tta))
    test = score_masks(stage1["test_truth"], labels_from_probs(test_probs))
    return {
        "tune": tune,
        "report": report,
        "report_iou": report_iou,
        "test_keras": test["miou_keras"],
        "test_scored": test["miou_scored"],
        "test_iou": {str(c): v for c, v in test["iou"].items()},
    }


def screen_design(cfg, stage1: dict, seconds: float, log) -> dict:
    """Stage 2 of `cfg` trained for `seconds` on the cached stage-1 outputs, and its scores."""
    from marsseg.training.feed import network_input
    from marsseg.training.fit import predict_probs

    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    outcome = Stage1Outcome([], f32(stage1["oof"]), stage1["oof_model"], int(stage1["folds"]))
    weights = class_weights(
        stage1["dev_masks"],
        power=cfg.stage2.loss.class_weight_power,
        max_ratio=cfg.stage2.loss.max_weight_ratio or None,
    )
    quiet = lambda *_: None  # noqa: E731
    context = StageContext.for_budget(Budget(seconds + 60.0, quiet), quiet, verbose=0)
    data = Stage2Data(
        stage1["dev_images"], stage1["dev_masks"], stage1["dev_groups"], outcome, float(stage1["temperature"])
    )
    result = stage2_fit(data, cfg, context, seconds=seconds, class_weights=weights)
    x_val = network_input(stage1["hold_images"], f32(stage1["val1_tta"]))
    plain, tta, _ = stage2_probs(result.model, x_val, tta=True)
    test_images, probs1 = stage1["test_images"], stage1["test_tta1"]
    test_probs = np.empty((*test_images.shape, 5), np.float32)
    for start in range(0, len(test_images), TEST_CHUNK):
        stop = min(start + TEST_CHUNK, len(test_images))
        x = network_input(test_images[start:stop], f32(probs1[start:stop]))
        test_probs[start:stop] = predict_tta(lambda b: predict_probs(result.model, b), x)
    return {
        **_scores(stage1, plain, tta, test_probs),
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "samples_per_s": result.train_samples_per_s,
        "train_seconds": result.seconds,
        "baseline_val_miou": result.extra.get("baseline_val_miou"),
        "best_val_miou": result.best_val_miou,
    }


def section_stage2(repeats: int, log, seed: int | None = None) -> str:
    """Every design at one seed, stored; the block is written from every stored seed."""
    base = replace(preset("cpu"), budget_seconds=QUALITY_BUDGET)
    base = base if seed is None else replace(base, seed=int(seed))
    stage1 = cached_stage1(base, log)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    baseline = _scores(stage1, f32(stage1["val1_plain"]), f32(stage1["val1_tta"]), f32(stage1["test_tta1"]))
    path = results_path().parent / "stage2.jsonl"
    record = {
        "section": "stage2",
        "seed": base.seed,
        "budget": SCREEN_SECONDS,
        "data": quality_data(),
        # Stage 1 is the screen's fixed input: a change of the cpu preset starts a new series (as in `quality`).
        "kit_config": config_fingerprint(to_dict(base)),
        "commit": git_commit("short", cwd=Path.cwd()),
        "machine": machine_description(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stage1_seconds": float(stage1["stage1_seconds"]),
        "temperature": float(stage1["temperature"]),
        "stage1": baseline,
        "designs": {},
    }
    for name, sets in DESIGNS.items():
        cfg = validate(override(base, sets))
        log(f"stage2 screen: {name} for {SCREEN_SECONDS:.0f}s (seed {base.seed})")
        record["designs"][name] = {"sets": sets, **screen_design(cfg, stage1, SCREEN_SECONDS, log)}
        log(f"stage2 screen: {name}: {json.dumps({k: record['designs'][name][k] for k in ('tune', 'report')})}")
    records = [r for r in store_result(path, record) if r["section"] == "stage2"]
    same = ("budget", "data", "kit_config")
    return render_stage2([r for r in records if all(r.get(k) == record[k] for k in same)])
