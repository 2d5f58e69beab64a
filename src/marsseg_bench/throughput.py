"""The kit's stage-1 training step against a plain Keras U-Net of the same size, timed in interleaved bursts.

    result = compare(preset("cpu").stage1, comparisons=("step",), bursts=8, steps=10)
    result["step"]["median"]        # kit img/s over plain img/s, median of paired bursts

    python -m marsseg_bench.throughput --bursts 8 --steps 10 [--components] [--json]

The machine's speed swings within minutes, so absolute rates say little: each burst of A is paired with its
neighbouring burst of B (order alternating A B, B A, ... so a drift favours neither) and only the ratio of the pair
is kept. The main run pins itself to one core with one TensorFlow thread (set before TensorFlow is imported), so
both networks see the same single core.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np

# The epoch-boundary comparisons split each burst's batches into this many epochs of one `fit` (the kit's stage 1
# runs epochs of about 1,800 samples, the best-practice reference epochs of 6,675: the same fixed cost per epoch
# weighs about 3.7 times as much per kit sample), validating on VALIDATION_ROWS rows (a fold's out-of-fold rows at
# 2615 images) after each where asked.
EPOCHS, VALIDATION_ROWS = 3, 570

# Each comparison: (A, B, what the ratio A/B isolates).
COMPARISONS = {
    "step": ("kit", "plain", "kit stage-1 train step (loss, metric, layers) vs a plain U-Net"),
    "metric": ("kit_counting", "kit_no_metric", "kit with MeanIoU counted in every train step vs no metric"),
    "metric_now": ("kit", "kit_no_metric", "kit with MeanIoU counted on validation only vs no metric"),
    "loss": ("kit_no_metric", "kit_plain_loss", "kit loss vs plain sparse CE, same kit network, no metric"),
    "layers": ("kit_plain_loss", "plain", "kit network vs plain network, same plain CE, no metric"),
    "dropout": ("kit_plain_loss", "kit_no_dropout", "kit network with its spatial dropout vs without, plain CE"),
    "feed": ("fit_feed", "fit_arrays", "fit on the kit's tf.data feed (flips) vs on in-memory arrays, kit network"),
    "callbacks": ("fit_callbacks", "fit_arrays", "fit with the kit's per-batch callbacks vs none, in-memory arrays"),
    "workers": ("fit_feed_workers", "fit_feed", "the feed with the cpu preset's augment.workers vs one worker"),
    "epochs": (
        "fit_epochs",
        "fit_feed",
        f"the same batches as {EPOCHS} epochs of one fit vs as one epoch, tf.data feed",
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


def plain_unet(depth: int, base: int, input_channels: int = 1, num_classes: int = 5, name: str = "plain"):
    """The textbook U-Net: Conv3x3-BN-ReLU twice per level, max pooling, bilinear upsampling and concatenation,
    a 1x1 softmax head. Keras defaults everywhere (biases included), no dropout."""
    import keras
    from keras import layers

    def block(x, filters):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal")(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        return x

    inputs = keras.Input((64, 128, input_channels))
    x, skips = inputs, []
    for level in range(depth):
        x = block(x, base * 2**level)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = block(x, base * 2**depth)
    for level in reversed(range(depth)):
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = block(layers.Concatenate()([x, skips[level]]), base * 2**level)
    outputs = layers.Conv2D(num_classes, 1, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def _optimizer(train_cfg):
    from marsseg.training.fit import make_optimizer

    return make_optimizer(train_cfg)


def build_variant(name: str, stage_cfg, class_weights=None, num_classes: int = 5):
    """A compiled network for a variant of COMPARISONS. The kit ones are built and compiled as `fit_stage` does
    (`fit._network`, one replica, float32); the others swap one thing."""
    import keras

    from marsseg.training import fit
    from marsseg.training.distribute import Replicas
    from marsseg.training.losses import build_loss

    keras.utils.set_random_seed(0)
    if name == "plain":
        model = plain_unet(stage_cfg.model.depth, stage_cfg.model.base_filters, num_classes=num_classes)
        model.compile(_optimizer(stage_cfg.train), loss=keras.losses.SparseCategoricalCrossentropy(),
                      jit_compile=fit.jit_setting())  # fmt: skip
        return model
    if name in ("kit", "kit_counting", "fit_arrays", "fit_callbacks") or name.startswith("fit_"):
        model, _ = fit._network(stage_cfg, 1, num_classes, class_weights, False, Replicas("single"), name, None)
        return model
    from dataclasses import replace

    from marsseg.models import build_unet

    model_cfg = replace(stage_cfg.model, dropout=0.0) if name == "kit_no_dropout" else stage_cfg.model
    model = build_unet(model_cfg, 1, num_classes, name=name)
    if name == "kit_no_metric":
        loss = build_loss(stage_cfg.loss, class_weights=class_weights, num_classes=num_classes)
    elif name in ("kit_plain_loss", "kit_no_dropout"):
        loss = keras.losses.SparseCategoricalCrossentropy()
    else:
        raise ValueError(f"unknown variant {name!r}; choose from {sorted(_all_variants())}")
    model.compile(_optimizer(stage_cfg.train), loss=loss, jit_compile=fit.jit_setting())
    return model


def _all_variants() -> set[str]:
    return {v for a, b, _ in COMPARISONS.values() for v in (a, b)}


class StepRunner:
    """Runs `steps` training steps of one variant: `train_on_batch` on one fixed batch (the raw step), or one
    `fit` epoch of `steps` batches (the feed and callback variants)."""

    def __init__(self, name, stage_cfg, images, masks, class_weights, batch: int, steps: int, validation=None):
        from marsseg.training.feed import network_input

        self.name, self.batch, self.steps = name, batch, steps
        self.model = build_variant(name, stage_cfg, class_weights)
        self.x, self.y = network_input(images), masks.astype(np.int32)
        self.data, self.callbacks, self.epochs, self.fit_options = None, [], 1, {}
        if name != "kit_counting" and not name.startswith("fit_"):
            self._validation_only_metrics()
        if name in ("fit_epochs", "fit_validated"):
            # The same `steps` batches a burst, as EPOCHS epochs over a third of them (each epoch a new pass of the
            # feed, as the kit's are); "fit_validated" also validates after each epoch, as `fit_stage` does.
            self.epochs = EPOCHS
            images, masks = images[: len(images) // EPOCHS], masks[: len(masks) // EPOCHS]
            if name == "fit_validated":
                val_x, val_y = validation
                self.fit_options = dict(validation_data=(network_input(val_x), val_y), validation_batch_size=2 * batch)
        if name in ("fit_feed", "fit_feed_workers", "fit_epochs", "fit_validated"):
            from marsseg.config import AugmentConfig, preset
            from marsseg.prep.augment import sequence_from_config
            from marsseg.training.feed import training_data
            from marsseg.training.reuse import FullBatches

            # The cpu preset's augmentation (flips), without oversampling so each epoch has exactly `steps` batches;
            # one worker, or as many as the preset starts (`augment.workers`).
            workers = preset("cpu").augment.workers if name == "fit_feed_workers" else 1
            augment = AugmentConfig(strength="flips", bigrock_oversample=1.0, bigrock_offline_copies=0, workers=workers)
            source = FullBatches(sequence_from_config(images, masks, augment, batch, seed=0))
            self.data, self.callbacks = training_data(source, None, workers=workers)
        elif name == "fit_callbacks":
            from marsseg.training.callbacks import BatchDeadline, StageGuard

            guard = StageGuard("val_miou", 5, deadline=time.monotonic() + 1e9)
            self.callbacks = [BatchDeadline(guard)]
        if name.startswith("fit_"):
            from marsseg.training.callbacks import ValidationMetrics

            self.callbacks.append(ValidationMetrics())  # as fit_stage trains

    def _validation_only_metrics(self):
        """As `fit_stage` trains (`callbacks.ValidationMetrics`): a test step first builds the compiled metrics
        (counting), then the train step is traced with counting off."""
        from marsseg.training.callbacks import ValidationMetrics

        self.model.test_on_batch(self.x[: self.batch], self.y[: self.batch])
        switch = ValidationMetrics()
        switch.set_model(self.model)
        switch.on_train_begin()

    def burst(self) -> float:
        """Seconds for `steps` training steps."""
        started = time.perf_counter()
        if self.name.startswith("fit_"):
            data = (self.data,) if self.data is not None else (self.x, self.y)
            kwargs = {} if self.data is not None else dict(batch_size=self.batch, shuffle=False)
            self.model.fit(*data, epochs=self.epochs, verbose=0, callbacks=self.callbacks, **kwargs, **self.fit_options)
        else:
            xb, yb = self.x[: self.batch], self.y[: self.batch]
            for _ in range(self.steps):
                self.model.train_on_batch(xb, yb)
        return time.perf_counter() - started


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
    steps: int = 10,
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
    images = rng.integers(0, 256, (n, 64, 128), dtype=np.uint8)
    # Blocky labels with every class, as the real masks are (and so the class weights have all classes).
    masks = np.repeat(np.repeat(rng.integers(0, 5, (n, 8, 16), dtype=np.uint8), 8, axis=1), 8, axis=2)
    loss_cfg = stage_cfg.loss
    weights = weights_for(masks, power=loss_cfg.class_weight_power, max_ratio=loss_cfg.max_weight_ratio or None)
    if {"epochs", "validation"} & set(comparisons) and steps % EPOCHS:
        raise ValueError(f"the epochs and validation comparisons split a burst in {EPOCHS}: steps {steps} is not")
    val_images = rng.integers(0, 256, (validation_rows, 64, 128), dtype=np.uint8)
    val_masks = np.repeat(np.repeat(rng.integers(0, 5, (validation_rows, 8, 16), dtype=np.uint8), 8, 1), 8, 2)
    runners: dict[str, StepRunner] = {}

    def runner(name):
        if name not in runners:
            log(f"throughput: building {name}")
            runners[name] = StepRunner(name, stage_cfg, images, masks, weights, batch, steps, (val_images, val_masks))
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


def run_pinned(comparisons=("step",), bursts: int = 8, steps: int = 10, timeout: float = 900) -> dict:
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
    parser.add_argument("--steps", type=int, default=10)
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
