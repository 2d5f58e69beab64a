"""One training stage: build, compile, fit with callbacks under a deadline, keep the best epoch; predict.

    from marsseg.training.feed import network_input

    data = StageData(images, masks, network_input(val_images), val_masks)
    result = fit_stage(cfg.stage1, data, augment_cfg=cfg.augment, seed=42, deadline=Deadline(budget.deadline(300)))
    probs = predict_probs(result.model, x_test)        # main-head softmax, (N, 64, 128, 5) float32

Network inputs are float32 (N, 64, 128, C) (image / 255, then any extra channels), labels uint8 (N, 64, 128).
The best epoch is chosen on the main head's validation mIoU over classes 1-4; its weights are restored. The
callbacks that keep time and the best epoch are in `callbacks`, the batches and inputs fed in `feed`, what a stage
is given (the run's shared context, its images, its deadline) in `context`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import keras
import numpy as np

from marsseg.config import AugmentConfig, StageConfig
from marsseg.errors import ConfigError
from marsseg.models import aux_loss_weights, build_unet, main_head
from marsseg.prep.augment import sequence_from_config
from marsseg.training.callbacks import BatchDeadline, StageGuard, ValidationMetrics
from marsseg.training.context import Deadline, StageContext, StageData
from marsseg.training.distribute import accelerator_devices, distribution_scope
from marsseg.training.feed import batch_builders, per_head, training_data
from marsseg.training.losses import build_loss
from marsseg.training.metrics import MeanIoU, validation_only
from marsseg.training.optimizer import ema_swap, make_optimizer, schedule_callbacks
from marsseg.training.reuse import FoldModel, FullBatches, keras_model, pad_rows, padded_length, setting_key
from marsseg.training.runtime import precision_choice


@dataclass
class StageResult:
    model: keras.Model  # or, with a ModelCache, a reuse.FoldModel: this fold's weights on a shared network
    history: dict[str, list[float]]
    best_val_miou: float
    best_epoch: int  # 1-based; 0 when no epoch finished, or when no epoch beat a residual head's untrained score
    epochs_run: int
    seconds: float
    train_samples_per_s: float
    stop_reason: str  # "epochs" | "patience" | "budget"
    monitor: str = "val_miou"
    extra: dict = field(default_factory=dict)


def jit_setting():
    """XLA under TensorFlow only with an accelerator: on a CPU it compiles for longer and steps slower (measured
    on the 2-core dev machine: 24 s vs 9 s to the first step, half the samples/s). JAX always compiles."""
    if keras.backend.backend() != "tensorflow":
        return "auto"
    return "auto" if accelerator_devices() else False


def compile_model(model: keras.Model, stage_cfg: StageConfig, class_weights=None, num_classes: int = 5) -> str:
    """Compile with the stage's loss on every head and mIoU on the main head; return the monitored key."""
    loss = build_loss(stage_cfg.loss, class_weights=class_weights, num_classes=num_classes)
    names = list(model.output_names)
    if len(names) > 1:
        weights = aux_loss_weights(stage_cfg.model, len(names) - 1)
        model.compile(
            optimizer=make_optimizer(stage_cfg.train),
            loss={n: loss for n in names},
            loss_weights=dict(zip(names, weights)),
            metrics={names[0]: validation_only(model, [MeanIoU(num_classes=num_classes, name="miou")])},
            jit_compile=jit_setting(),
            run_eagerly=stage_cfg.train.run_eagerly,
        )
        return f"val_{names[0]}_miou"
    model.compile(
        optimizer=make_optimizer(stage_cfg.train),
        loss=loss,
        metrics=validation_only(model, [MeanIoU(num_classes=num_classes, name="miou")]),
        jit_compile=jit_setting(),
        run_eagerly=stage_cfg.train.run_eagerly,
    )
    return "val_miou"


