"""The optimizer and its learning-rate schedule for one training stage (`fit.compile_model`, `fit.fit_stage`).

    model.compile(optimizer=make_optimizer(cfg.stage1.train), ...)
    lr_callback, on_plan = schedule_callbacks(cfg.stage1.train, "val_miou")

`cosine` warms up linearly, then decays to 1% of the peak at the epoch count the deadline allows (the stage guard
calls `on_plan` with it); `plateau` halves the rate when the monitored mIoU stalls.
"""

from __future__ import annotations

import math

import keras

from marsseg.config import TrainConfig, either, rule_of
from marsseg.errors import ConfigError


def make_optimizer(train_cfg: TrainConfig):
    ema = {"use_ema": True, "ema_momentum": train_cfg.ema_momentum} if train_cfg.ema_momentum > 0 else {}
    if train_cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=train_cfg.learning_rate, weight_decay=train_cfg.weight_decay, **ema)
    if train_cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=train_cfg.learning_rate, **ema)
    raise ConfigError(
        f"train optimizer {train_cfg.optimizer!r} is not {either(rule_of(TrainConfig, 'optimizer').choices)}"
    )


def ema_swap(train_cfg: TrainConfig) -> list:
    """Keras's swap of the averaged weights into the model for validation and epoch ends, where EMA is on."""
    return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if train_cfg.ema_momentum > 0 else []


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
    raise ConfigError(
        f"train schedule {train_cfg.schedule!r} is not {either(rule_of(TrainConfig, 'schedule').choices)}"
    )
