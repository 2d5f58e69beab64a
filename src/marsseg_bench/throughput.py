"""The kit's stage-1 training step against a plain Keras U-Net of the same size, timed in interleaved bursts.

    result = compare(preset("cpu").stage1, comparisons=("step",), bursts=8, steps=12)
    result["step"]["median"]        # kit img/s over plain img/s, median of paired bursts

    python -m marsseg_bench.throughput --bursts 8 --steps 12 [--only all|step,epochs,...] [--json]

The machine's speed swings within minutes, so absolute rates say little: each burst of A is paired with its
neighbouring burst of B (order alternating A B, B A, ... so a drift favours neither) and only the ratio of the pair
is kept. The main run pins itself to one core with one TensorFlow thread (set before TensorFlow is imported), so
both networks see the same single core. The variants and their bursts: `throughput_variants`.

"epochs" and "validation" time what the kit's short epochs cost beyond their steps, but not all of it: the kit's
guard (a weight snapshot and a re-plan per epoch) and learning-rate schedule are not in them, and each burst's
`fit` adapts its validation arrays anew (the kit's one `fit` does so once).
"""

from __future__ import annotations

import json
import os
import statistics
import sys

import numpy as np

from marsseg_bench.throughput_variants import DROPOUT_PROBE, EPOCHS, VALIDATION_ROWS, StepRunner, blocky_rows

# Each comparison: (A, B, what the ratio A/B isolates).
COMPARISONS = {
    "step": ("kit", "plain", "kit stage-1 train step (loss, metric, layers) vs a plain U-Net"),
    "metric": ("kit_counting", "kit_no_metric", "kit with MeanIoU counted in every train step vs no metric"),
    "metric_now": ("kit", "kit_no_metric", "kit with MeanIoU counted on validation only vs no metric"),
    "loss": ("kit_no_metric", "kit_plain_loss", "kit loss vs plain sparse CE, same kit network, no metric"),
    "layers": ("kit_plain_loss", "plain", "kit network vs plain network, same plain CE, no metric"),
    "dropout": (
        "kit_dropout",
        "kit_no_dropout",
        f"kit network with spatial dropout (its rate, or {DROPOUT_PROBE} where it has none) vs without, plain CE",
    ),
    "keras_dropout": (
        "kit_dropout",
        "kit_keras_dropout",
        "kit network with its one-multiply spatial dropout vs Keras's SpatialDropout2D, plain CE",
    ),
    "feed": ("fit_feed", "fit_arrays", "fit on the kit's tf.data feed (flips) vs on in-memory arrays, kit network"),
    "callbacks": ("fit_callbacks", "fit_arrays", "fit with the kit's per-batch callbacks vs none, in-memory arrays"),
    "workers": ("fit_feed_workers", "fit_feed", "the feed with the cpu preset's augment.workers vs one worker"),
    "epochs": (
        "fit_epochs",
        "fit_feed",
        f"as many batches as {EPOCHS} epochs of one fit vs as one epoch, tf.data feed",
    ),
    "validation": ("fit_validated", "fit_epochs", f"{EPOCHS} epochs each with a validation pass vs without"),
}


def pin_one_core() -> bool:
    """One core, one TensorFlow thread each way; effective only before TensorFlow is imported."""
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        return True
    except (AttributeError, OSError):
        return False


def interleaved(burst_a, burst_b, bursts: int, samples: int) -> dict:
    """Alternate `burst_a` and `burst_b` (A B, B A, A B, ...); each returns seconds for `samples` samples.

    Returns both rates per burst (img/s), the paired ratios A/B of speed, their median, min and max."""
    a_rates, b_rates = [], []
    for i in range(bursts):
        first, second = (burst_a, burst_b) if i % 2 == 0 else (burst_b, burst_a)
        t_first, t_second = first(), second()
        t_a, t_b = (t_first, t_second) if i % 2 == 0 else (t_second, t_first)
        a_rates.append(samples / t_a)
        b_rates.append(samples / t_b)
    ratios = [a / b for a, b in zip(a_rates, b_rates)]
    return {
        "a_img_s": a_rates,
        "b_img_s": b_rates,
        "ratios": ratios,
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "pairs": len(ratios),
    }


