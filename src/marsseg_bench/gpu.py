"""`make bench` on a machine with a GPU: the `kaggle` preset's epoch times per stage, and its full run projected.

A capped pipeline run says little on a GPU under JAX: each fold model compiles for a minute or more (measured on
an H100), so a few-minute budget trains one fold. Instead each stage trains a few epochs with no deadline on
the data a real run would give it, and the full run's time is projected from the steady epochs.

Where the Keras backend sees no GPU the section measures nothing and BENCHMARKS.md keeps the block it had, so
`make bench` on a laptop does not erase numbers taken on a GPU box. On a GPU image without TensorFlow, run it with
`KERAS_BACKEND=jax` (see README, "GPU timings").
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from marsseg.config import preset
from marsseg.data.synth import make_synthetic, save_synthetic
from marsseg.pipeline.budget import Budget
from marsseg.pipeline.run import _Run
from marsseg.training.distribute import accelerator_devices

N_TRAIN, N_TEST = 2615, 10022  # the real data's sizes: test prediction is timed at full size


def nvidia_gpu_names() -> list[str]:
    """The NVIDIA GPUs nvidia-smi lists (none where it is missing or fails); no deep-learning backend is asked."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def accelerator_name() -> str | None:
    """The first GPU's name (nvidia-smi where it exists, else the backend's device name); None without a GPU."""
    devices = accelerator_devices()
    if not devices:
        return None
    names = nvidia_gpu_names()
    return f"{len(devices)} × {names[0] if names else devices[0]}"


def gpu_here(section: str, log) -> str | None:
    """The GPU a GPU section measures on; None (and a log line) where the Keras backend sees none."""
    gpu = accelerator_name()
    if gpu is None:
        log(f"{section}: the Keras backend sees no GPU here; the section is left as it was")
    return gpu


