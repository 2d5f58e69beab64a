"""One training stage: build, compile, fit with callbacks under a deadline, keep the best epoch; predict.

    result = fit_stage(cfg.stage1, images, masks, network_input(val_images), val_masks, augment_cfg=cfg.augment,
                       seed=42, deadline=budget.deadline(300))
    probs = predict_probs(result.model, x_test)        # main-head softmax, (N, 64, 128, 5) float32

Network inputs are float32 (N, 64, 128, C) (image / 255, then any extra channels), labels uint8 (N, 64, 128).
The best epoch is chosen on the main head's validation mIoU over classes 1-4; its weights are restored.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass, field

import keras
import numpy as np

from marsseg.config import AugmentConfig, StageConfig, TrainConfig
from marsseg.errors import ConfigError


@dataclass
class StageResult:
    model: keras.Model
    history: dict[str, list[float]]
    best_val_miou: float
    best_epoch: int  # 1-based; 0 when no epoch finished, or when no epoch beat a residual head's untrained score
    epochs_run: int
    seconds: float
    train_samples_per_s: float
    stop_reason: str  # "epochs" | "patience" | "budget"
    monitor: str = "val_miou"
    extra: dict = field(default_factory=dict)


def network_input(images: np.ndarray, extras: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, H, W) [+ float32 (N, H, W, E)] -> float32 (N, H, W, 1+E), the grey channel in [0, 1]
    (the same scaling as `marsseg.prep.augment`)."""
    x = images.astype(np.float32)[..., None] * np.float32(1.0 / 255.0)
    return x if extras is None else np.concatenate([x, extras.astype(np.float32, copy=False)], axis=-1)


def mixed_precision_wanted(setting: str) -> bool:
    if setting not in ("auto", "on", "off"):
        raise ConfigError(f"train mixed_precision {setting!r} is not auto, on or off")
    if setting != "auto":
        return setting == "on"
    from marsseg.training.distribute import accelerator_devices

    return bool(accelerator_devices())


def _per_head(labels, names: list[str] | None):
    """The same labels for every output head (deep supervision), or the labels alone for a single-head model."""
    return {n: labels for n in names} if names else labels


class _Targets(keras.utils.PyDataset):
    """Wraps a batch source so each batch's labels go to every output head (deep supervision)."""

    def __init__(self, source, names: list[str] | None, **kwargs):
        super().__init__(**kwargs)
        self.source, self.names = source, names

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        xb, yb = self.source[index]
        return xb, _per_head(yb, self.names)

    def on_epoch_end(self):
        self.source.on_epoch_end()


class NextEpoch(keras.callbacks.Callback):
    """Advances a batch source to its next epoch (new order, new augmentation seeds) when `fit` does not."""

    def __init__(self, source):
        super().__init__()
        self.source = source

    def on_epoch_end(self, epoch, logs=None):
        self.source.on_epoch_end()


def training_data(source, names: list[str] | None, workers: int = 1):
    """What `fit` trains on, and the callbacks it needs: the batch source itself (a PyDataset) under JAX or
    PyTorch; under TensorFlow a tf.data pipeline that calls the source through `numpy_function`.

    Keras feeds a PyDataset to TensorFlow through `Dataset.from_generator`, which halved the training rate on
    the 2-core dev machine (cpu preset, stage 1: 25-29 img/s against 50-62 from numpy arrays, measured with
    precomputed batches); a `range(...).map(numpy_function)` pipeline runs at the numpy rate.
    """
    if keras.backend.backend() != "tensorflow":
        # Keras reads the worker count off the dataset it is given: without it the wrapper would build every
        # batch on the training thread, one after another with the steps.
        return _Targets(source, names, workers=max(1, int(workers))), []
    import tensorflow as tf

    first_x, first_y = source[0]
    x_spec, y_spec = (None, *first_x.shape[1:]), (None, *first_y.shape[1:])

    def fetch(index):
        x, y = source[int(index)]
        return x.astype(np.float32, copy=False), y.astype(np.int32, copy=False)

    def load(index):
        x, y = tf.numpy_function(fetch, [index], (tf.float32, tf.int32), stateful=True)
        x, y = tf.ensure_shape(x, x_spec), tf.ensure_shape(y, y_spec)
        return x, _per_head(y, names)

    dataset = tf.data.Dataset.range(len(source)).map(load, num_parallel_calls=max(1, int(workers)), deterministic=True)
    return dataset.prefetch(2), [NextEpoch(source)]


