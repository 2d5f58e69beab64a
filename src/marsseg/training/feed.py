"""What a training stage is fed: network inputs, and batches with their labels for every output head.

x = network_input(images, extras)                   # float32 (N, 64, 128, 1+E)
data, callbacks = training_data(source, names)      # for model.fit(data, callbacks=[..., *callbacks])
"""

from __future__ import annotations

import os

import keras
import numpy as np

from marsseg.training.callbacks import NextEpoch


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
        return x, per_head(y, names)

    dataset = tf.data.Dataset.range(len(source)).map(load, num_parallel_calls=max(1, int(workers)), deterministic=True)
    return dataset.prefetch(2), [NextEpoch(source)]
