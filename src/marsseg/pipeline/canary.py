"""A canary run and what it projects: the full run's networks and code paths in minutes, then its time projected.

    cfg = canary_config(full)                     # same networks, folds, data; few epochs, a 10-minute budget
    metrics["canary"] = canary_metrics(full, cfg, measured, phase_seconds)

A canary trains one fold model per `stage1.model_cycle` network (at least two, so the fold-to-fold model reuse
runs too), stage 2, prediction with flip TTA and both CSVs, each network for `canary.epochs` epochs. The first
epoch of a network compiles; the later ones give its steady epoch time, from which `project` computes the full
run: every fold and stage 2 running all their epochs (early stopping only shortens that), so an upper bound.
Pure arithmetic on configs and numbers: the figures come from `run`.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from marsseg.config import Config, model_variants, validate
from marsseg.training.runtime import describe_devices


def canary_config(full: Config) -> Config:
    """`full` cut to a canary: `canary.budget_seconds`, `canary.epochs` per network (whatever the preset's, so a
    steady epoch is measured), one fold model per stage-1 network (at least two); the same folds, data, networks,
    augmentation, precision and post-processing. (`run` also predicts with stage 2 whatever it scored.)"""
    networks = len(model_variants(full.stage1))
    folds = full.data.folds
    fold_models = min(folds, max(2, networks)) if folds > 1 else 1
    epochs = full.canary.epochs

    def short(stage):
        train = replace(stage.train, epochs=epochs, patience=epochs)
        return replace(stage, train=train)

    return replace(
        full,
        budget_seconds=full.canary.budget_seconds,
        data=replace(full.data, fold_models=fold_models),
        stage1=short(full.stage1),
        stage2=short(full.stage2),
    )


def preflight(cfg: Config, log) -> tuple[Config, Config, dict]:
    """Before a run reads anything: validate `cfg`, learn the devices (`runtime.runtime_facts`), refuse a GPU
    preset without a GPU (`runtime.GpuMissing`), log the runtime line first; a canary gets `canary_config`.
    Returns (the configuration to run, the one asked for, the runtime facts)."""
    from marsseg.training.runtime import require_gpu, runtime_facts, runtime_line
    from marsseg.versions import package_versions

    validate(cfg)
    facts = runtime_facts(cfg.stage1.train.mixed_precision)
    facts["packages"] = package_versions()
    require_gpu(cfg, facts)
    log(f"[marsseg] {runtime_line(facts)}")
    if not cfg.canary.enabled:
        return cfg, cfg, facts
    run_cfg = validate(canary_config(cfg))
    log(
        f"[marsseg] CANARY run of preset {cfg.preset}: {run_cfg.budget_seconds:.0f} s budget, {cfg.canary.epochs} "
        f"epochs a network, {run_cfg.data.fold_models} of {cfg.data.folds} fold models; the full run is projected "
        "at the end"
    )
    return run_cfg, cfg, facts


def epoch_split(seconds: list[float], cut_last: bool = False) -> tuple[float | None, float | None]:
    """(compilation seconds, steady epoch seconds) of one network's epochs: the steady epoch is the median of the
    epochs after the first (a last epoch cut at the deadline left out), compilation what the first took beyond
    it. (None, None) with fewer than two whole epochs."""
    whole = list(seconds[:-1] if cut_last and len(seconds) > 1 else seconds)
    if len(whole) < 2:
        return None, None
    steady = statistics.median(whole[1:])
    return max(whole[0] - steady, 0.0), steady


def stage_timing(epoch_seconds: list[float], cut_last: bool, images: int, samples_per_s: float) -> dict:
    """One network's measured figures for the canary report."""
    compile_seconds, steady = epoch_split(epoch_seconds, cut_last)
    return {
        "images": int(images),
        "epoch_seconds": [round(t, 2) for t in epoch_seconds],
        "compile_seconds": None if compile_seconds is None else round(compile_seconds, 2),
        "steady_epoch_seconds": None if steady is None else round(steady, 3),
        "train_samples_per_s": round(float(samples_per_s), 2),
    }


def result_timing(result, images: int) -> dict:
    """`stage_timing` of a `fit.StageResult` trained on `images` images."""
    extra = result.extra
    return stage_timing(
        extra.get("epoch_seconds", []), extra.get("cut_epoch", False), images, result.train_samples_per_s
    )


def stage1_timings(folds) -> list[dict]:
    """`result_timing` of the first fold model of each stage-1 network (`stages.FoldRun`s), in variant order:
    later folds of a network reuse its compiled steps, so only the first one's first epoch compiles."""
    first: dict = {}
    for fold in folds:
        first.setdefault(fold.variant, fold)
    return [result_timing(f.result, len(f.train_index)) for _, f in sorted(first.items())]