def fit_stage(
    stage_cfg: StageConfig,
    data: StageData,
    *,
    augment_cfg: AugmentConfig | None = None,
    seed: int = 42,
    name: str = "stage",
    class_weights=None,
    deadline: Deadline | None = None,
    context: StageContext | None = None,
) -> StageResult:
    """Train one U-Net for one stage on `data`; stop at `deadline.at` (a `context.clock()` value) at the latest.

    Training batches come from `marsseg.prep.augment.sequence_from_config` on the uint8 training images with the
    optional float32 extra channels (stage 2's probabilities); `augment_cfg=None` means no augmentation and
    no oversampling. `data.val_x` is the float32 network input. At least part of one epoch runs (a deadline that
    comes first cuts it short, and the last epoch is cut at the deadline); the best epoch's weights are kept.
    `deadline.passes_after`: predictions on `val_x` the caller makes after `fit` (stage 1's out-of-fold
    probabilities), whose time is kept back too; `deadline.replan`: a new deadline from this network's measured
    speeds (`context.Deadline`). With `context.models` (a `reuse.ModelCache`), a network compiled earlier with the
    same settings is re-initialised at `seed` and trained again (its traced steps reused), and `model` is a
    FoldModel. The context's log, verbosity, clock and class count apply (None: `StageContext()`).
    """
    context, deadline = context or StageContext(), deadline or Deadline()
    train_images, train_masks, train_extras = data.train_images, data.train_masks, data.train_extras
    val_x, val_y = data.val_x, data.val_y
    log, clock, models, num_classes = context.log, context.clock, context.models, context.num_classes
    at, passes_after, replan = deadline.at, deadline.passes_after, deadline.replan
    if len(train_images) == 0 or len(val_x) == 0:
        raise ConfigError(f"{name}: needs training and validation images, got {len(train_images)} and {len(val_x)}")
    channels = 1 + (0 if train_extras is None else train_extras.shape[-1])
    train_cfg = stage_cfg.train
    keras.utils.set_random_seed(seed)
    mixed, why = precision_choice(train_cfg.mixed_precision)
    if why.startswith("mixed float16 off"):  # a GPU that would train slower in float16: say so in the log
        log(f"[marsseg] {name}: float32, {why}")
    previous_policy = keras.config.dtype_policy().name
    if mixed:
        keras.config.set_dtype_policy("mixed_float16")
    started = clock()
    try:
        with distribution_scope() if models is None else models.scope(distribution_scope) as replicas:
            if replicas.kind != "single":
                log(f"[marsseg] {name}: {replicas.describe()}")
            model, monitor = _network(stage_cfg, channels, num_classes, class_weights, mixed, replicas, name, models)
            names = list(model.output_names) if len(model.output_names) > 1 else None
            plain = AugmentConfig(strength="none", bigrock_oversample=1.0, workers=1)
            batches = sequence_from_config(
                train_images,
                train_masks,
                augment_cfg or plain,
                train_cfg.batch_size,
                extras=train_extras,
                seed=seed,
                image_weights=data.train_weights,
            )
            source = FullBatches(batches)  # one training-step shape: see `reuse`
            val_x, val_y = _steady_validation(val_x, val_y, 2 * train_cfg.batch_size)
            targets = per_head(val_y, names)
            lr_callback, on_plan = schedule_callbacks(train_cfg, monitor)
            guard = StageGuard(
                monitor, train_cfg.patience, at, clock, on_plan, passes_after, replan, validation_rows=len(val_x)
            )
            guard.steps, guard.batch_size = len(source), train_cfg.batch_size
            baseline = None
            if stage_cfg.model.residual:
                # A residual stage 2 starts as a copy of stage 1: that score is the bar, and if no epoch clears
                # it the untouched head (stage 1's answer) is what comes back.
                evaluated_at = clock()
                scores = model.evaluate(
                    val_x, targets, batch_size=2 * train_cfg.batch_size, verbose=0, return_dict=True
                )
                # The same pass fit's validation makes: the guard's estimate before the first epoch ends.
                guard.validation_seconds = clock() - evaluated_at
                baseline = float(scores[monitor.removeprefix("val_")])
                guard.set_baseline(baseline, model.get_weights())
            # The batch source shuffles itself, per seed and epoch.
            common = dict(
                validation_data=(val_x, targets),
                validation_batch_size=2 * train_cfg.batch_size,
                verbose=context.verbose,
                shuffle=False,
            )
            epoch_cap = max(1, train_cfg.epochs)
            feed = training_data(source, names, batch_builders((augment_cfg or plain).workers), epoch_cap)
            deadline_check = [BatchDeadline(guard)] if at is not None else []
            records = model.fit(
                feed.data,
                epochs=epoch_cap,
                # With EMA, the averaged weights are in the model from each epoch's validation to the next epoch:
                # the guard scores and keeps them (it restores its best at the end, after Keras's own finalize).
                callbacks=[
                    *ema_swap(train_cfg),
                    lr_callback,
                    guard,
                    *deadline_check,
                    *feed.callbacks,
                    ValidationMetrics(),
                ],
                **common,
                **feed.fit_options,
            ).history
    finally:
        keras.config.set_dtype_policy(previous_policy)
    seconds = clock() - started
    epochs = len(guard.epoch_seconds)
    rate = guard.samples_per_s(len(source) * train_cfg.batch_size)
    return StageResult(
        model=model if models is None else FoldModel(model, name),
        history={k: [float(v) for v in vs] for k, vs in records.items()},
        best_val_miou=float(guard.best),
        best_epoch=guard.best_epoch,
        epochs_run=epochs,
        seconds=seconds,
        train_samples_per_s=rate,
        stop_reason=guard.stop_reason,
        monitor=monitor,
        extra={
            "mixed_precision": mixed,
            "precision_reason": why,
            "replicas": replicas.num_replicas,
            "baseline_val_miou": baseline,
            "epoch_seconds": [float(t) for t in guard.epoch_seconds],
            "full_epoch_seconds": [float(t) for t in guard.full_epochs],
            "validation_seconds": float(guard.validation_seconds),
            "cut_epoch": guard.cut_epoch,
        },
    )