def epoch_times(seconds: list[float]) -> tuple[float | None, float | None]:
    """(compilation, steady epoch): the steady time is the median of the later half of the epochs after the first,
    and compilation what all epochs took beyond it. Under JAX on an H100 the second epoch compiled again too
    (117, 53, 2.7, 2.7 s)."""
    if len(seconds) < 2:
        return None, None
    later = seconds[1:]
    steady = statistics.median(later[len(later) // 2 :])
    return sum(max(t - steady, 0.0) for t in seconds), steady


def measure_stages(cfg, data_path: Path, epochs: int, log, stage2: bool = True) -> dict:
    """Train stage 1 on fold 1 of the run's own split and stage 2 on every development image, each for `epochs`
    epochs with no deadline, and time test prediction; the same data, augmentation and settings as `run` uses."""
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage, predict_probs

    quiet = lambda message: None  # noqa: E731
    run = _Run(
        cfg, data_path, data_path.parent, Budget(cfg.budget_seconds, log=quiet), quiet, None, 0, time.monotonic()
    )
    run.load_and_clean()
    run.split()
    train, held = np.flatnonzero(run.fold_of != 0), np.flatnonzero(run.fold_of == 0)
    fixed = lambda stage: replace(stage, train=replace(stage.train, epochs=epochs, patience=epochs))  # noqa: E731
    log(f"gpu: stage 1, fold 1 of {run.fold_of.max() + 1}: {len(train)} images, {epochs} epochs")
    one = fit_stage(
        fixed(cfg.stage1),
        run.dev_images[train],
        run.dev_masks[train],
        network_input(run.dev_images[held]),
        run.dev_masks[held],
        augment_cfg=cfg.augment,
        seed=cfg.seed,
        name="stage1_fold1",
        class_weights=run.class_weights["stage1"],
        verbose=0,
        log=log,
    )
    out = {
        "k": int(run.fold_of.max() + 1),
        "n_test": len(run.test_images),
        "stage1": _timings("stage 1", one, len(train), log),
    }
    test_x = network_input(run.test_images)
    out["test_first"], out["test_again"] = (_timed(lambda: predict_probs(one.model, test_x)) for _ in range(2))
    log(
        f"gpu: stage-1 test prediction, {len(test_x)} images: {out['test_first']:.1f} s, then {out['test_again']:.1f} s"
    )
    if stage2:
        log(f"gpu: stage 2: {len(run.dev_images)} images, {epochs} epochs")
        # Fold 1's probabilities stand in for the out-of-fold ones: the same shapes, so the same seconds.
        probs = predict_probs(one.model, network_input(run.dev_images))
        two = fit_stage(
            fixed(cfg.stage2),
            run.dev_images,
            run.dev_masks,
            network_input(run.val_images, predict_probs(one.model, network_input(run.val_images))),
            run.val_masks,
            train_extras=probs,
            augment_cfg=cfg.augment,
            seed=cfg.seed + 1000,
            name="stage2",
            class_weights=run.class_weights["stage2"],
            verbose=0,
            log=log,
        )
        out["stage2"] = _timings("stage 2", two, len(run.dev_images), log)
    return out


def _timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def _timings(name: str, result, images: int, log) -> dict:
    seconds = result.extra["epoch_seconds"]
    compile_seconds, steady = epoch_times(seconds)
    # Logged as soon as known, so a run stopped later (a time-limited GPU session) still leaves the numbers.
    log(f"gpu: {name} epochs " + ", ".join(f"{t:.1f}" for t in seconds) + " s")
    return {
        "images": images,
        "epoch_seconds": seconds,
        "compile": compile_seconds,
        "steady": steady,
        "rate": steady and images / steady,
        "mixed": bool(result.extra.get("mixed_precision")),
    }


def projected_seconds(cfg, timings: dict) -> dict | None:
    """Upper bound of a full run of `cfg`: every fold and stage 2 run all their epochs at the measured steady
    epoch time (early stopping only shortens it), each model compiles once for training and once for prediction,
    and every fold model and stage 2 predict the test set (twice with flip TTA)."""
    s1, s2 = timings["stage1"], timings.get("stage2")
    if s1["steady"] is None:
        return None
    compile1 = s1["compile"]
    stage1 = timings["k"] * (compile1 + cfg.stage1.train.epochs * s1["steady"])
    stage2 = compile2 = 0.0
    if cfg.two_stage and s2 is not None and s2["steady"] is not None:
        compile2 = s2["compile"]
        stage2 = compile2 + cfg.stage2.train.epochs * s2["steady"]
    passes = 2 if cfg.post.tta != "off" else 1
    models = timings["k"] + (1 if stage2 else 0)
    predict_compile = max(timings.get("test_first", timings["test_again"]) - timings["test_again"], 0.0)
    test = models * (predict_compile + passes * timings["test_again"])
    return {
        "stage1": stage1,
        "stage2": stage2,
        "test": test,
        "total": stage1 + stage2 + test,
        "compile1": compile1,
        "compile2": compile2,
    }


def section_gpu(
    repeats: int,
    log,
    gpu: str | None = None,
    preset_name: str = "kaggle",
    epochs: int = 4,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
) -> str | None:
    """Epoch times of the preset's two stages on `gpu` (its name, for the report) on full-size synthetic data,
    and the full run projected from them. Without `gpu` (the `gpu` section), the GPU the Keras backend sees; None
    where it sees none: the section measures nothing and keeps its block."""
    import keras

    if gpu is None:
        gpu = gpu_here("gpu", log)
        if gpu is None:
            return None
    cfg = preset(preset_name)
    tmp = Path(tempfile.mkdtemp(prefix="marsseg-gpu-bench-"))
    try:
        log(f"gpu: synthetic data {n_train} train + {n_test} test")
        save_synthetic(make_synthetic(n_train, n_test, seed=5), tmp / "data.npz")
        started = time.monotonic()
        timings = measure_stages(cfg, tmp / "data.npz", epochs, log, stage2=cfg.two_stage)
        wall = time.monotonic() - started
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s1, s2 = timings["stage1"], timings.get("stage2")
    fmt = lambda v, spec=".1f", unit=" s": "n/a" if v is None else format(v, spec) + unit  # noqa: E731
    mixed = "mixed_float16" if s1["mixed"] else "float32"
    size = "Full-size synthetic data" if (n_train, n_test) == (N_TRAIN, N_TEST) else "Synthetic data"

    def row(name, t):
        return (
            f"| {name} | {t['images']} | "
            + ", ".join(f"{v:.1f}" for v in t["epoch_seconds"])
            + f" | {fmt(t['compile'], '.0f')} | {fmt(t['steady'])} | {fmt(t['rate'], '.0f', '')} |"
        )

    lines = [
        f"## On a GPU: the `{preset_name}` preset ({gpu}, Keras backend {keras.backend.backend()})",
        "",
        f"{size} ({n_train} training images, {n_test} test images, seed 5), split, cleaned and "
        f"augmented as `marsseg train --preset {preset_name}` does. Stage 1 trains fold 1 of {timings['k']} and "
        f"stage 2 every development image (fold 1's probabilities standing in for the out-of-fold ones), "
        f"{epochs} epochs each with no deadline, batch {cfg.stage1.train.batch_size}, {mixed}; {wall:.0f} s in all.",
        "",
        "| network | training images | epochs (s; training + validation) | compilation | steady epoch | images/s |",
        "|---|---:|---|---:|---:|---:|",
        row("stage 1 (one fold model)", s1),
        *([row("stage 2", s2)] if s2 else []),
        "",
        f"Test prediction, {timings['n_test']} images with one stage-1 model: {timings['test_first']:.1f} s the "
        f"first time (compiles), {timings['test_again']:.1f} s after "
        f"({timings['n_test'] / max(timings['test_again'], 1e-9):.0f} images/s).",
    ]
    projection = projected_seconds(cfg, timings)
    if projection is not None:
        lines += [
            "",
            f"**The full `{preset_name}` preset, projected:** every fold and stage 2 running all their epochs "
            f"(early stopping, patience {cfg.stage1.train.patience} and {cfg.stage2.train.patience}, only shortens "
            f"this): stage 1 {timings['k']} × ({cfg.stage1.train.epochs} epochs + {projection['compile1']:.0f} s "
            f"compilation) = {projection['stage1'] / 60:.0f} min, stage 2 {cfg.stage2.train.epochs} epochs = "
            f"{projection['stage2'] / 60:.0f} min, test prediction with flip TTA = {projection['test'] / 60:.1f} min: "
            f"at most **{projection['total'] / 3600:.1f} h** on this GPU, within the preset's "
            f"{cfg.budget_seconds / 3600:.0f} h budget (validation passes and post-processing add minutes; "
            f"a Kaggle T4 is several times slower, and the budget logic trims epochs to fit).",
        ]
    return "\n".join(lines)