def project(full: Config, measured: dict, phase_seconds: dict) -> dict | None:
    """The full run's seconds from a canary's `measured` figures ({"stage1": [per network, in variant order],
    "stage2": ..., "stage2_rows": canary rows, "stage2_rows_full": the full run's, "infer1"/"infer2": images/s of
    one model pass, "n_test", "n_val", "n_dev"}) and its `phase_seconds`. None where a stage measured no steady
    epoch (the canary ran out of time first)."""
    per_network = measured["stage1"]
    if not per_network or any(t.get("steady_epoch_seconds") is None for t in per_network):
        return None
    k = full.data.folds
    models = full.data.fold_models or k
    passes = 2 if full.post.tta != "off" else 1
    epochs1 = full.stage1.train.epochs
    stage1 = sum(t["compile_seconds"] for t in per_network)  # a network compiles once; later folds reuse it
    stage1 += sum(epochs1 * per_network[f % len(per_network)]["steady_epoch_seconds"] for f in range(models))
    infer1 = max(measured["infer1"], 1e-9)
    # Each fold model predicts its own fold (out of fold), the hold-out and the test set, with flip TTA.
    oof = measured["n_dev"] / k * models * passes / infer1
    predict1 = models * passes * (measured["n_val"] + measured["n_test"]) / infer1 + oof
    stage2 = predict2 = 0.0
    two = measured.get("stage2")
    if full.two_stage and two is not None:
        if two.get("steady_epoch_seconds") is None:
            return None
        # Stage 2 learns from the out-of-fold rows: a canary's few fold models cover fewer than the full run's.
        scale = measured["stage2_rows_full"] / max(measured["stage2_rows"], 1)
        stage2 = two["compile_seconds"] + full.stage2.train.epochs * two["steady_epoch_seconds"] * scale
        predict2 = passes * (measured["n_val"] + measured["n_test"]) / max(measured.get("infer2") or infer1, 1e-9)
    trained = {"stage1", "stage2"}  # the phases the projection replaces; the rest is taken as measured
    predicted = ("stage1 validation", "stage1 test prediction", "stage2 validation", "stage2 test prediction")
    other = sum(
        v
        for name, v in phase_seconds.items()
        if name != "total" and name not in trained and not name.startswith(predicted)
    )
    total = stage1 + predict1 + stage2 + predict2 + other
    return {
        "stage1_training": round(stage1, 1),
        "stage1_prediction": round(predict1, 1),
        "stage2_training": round(stage2, 1),
        "stage2_prediction": round(predict2, 1),
        "other": round(other, 1),
        "total": round(total, 1),
        "budget_seconds": full.budget_seconds,
        "fits_budget": total <= full.budget_seconds,
    }


def canary_metrics(full: Config, cfg: Config, measured: dict, phase_seconds: dict, runtime: dict) -> dict:
    """metrics.json's `canary`: what was cut, the measured figures, the full run projected, and whether it ran on
    the machine it stands in for (a GPU) or on a CPU (the emulator, or `require_gpu=false`)."""
    return {
        "budget_seconds": cfg.budget_seconds,
        "epochs": full.canary.epochs,
        "fold_models": cfg.data.fold_models,
        "full_preset": full.preset,
        "full_budget_seconds": full.budget_seconds,
        "on_gpu": bool(runtime.get("gpus")),
        "measured": measured,
        "projection": project(full, measured, phase_seconds),
    }


# What a full run is projected from before any canary has measured it: rates assumed for the `kaggle` preset's
# networks on two T4s (NvidiaTeslaT4), not measured. A reading of the work gives ~10.5 GFLOP per training image
# and ~560 images/s if the GPUs were the bound; the CPU feed (augmentation, copy-paste) is the likelier bound, so
# half that is assumed, and a minute of compilation per network. `make canary` replaces these with measurements.
ASSUMED_RATES = {"train_samples_per_s": 250.0, "infer_samples_per_s": 1000.0, "compile_seconds": 60.0}
ASSUMED_FIXED_SECONDS = {"load": 30.0, "clean": 90.0, "folds": 5.0}  # phases the projection takes as measured


