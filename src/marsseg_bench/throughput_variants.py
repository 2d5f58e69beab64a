"""The variants `throughput` times: the kit's stage-1 network compiled as `fit_stage` compiles it, a plain Keras
U-Net of the same size, and versions of either with one thing swapped; `StepRunner` runs a burst of one.

    runner = StepRunner("kit", preset("cpu").stage1, images, masks, class_weights, batch=16, steps=10)
    seconds = runner.burst()
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

# The epoch-boundary variants split each burst's batches into this many epochs of one `fit` (the kit's stage 1 runs
# epochs of about 1,800 samples, the best-practice reference epochs of 6,675: the same fixed cost per epoch weighs
# about 3.7 times as much per kit sample), validating on VALIDATION_ROWS rows (a fold's out-of-fold rows at 2615
# images) after each where asked.
EPOCHS, VALIDATION_ROWS = 3, 570
# The spatial-dropout rate the dropout variants time where the stage has none (the cpu preset's stage 1 dropped its
# 0.05 under issue 27's paired runs; its stage 2 keeps 0.05), so those comparisons always time a dropout.
DROPOUT_PROBE = 0.05
VARIANTS = {
    "kit", "plain", "kit_counting", "kit_no_metric", "kit_plain_loss", "kit_dropout", "kit_no_dropout",
    "kit_keras_dropout",
    "fit_feed", "fit_feed_workers", "fit_arrays", "fit_callbacks", "fit_epochs", "fit_validated",
}  # fmt: skip


def blocky_rows(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` random uint8 images and blocky labels with every class, as the real masks are (so the class weights have
    all classes)."""
    images = rng.integers(0, 256, (n, 64, 128), dtype=np.uint8)
    masks = np.repeat(np.repeat(rng.integers(0, 5, (n, 8, 16), dtype=np.uint8), 8, axis=1), 8, axis=2)
    return images, masks


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
    from marsseg.training.optimizer import make_optimizer

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
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {sorted(VARIANTS)}")
    if name in ("kit", "kit_counting") or name.startswith("fit_"):
        model, _ = fit._network(stage_cfg, 1, num_classes, class_weights, False, Replicas("single"), name, None)
        return model
    from dataclasses import replace

    from marsseg.models import build_unet

    model_cfg = stage_cfg.model
    if name == "kit_no_dropout":
        model_cfg = replace(model_cfg, dropout=0.0)
    elif name in ("kit_dropout", "kit_keras_dropout"):
        model_cfg = replace(model_cfg, dropout=model_cfg.dropout or DROPOUT_PROBE)
    with _keras_dropout() if name == "kit_keras_dropout" else contextlib.nullcontext():
        model = build_unet(model_cfg, 1, num_classes, name=name)
    if name == "kit_no_metric":
        loss = build_loss(stage_cfg.loss, class_weights=class_weights, num_classes=num_classes)
    elif name in ("kit_plain_loss", "kit_dropout", "kit_no_dropout", "kit_keras_dropout"):
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(_optimizer(stage_cfg.train), loss=loss, jit_compile=fit.jit_setting())
    return model


@contextlib.contextmanager
def _keras_dropout():
    """Conv blocks built inside get Keras's SpatialDropout2D in place of the kit's `ChannelDropout`: the dropout
    the kit used before (a built layer's sub-layers cannot be swapped afterwards)."""
    import keras

    from marsseg.models import blocks

    kit_dropout = blocks.ChannelDropout
    blocks.ChannelDropout = lambda rate, **kwargs: keras.layers.SpatialDropout2D(rate, **kwargs)
    try:
        yield
    finally:
        blocks.ChannelDropout = kit_dropout


class StepRunner:
    """Runs `steps` training steps of one variant: `train_on_batch` on one fixed batch (the raw step), or one
    `fit` of `steps` batches (the feed and callback variants: one epoch; "fit_epochs" and "fit_validated": EPOCHS
    epochs of `steps / EPOCHS` batches, the latter validating after each)."""

    def __init__(self, name, stage_cfg, images, masks, class_weights, batch: int, steps: int, validation=None):
        from marsseg.training.feed import network_input

        self.name, self.batch, self.steps = name, batch, steps
        self.model = build_variant(name, stage_cfg, class_weights)
        self.x, self.y = network_input(images), masks.astype(np.int32)
        self.data, self.callbacks, self.epochs, self.fit_options = None, [], 1, {}
        if name != "kit_counting" and not name.startswith("fit_"):
            self._validation_only_metrics()
        if name in ("fit_epochs", "fit_validated"):
            # As many batches a burst as the one-epoch variants, as EPOCHS epochs over the first third of the images
            # (each epoch a new pass of the feed, as the kit's are); "fit_validated" also validates after each
            # epoch, as `fit_stage` does (without its guard and schedule callbacks: see `throughput` EPOCHS).
            if steps % EPOCHS:
                raise ValueError(f"{name} splits a burst in {EPOCHS} epochs: steps {steps} is not a multiple")
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
            feed = training_data(source, None, workers=workers, epochs=self.epochs)
            self.data, self.callbacks = feed.data, feed.callbacks
            # shuffle=False as `fit_stage` passes it: the feed shuffles where it is built (Keras warns otherwise)
            self.fit_options = {**self.fit_options, **feed.fit_options, "shuffle": False}
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