# A remainder shorter than this share of an epoch is not started: its validation pass would cost about as much.
MIN_PARTIAL_EPOCH = 0.3


class BatchDeadline(keras.callbacks.Callback):
    """Stops mid-epoch once the guard's training time is up, so the last epoch uses the time to the deadline
    instead of being skipped; Keras still validates the cut epoch. (The per-batch check costs nothing measurable
    with the tf.data feed: 35.7/35.8 s against 32.4/37.7 s per first epoch on 2 cores.)"""

    # Not `async_safe`: Keras 3.15 under JAX on a GPU then runs it on a callback thread, and a stop it sets there
    # races the next training step, which has already taken over (donated) the metric variables' buffers; the
    # epoch's end then reads a deleted array ("Array has been deleted", seen on an H100 at the first cut epoch).
    async_safe = False

    def __init__(self, guard: StageGuard):
        super().__init__()
        self.guard = guard

    def on_train_batch_end(self, batch, logs=None):
        until = self.guard.train_until()
        if until is not None and self.guard.clock() > until:
            self.guard.cut_epoch = True
            self.guard.stop_reason = "budget"
            self.model.stop_training = True


class StageGuard(keras.callbacks.Callback):
    """Best epoch on the monitored validation mIoU, patience, and the deadline, in one place.

    Training steps stop in time for the validation pass to end by `deadline` (with `BatchDeadline`, mid-epoch);
    at an epoch's end, a remainder shorter than MIN_PARTIAL_EPOCH of an epoch is not started. The best weights
    are restored at the end of training.
    """

    def __init__(
        self,
        monitor: str,
        patience: int,
        deadline: float | None,
        clock=time.monotonic,
        on_plan=None,
        passes_after: int = 0,
    ):
        super().__init__()
        self.monitor, self.patience, self.deadline, self.clock = monitor, max(1, patience), deadline, clock
        self.on_plan, self.passes_after = on_plan, passes_after
        self.best, self.best_epoch, self.best_weights = -math.inf, 0, None
        self.wait, self.stop_reason, self.epoch_seconds = 0, "epochs", []
        self.validation_seconds, self.cut_epoch = 0.0, False

    def set_baseline(self, value: float, weights) -> None:
        """Count the untrained weights as epoch 0 with score `value`: an epoch must beat it to be kept."""
        self.best, self.best_epoch, self.best_weights = float(value), 0, weights

    @property
    def full_epochs(self) -> list[float]:
        """Seconds of the epochs that ran whole: all but a cut one, which is always the last."""
        return self.epoch_seconds[:-1] if self.cut_epoch else self.epoch_seconds

    def train_until(self) -> float | None:
        """When training steps must stop so that the validation pass, and the `passes_after` passes of the same
        size the caller runs after `fit`, still end by the deadline."""
        return None if self.deadline is None else self.deadline - (1 + self.passes_after) * self.validation_seconds

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = self.clock()

    def on_test_begin(self, logs=None):
        self._validation_started = self.clock()

    def on_test_end(self, logs=None):
        self.validation_seconds = self.clock() - self._validation_started

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        self.epoch_seconds.append(now - self._epoch_started)
        value = float((logs or {}).get(self.monitor, float("nan")))
        if value > self.best or self.best_weights is None:
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience and self.stop_reason != "budget":
                self.stop_reason = "patience"
                self.model.stop_training = True
        if self.deadline is not None and not self.cut_epoch:
            # The first epoch carries the graph tracing, so later ones are the better estimate of the training part.
            steady = self.full_epochs[1:] or self.full_epochs
            train_seconds = max(float(np.median(steady)) - self.validation_seconds, 1e-6)
            left = self.train_until() - now
            if self.on_plan is not None:
                # Each further epoch costs its training and a validation pass; the last one's pass is already kept
                # back in `left`, and it may be a partial epoch.
                validation = self.validation_seconds
                more = math.ceil((left + validation - MIN_PARTIAL_EPOCH * train_seconds) / (train_seconds + validation))
                self.on_plan(epoch + 1 + max(0, more))
            if left < MIN_PARTIAL_EPOCH * train_seconds and not self.model.stop_training:
                self.stop_reason = "budget"
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def samples_per_s(self, samples_per_epoch: int) -> float:
        """Training rate over the full epochs after the first (the first one traces the graph)."""
        steady = self.full_epochs[1:] or self.full_epochs
        return samples_per_epoch / float(np.median(steady)) if steady else 0.0