def estimate(cfg: Config, n_train: int, n_test: int, rates: dict = ASSUMED_RATES) -> dict:
    """`project` of `cfg`'s full run on a data set of `n_train` training and `n_test` test images, from assumed
    `rates` instead of a canary's figures (an epoch: its training images at the training rate plus its
    validation images at the prediction rate)."""
    n_val = round(n_train * cfg.data.val_fraction)
    n_dev = n_train - n_val
    k = cfg.data.folds
    fold_train, fold_val = n_dev * (k - 1) / k, n_dev / k

    def network(images, validation):
        steady = images / rates["train_samples_per_s"] + validation / rates["infer_samples_per_s"]
        return {"compile_seconds": rates["compile_seconds"], "steady_epoch_seconds": steady}

    measured = {
        "stage1": [network(fold_train, fold_val) for _ in model_variants(cfg.stage1)],
        "stage2": network(n_dev * (1 - cfg.data.val_fraction), n_dev * cfg.data.val_fraction),
        "stage2_rows": n_dev,
        "stage2_rows_full": n_dev,
        "infer1": rates["infer_samples_per_s"],
        "infer2": rates["infer_samples_per_s"],
        "n_test": n_test,
        "n_val": n_val,
        "n_dev": n_dev,
    }
    return project(cfg, measured, dict(ASSUMED_FIXED_SECONDS))


def _gb(value) -> str:
    return "n/a" if value is None else f"{value / 1e9:.1f} GB"


def _network_line(name: str, t: dict) -> str:
    epochs = ", ".join(f"{s:.1f}" for s in t["epoch_seconds"]) or "none"
    if t["steady_epoch_seconds"] is None:
        return f"  {name}: {t['images']} training images, epochs {epochs} s: too few whole epochs for a steady time"
    return (
        f"  {name}: {t['images']} training images, epochs {epochs} s: compile {t['compile_seconds']:.0f} s, steady "
        f"epoch {t['steady_epoch_seconds']:.1f} s, {t['train_samples_per_s']:.0f} img/s"
    )


def report_lines(metrics: dict) -> list[str]:
    """A canary's metrics.json as a person reads it: the machine, per stage images/s, compile seconds and peak GPU
    memory, prediction rates, the full run projected; and, where it ran on a CPU, that its figures are not a GPU's."""
    canary, runtime = metrics["canary"], metrics.get("runtime", {})
    devices = describe_devices(runtime) if runtime.get("gpus") else "the CPU"
    lines = [
        f"canary of preset {canary['full_preset']} on {devices}: {runtime.get('replicas', 1)} "
        f"replica(s), {runtime.get('precision', '?')}; Keras {runtime.get('keras', '?')} on "
        f"{runtime.get('backend', '?')} {runtime.get('backend_version', '')}; "
        f"{metrics.get('seconds', {}).get('total', 0):.0f} s of its {canary['budget_seconds']:.0f} s budget",
    ]
    measured = canary["measured"]
    variants = metrics.get("stage1", {}).get("model_variants", [])
    for i, t in enumerate(measured.get("stage1", [])):
        shown = variants[i].strip() if i < len(variants) and variants[i].strip() else "stage1.model"
        lines.append(_network_line(f"stage 1, network {i + 1} ({shown})", t))
    if measured.get("stage2"):
        lines.append(_network_line("stage 2", measured["stage2"]))
    else:
        lines.append(f"  stage 2: not trained ({metrics.get('stage2_status', 'no status')})")
    infer2 = measured.get("infer2")
    lines.append(
        f"  prediction: stage 1 {measured.get('infer1', 0):.0f} img/s a model pass"
        + (f", stage 2 {infer2:.0f} img/s" if infer2 else "")
        + f"; peak GPU memory: stage 1 {_gb(metrics.get('stage1', {}).get('peak_gpu_bytes'))}, "
        f"stage 2 {_gb(metrics.get('stage2', {}).get('peak_gpu_bytes'))}"
    )
    p = canary["projection"]
    if p is None:
        lines.append("  projected full run: n/a (a network finished fewer than two whole epochs); raise canary.epochs")
    else:
        lines.append(
            f"  projected full run of preset {canary['full_preset']}: stage 1 {p['stage1_training'] / 60:.0f} min "
            f"training + {p['stage1_prediction'] / 60:.1f} min prediction, stage 2 {p['stage2_training'] / 60:.0f} "
            f"+ {p['stage2_prediction'] / 60:.1f} min, other {p['other'] / 60:.1f} min: at most "
            f"{p['total'] / 3600:.2f} h = {p['total'] / 60:.0f} min (early stopping only shortens it); "
            f"budget {p['budget_seconds'] / 3600:.2f} h"
            + ("" if p["fits_budget"] else ": DOES NOT FIT, the budget logic will cut epochs")
        )
    if not canary["on_gpu"]:
        lines.append(
            f"  NOTE: ran on the CPU (require_gpu off) with a {canary['budget_seconds']:.0f} s budget: these are this "
            "machine's figures, not a GPU's; the kernel on Kaggle measures the real ones"
        )
    return lines