def _network(stage_cfg, channels, num_classes, class_weights, mixed, replicas, name, models):
    """A compiled network and its monitored key: new, or from `models` re-initialised as a new one would be
    (the random seed is already this fit's, so an uncompiled twin gets exactly a fresh model's weights)."""
    key = models is not None and setting_key(
        stage_cfg, channels, num_classes, class_weights, mixed, replicas, jit_setting()
    )
    found = models.get(key) if key else None
    # Several replicas: batch norm over the global batch, not each replica's share (`distribute`).
    sync_norm = replicas.num_replicas > 1
    if found is not None:
        models.reset(key, build_unet(stage_cfg.model, channels, num_classes, name=name, sync_norm=sync_norm))
        return found
    model = build_unet(stage_cfg.model, channels, num_classes, name=name, sync_norm=sync_norm)
    monitor = compile_model(model, stage_cfg, class_weights, num_classes)
    if key:
        models.add(key, model, monitor)
    return model, monitor


def _steady_validation(val_x, val_y, batch_size: int):
    """Under JAX, the validation rows padded to whole batches (see `reuse`) with blank images labelled background:
    the monitored mIoU drops background truth, so it is unchanged; `val_loss` counts the padding. TensorFlow
    traces with a free batch dimension and gets the rows as they are."""
    if keras.backend.backend() != "jax":
        return val_x, val_y
    length = padded_length(len(val_x), batch_size)
    return pad_rows(val_x, length), pad_rows(val_y, length)


_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def predict_probs(model: keras.Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Main-head class probabilities (N, 64, 128, K) float32; the auxiliary heads are not evaluated. `model` may
    be a `reuse.FoldModel`."""
    model = keras_model(model)
    # One head view per model, so Keras traces its predict function once however often we call. (Not an
    # attribute of the model: Keras would track the view as a sub-layer of the model it wraps.)
    head = _HEADS.get(model)
    if head is None:
        head = _HEADS[model] = main_head(model)
    # Whole batches (or a power of two below one): under JAX each new batch shape is a new compilation.
    n = len(x)
    padded = pad_rows(x, padded_length(n, batch_size))
    if _replicas(head) > 1:  # `predict` splits each batch across the replicas; `predict_on_batch` would not
        probs = head.predict(padded, batch_size=batch_size, verbose=0)
    else:
        # Batch by batch through the compiled predict function, without the tf.data iterator `predict` builds
        # per call: on one pinned core beside a busy one (the paired runs) that ran at half speed, 1024 rows in
        # 20.5 s against 10.8 s, 4 interleaved rounds each, and priced stage 1's test pass at half its real cost.
        step = min(batch_size, len(padded))
        probs = np.concatenate([head.predict_on_batch(padded[i : i + step]) for i in range(0, len(padded), step)])
    return np.asarray(probs[:n], dtype=np.float32)


def _replicas(model: keras.Model) -> int:
    """How many replicas `model` runs on (TensorFlow's distribution strategy; 1 on other backends)."""
    strategy = getattr(model, "distribute_strategy", None)
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