def make_optimizer(train_cfg: TrainConfig):
    if train_cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=train_cfg.learning_rate, weight_decay=train_cfg.weight_decay)
    if train_cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=train_cfg.learning_rate)
    raise ConfigError(f"train optimizer {train_cfg.optimizer!r} is not adam or adamw")


def warmup_cosine(epoch: int, base_lr: float, warmup: int, total: int, floor: float = 0.01) -> float:
    """Linear warm-up over `warmup` epochs, then cosine decay to `floor * base_lr` at epoch `total`."""
    if epoch < warmup:
        return base_lr * (epoch + 1) / (warmup + 1)
    progress = min(1.0, (epoch - warmup) / max(1, total - warmup))
    return base_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def schedule_callbacks(train_cfg: TrainConfig, monitor: str):
    """The learning-rate callback, and a function the guard calls with the epoch count the budget allows."""
    if train_cfg.schedule == "plateau":
        return keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode="max", factor=0.5, patience=max(1, train_cfg.patience // 3), min_lr=1e-5, verbose=0
        ), None
    if train_cfg.schedule == "cosine":
        plan = {"total": train_cfg.epochs}

        def update(affordable: int):
            plan["total"] = max(1, min(train_cfg.epochs, affordable))

        callback = keras.callbacks.LearningRateScheduler(
            lambda epoch: warmup_cosine(epoch, train_cfg.learning_rate, train_cfg.warmup_epochs, plan["total"])
        )
        return callback, update
    raise ConfigError(f"train schedule {train_cfg.schedule!r} is not plateau or cosine")


def jit_setting():
    """XLA under TensorFlow only with an accelerator: on a CPU it compiles for longer and steps slower (measured
    on the 2-core dev machine: 24 s vs 9 s to the first step, half the samples/s). JAX always compiles."""
    if keras.backend.backend() != "tensorflow":
        return "auto"
    from marsseg.training.distribute import accelerator_devices

    return "auto" if accelerator_devices() else False


def compile_model(model: keras.Model, stage_cfg: StageConfig, class_weights=None, num_classes: int = 5) -> str:
    """Compile with the stage's loss on every head and mIoU on the main head; return the monitored key."""
    from marsseg.models import aux_loss_weights
    from marsseg.training.losses import build_loss
    from marsseg.training.metrics import MeanIoU

    loss = build_loss(stage_cfg.loss, class_weights=class_weights, num_classes=num_classes)
    names = list(model.output_names)
    if len(names) > 1:
        weights = aux_loss_weights(stage_cfg.model, len(names) - 1)
        model.compile(
            optimizer=make_optimizer(stage_cfg.train),
            loss={n: loss for n in names},
            loss_weights=dict(zip(names, weights)),
            metrics={names[0]: [MeanIoU(num_classes=num_classes, name="miou")]},
            jit_compile=jit_setting(),
            run_eagerly=stage_cfg.train.run_eagerly,
        )
        return f"val_{names[0]}_miou"
    model.compile(
        optimizer=make_optimizer(stage_cfg.train),
        loss=loss,
        metrics=[MeanIoU(num_classes=num_classes, name="miou")],
        jit_compile=jit_setting(),
        run_eagerly=stage_cfg.train.run_eagerly,
    )
    return "val_miou"