def compare(
    stage_cfg=None,
    comparisons=("step",),
    bursts: int = 8,
    steps: int = 12,
    batch: int | None = None,
    warmup: int = 1,
    log=None,
    validation_rows: int = VALIDATION_ROWS,
) -> dict:
    """Each named comparison of COMPARISONS, timed in `bursts` interleaved pairs of `steps` training steps.

    `stage_cfg`: the network and training settings (default: the cpu preset's stage 1); `batch` defaults to its
    batch size. `warmup` untimed bursts per variant come first (the first traces the step). Returns
    {name: interleaved(...) plus "a", "b", "what"}, and "params": {variant: parameter count}."""
    from marsseg.config import preset
    from marsseg.prep.analysis import class_weights as weights_for

    stage_cfg = stage_cfg or preset("cpu").stage1
    batch = batch or stage_cfg.train.batch_size
    log = log or (lambda message: None)
    rng = np.random.default_rng(0)
    n = batch * steps
    images, masks = blocky_rows(rng, n)
    loss_cfg = stage_cfg.loss
    weights = weights_for(masks, power=loss_cfg.class_weight_power, max_ratio=loss_cfg.max_weight_ratio or None)
    if {"epochs", "validation"} & set(comparisons) and steps % EPOCHS:
        raise ValueError(f"the epochs and validation comparisons split a burst in {EPOCHS}: steps {steps} is not")
    validation = blocky_rows(rng, validation_rows) if "validation" in comparisons else None
    runners: dict[str, StepRunner] = {}

    def runner(name):
        if name not in runners:
            log(f"throughput: building {name}")
            runners[name] = StepRunner(name, stage_cfg, images, masks, weights, batch, steps, validation)
            for _ in range(max(0, warmup)):
                runners[name].burst()
        return runners[name]

    out: dict = {}
    for key in comparisons:
        a, b, what = COMPARISONS[key]
        run_a, run_b = runner(a), runner(b)
        log(f"throughput: {key}: {a} vs {b}, {bursts} pairs of {steps} steps of {batch}")
        out[key] = {"a": a, "b": b, "what": what, **interleaved(run_a.burst, run_b.burst, bursts, n)}
    out["params"] = {name: int(r.model.count_params()) for name, r in runners.items()}
    return out


def describe(result: dict) -> list[str]:
    """One line per comparison: median ratio (min-max), n pairs, and the rates."""
    lines = []
    for key, r in result.items():
        if key == "params":
            continue
        lines.append(
            f"{key}: {r['a']}/{r['b']} = {r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}), {r['pairs']} pairs; "
            f"{r['a']} {statistics.median(r['a_img_s']):.1f} img/s, {r['b']} {statistics.median(r['b_img_s']):.1f}"
        )
    return lines


def run_pinned(comparisons=("step",), bursts: int = 8, steps: int = 12, timeout: float = 900) -> dict:
    """`compare` in a fresh interpreter pinned to one core (this one's TensorFlow threads are already set)."""
    import subprocess

    command = [sys.executable, "-m", "marsseg_bench.throughput", "--json", "--bursts", str(bursts),
               "--steps", str(steps), "--only", ",".join(comparisons)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12, help="training steps a burst (a multiple of 3 for epochs)")
    parser.add_argument("--only", default="step", help="comma-separated comparisons, or 'all'")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    pinned = False if args.no_pin else pin_one_core()
    names = list(COMPARISONS) if args.only == "all" else [s.strip() for s in args.only.split(",") if s.strip()]
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    result = compare(comparisons=names, bursts=args.bursts, steps=args.steps, log=log)
    result["pinned"] = pinned
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(describe({k: v for k, v in result.items() if k != "pinned"})))
        print(f"params: {result['params']}; pinned to one core: {pinned}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
