"""What a training stage is fed: network inputs, and batches with their labels for every output head.

x = network_input(images, extras)                        # float32 (N, 64, 128, 1+E)
feed = training_data(source, names, epochs=E)            # for model.fit(feed.data, callbacks=[..., *feed.callbacks],
                                                         #               epochs=E, **feed.fit_options)
"""

from __future__ import annotations

import os
from typing import NamedTuple

import keras
import numpy as np

from marsseg.training.callbacks import NextEpoch


class Feed(NamedTuple):
    """What `fit` takes from `training_data`: the data, the callbacks it needs, and its `fit` keywords."""

    data: object
    callbacks: list
    fit_options: dict


def network_input(images: np.ndarray, extras: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, H, W) [+ float32 (N, H, W, E)] -> float32 (N, H, W, 1+E), the grey channel in [0, 1]
    (the same scaling as `marsseg.prep.augment`)."""
    x = images.astype(np.float32)[..., None] * np.float32(1.0 / 255.0)
    return x if extras is None else np.concatenate([x, extras.astype(np.float32, copy=False)], axis=-1)


def per_head(labels, names: list[str] | None):
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
        return xb, per_head(yb, self.names)

    def on_epoch_end(self):
        self.source.on_epoch_end()


def usable_cores() -> int:
    """The cores this process may run on (its affinity, e.g. one under `taskset`), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def batch_builders(workers: int) -> int:
    """How many batches to build at once: the preset's `augment.workers`, at most one per usable core.

    On one core a second builder only competes for it: pinned to one core, two builders trained at the rate of one
    at the median but now and then at 0.70-0.87x (the `workers` comparison of `marsseg_bench.throughput`, 12 pairs;
    docs/benchmarks.md). The batches are the same either way. (A container's CPU quota is not an affinity: there
    the machine's cores count.)
    """
    return max(1, min(int(workers), usable_cores()))


def training_data(source, names: list[str] | None, workers: int = 1, epochs: int = 1) -> Feed:
    """What `fit` trains on for up to `epochs` epochs: the batch source itself (a PyDataset) under JAX or PyTorch;
    under TensorFlow one tf.data pipeline over every epoch's batches, keyed by (epoch, batch), that calls the source
    through `numpy_function`, with `steps_per_epoch` for `fit`.

    Keras feeds a PyDataset to TensorFlow through `Dataset.from_generator`, which halved the training rate on
    the 2-core dev machine (cpu preset, stage 1: 25-29 img/s against 50-62 from numpy arrays, measured with
    precomputed batches); a `range(...).map(numpy_function)` pipeline runs at the numpy rate. One pipeline for the
    whole fit, not one per epoch: given a finite dataset without `steps_per_epoch`, Keras makes a new iterator at
    every epoch, and pinned to one core with the other core busy, an epoch's first batch then often waited about
    10 s (20-batch epochs of the cpu preset's stage 1: 9.5-9.9 s at each of 5 boundaries; none with one pipeline,
    none with the other core idle). The batches are the ones the source gives each epoch (`batch_at`), so a
    pipeline that runs ahead into the next epoch builds that epoch's.
    """
    if keras.backend.backend() != "tensorflow":
        # Keras reads the worker count off the dataset it is given: without it the wrapper would build every
        # batch on the training thread, one after another with the steps.
        return Feed(_Targets(source, names, workers=max(1, int(workers))), [], {})
    import tensorflow as tf

    first_x, first_y = source[0]
    x_spec, y_spec = (None, *first_x.shape[1:]), (None, *first_y.shape[1:])
    steps = len(source)

    def fetch(key):
        epoch, index = divmod(int(key), steps)
        x, y = source.batch_at(epoch, index)
        return x.astype(np.float32, copy=False), y.astype(np.int32, copy=False)

    def load(key):
        x, y = tf.numpy_function(fetch, [key], (tf.float32, tf.int32), stateful=True)
        x, y = tf.ensure_shape(x, x_spec), tf.ensure_shape(y, y_spec)
        return x, per_head(y, names)

    keys = tf.data.Dataset.range(steps * max(1, int(epochs)))
    if int(workers) <= 1:
        # One builder (one usable core): batches built in the step's thread, no tf.data threads. On one core those
        # only compete with the step, and replacing or dropping an iterator with them stalled about 10 s whenever
        # the other core was busy (the paired benchmarks' case; none with this pipeline, at the same step time).
        dataset = keys.map(load)
    else:
        dataset = keys.map(load, num_parallel_calls=int(workers), deterministic=True).prefetch(2)
    # The source still moves to each next epoch: what it reports (`epoch`) and its own `__getitem__` follow fit.
    return Feed(dataset, [NextEpoch(source)], {"steps_per_epoch": steps})