def fit_stage(
    stage_cfg: StageConfig,
    train_images: np.ndarray,
    train_masks: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    *,
    train_extras: np.ndarray | None = None,
    augment_cfg: AugmentConfig | None = None,
    seed: int = 42,
    deadline: float | None = None,
    name: str = "stage",
    class_weights=None,
    verbose: int | str = 2,
    log=print,
    num_classes: int = 5,
    clock=time.monotonic,
    passes_after: int = 0,
) -> StageResult:
    """Train one U-Net for one stage; stop at `deadline` (a `clock()` value) at the latest.

    Training batches come from `marsseg.prep.augment.sequence_from_config` on uint8 `train_images` with optional
    float32 `train_extras` channels (stage 2's probabilities); `augment_cfg=None` means no augmentation and
    no oversampling. `val_x` is the float32 network input. At least part of one epoch runs (a deadline that comes
    first cuts it short, and the last epoch is cut at the deadline); the best epoch's weights are kept.
    `passes_after`: predictions on `val_x` the caller makes after `fit` (stage 1's out-of-fold probabilities),
    whose time is kept back too.
    """
    from marsseg.models import build_unet
    from marsseg.prep.augment import sequence_from_config
    from marsseg.training.distribute import distribution_scope

    if len(train_images) == 0 or len(val_x) == 0:
        raise ConfigError(f"{name}: needs training and validation images, got {len(train_images)} and {len(val_x)}")
    channels = 1 + (0 if train_extras is None else train_extras.shape[-1])
    train_cfg = stage_cfg.train
    keras.utils.set_random_seed(seed)
    mixed = mixed_precision_wanted(train_cfg.mixed_precision)
    previous_policy = keras.config.dtype_policy().name
    if mixed:
        keras.config.set_dtype_policy("mixed_float16")
    started = clock()
    try:
        with distribution_scope() as replicas:
            if replicas.kind != "single":
                log(f"[marsseg] {name}: {replicas.describe()}")
            model = build_unet(stage_cfg.model, channels, num_classes, name=name)
            monitor = compile_model(model, stage_cfg, class_weights, num_classes)
            names = list(model.output_names) if len(model.output_names) > 1 else None
            plain = AugmentConfig(strength="none", bigrock_oversample=1.0, workers=1)
            source = sequence_from_config(
                train_images, train_masks, augment_cfg or plain, train_cfg.batch_size, extras=train_extras, seed=seed
            )
            targets = _per_head(val_y, names)
            lr_callback, on_plan = schedule_callbacks(train_cfg, monitor)
            guard = StageGuard(monitor, train_cfg.patience, deadline, clock, on_plan, passes_after)
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
                verbose=verbose,
                shuffle=False,
            )
            data, feeding = training_data(source, names, workers=(augment_cfg or plain).workers)
            deadline_check = [BatchDeadline(guard)] if deadline is not None else []
            records = model.fit(
                data,
                epochs=max(1, train_cfg.epochs),
                callbacks=[lr_callback, guard, *deadline_check, *feeding],
                **common,
            ).history
    finally:
        keras.config.set_dtype_policy(previous_policy)
    seconds = clock() - started
    epochs = len(guard.epoch_seconds)
    rate = guard.samples_per_s(len(source) * train_cfg.batch_size)
    return StageResult(
        model=model,
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
            "replicas": replicas.num_replicas,
            "baseline_val_miou": baseline,
            "epoch_seconds": [float(t) for t in guard.epoch_seconds],
            "full_epoch_seconds": [float(t) for t in guard.full_epochs],
            "validation_seconds": float(guard.validation_seconds),
            "cut_epoch": guard.cut_epoch,
        },
    )


_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def predict_probs(model: keras.Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Main-head class probabilities (N, 64, 128, K) float32; the auxiliary heads are not evaluated."""
    from marsseg.models import main_head

    # One head view per model, so Keras traces its predict function once however often we call. (Not an
    # attribute of the model: Keras would track the view as a sub-layer of the model it wraps.)
    head = _HEADS.get(model)
    if head is None:
        head = _HEADS[model] = main_head(model)
    return np.asarray(head.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
