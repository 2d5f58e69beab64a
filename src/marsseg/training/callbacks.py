"""The Keras callbacks of a training stage: the deadline, patience and best epoch, and the epoch clock of a feed.

    guard = StageGuard("val_miou", patience=12, deadline=budget.deadline(300))
    model.fit(..., callbacks=[guard, BatchDeadline(guard)])    # best weights restored at the end

The guard keeps time on its `clock` (a `time.monotonic` value for `deadline`); `BatchDeadline` cuts the last
epoch mid-way so it uses the time up to the deadline.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from marsseg.training.metrics import switchable_metrics


class NextEpoch(keras.callbacks.Callback):
    """Advances a batch source to its next epoch (new order, new augmentation seeds) when `fit` does not."""

    def __init__(self, source):
        super().__init__()
        self.source = source

    def on_epoch_end(self, epoch, logs=None):
        self.source.on_epoch_end()


class ValidationMetrics(keras.callbacks.Callback):
    """Compiled metrics with a `counting` switch (`metrics.MeanIoU`) count validation batches only.

    Keras traces a step at its first call: the train step is traced with counting off, the test step (inside
    `on_test_begin`/`on_test_end`) with it on, and it is back on after `fit`. The training logs' metric then stays
    at its reset value, so it is dropped from the training logs (a log line `miou: 0.0000` would read as a broken
    model; this callback runs before Keras's own History and progress bar, which read the same dict); validation's
    is unchanged. On the cpu preset's stage 1 the per-step update cost about 1% of a step on one core
    (marsseg_bench.throughput "metric"), more where its serial argmax waits for a core."""

    def _switch(self, on: bool):
        for metric in switchable_metrics(self.model):
            metric.counting = on

    def on_train_begin(self, logs=None):
        self._switch(False)

    def on_test_begin(self, logs=None):
        self._switch(True)

    def on_test_end(self, logs=None):
        self._switch(False)

    def on_train_end(self, logs=None):
        self._switch(True)

    def on_train_batch_end(self, batch, logs=None):
        self._drop_training_miou(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._drop_training_miou(logs)

    @staticmethod
    def _drop_training_miou(logs):
        for key in [k for k in (logs or {}) if k.endswith("miou") and not k.startswith("val_")]:
            logs.pop(key)


# A remainder shorter than this share of an epoch is not started: its validation pass would cost about as much.
MIN_PARTIAL_EPOCH = 0.3
# The training batches that time a network's step before its first validation pass (the first ones trace it),
# and how many times faster than training a prediction pass is taken to be then: a cautious guess (the bench's
# models table measures about 5x: 1073 against 215 images/s) that the first validation pass replaces.
PROBE_BATCHES = (2, 8)
PREDICT_PER_TRAIN = 3.0


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
        self.guard.probe(batch)
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
        replan=None,
        validation_rows: int = 0,
    ):
        super().__init__()
        self.monitor, self.patience, self.deadline, self.clock = monitor, max(1, patience), deadline, clock
        self.on_plan, self.passes_after = on_plan, passes_after
        # replan(images per second of this network's validation pass, seconds of this epoch's training part,
        # steady) -> a new deadline, or None to keep it: what the caller must do after training (stage 2's test
        # prediction; stage 1's passes and stage 2) is known better once this network's own speeds are measured.
        # `steady` is False for a pass that also traced the test function (slower than the ones after it).
        self.replan, self.validation_rows, self._passes, self.baseline_traced = replan, validation_rows, 0, False
        self.best, self.best_epoch, self.best_weights = -math.inf, 0, None
        self.wait, self.stop_reason, self.epoch_seconds = 0, "epochs", []
        self.validation_seconds, self.cut_epoch = 0.0, False
        self.steps, self.batch_size = 0, 0  # of a training epoch, for `probe` (set by the fit that uses it)

    def set_baseline(self, value: float, weights) -> None:
        """Count the untrained weights as epoch 0 with score `value`: an epoch must beat it to be kept."""
        self.best, self.best_epoch, self.best_weights = float(value), 0, weights
        self.baseline_traced = True  # the baseline's evaluation traced the test function

    @property
    def full_epochs(self) -> list[float]:
        """Seconds of the epochs that ran whole: all but a cut one, which is always the last."""
        return self.epoch_seconds[:-1] if self.cut_epoch else self.epoch_seconds

    def probe(self, batch: int) -> None:
        """Before any validation pass of the first epoch: time batches PROBE_BATCHES and replan from them (steady
        None: a guessed rate, `PREDICT_PER_TRAIN` times the training one), so the plan is not blind for a whole
        epoch, the longest part of a short run on a slow machine."""
        if self.replan is None or self.deadline is None or self._passes or self.baseline_traced or not self.steps:
            return
        first, last = PROBE_BATCHES
        if batch == first:
            self._probe_started = self.clock()
        elif batch == last and getattr(self, "_probe_started", None) is not None:
            per_batch = max((self.clock() - self._probe_started) / (last - first), 1e-9)
            rate = PREDICT_PER_TRAIN * self.batch_size / per_batch
            # Until a validation pass is timed, its own time (and the caller's passes after fit) at that guess.
            self.validation_seconds = self.validation_seconds or self.validation_rows / rate
            planned = self.replan(rate, per_batch * self.steps, None)
            self.deadline = self.deadline if planned is None else planned

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
        self._passes += 1
        # The first pass traces the test function, unless a baseline evaluation already did (set_baseline).
        steady = self._passes > 1 or self.baseline_traced
        if self.replan is not None and self.deadline is not None and self.validation_seconds > 0:
            started = getattr(self, "_epoch_started", None)  # None: the baseline evaluation before any epoch
            train = None if started is None or self.cut_epoch else self._validation_started - started
            planned = self.replan(self.validation_rows / self.validation_seconds, train, steady)
            self.deadline = self.deadline if planned is None else planned

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
