"""Data-parallel training when several accelerators are present (Kaggle offers two T4s).

    with distribution_scope() as replicas:      # build, compile AND fit inside the block
        model = build_unet(...); model.compile(...); model.fit(...)
    print(replicas.describe())

TensorFlow backend: `tf.distribute.MirroredStrategy`; JAX backend: `keras.distribution.DataParallel`;
anything else, or fewer than `min_devices` devices: a no-op. This is device plumbing, not model math, so it is the
one place that may import TensorFlow (lazily, only under that backend). The batch size given to `fit` stays the
global batch; each replica gets an equal share (keep it a multiple of `num_replicas` under JAX).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Replicas:
    kind: str  # "mirrored" | "data_parallel" | "single"
    num_replicas: int = 1
    devices: tuple[str, ...] = ()
    strategy: object = field(default=None, compare=False, repr=False)  # tf strategy or keras Distribution

    def describe(self) -> str:
        if self.kind == "single":
            return "single device (no data parallelism)"
        how = "MirroredStrategy" if self.kind == "mirrored" else "keras DataParallel"
        return f"data parallel on {self.num_replicas} devices ({how}: {', '.join(self.devices)})"


def accelerator_devices() -> list[str]:
    """The GPUs the current Keras backend sees (names in that backend's spelling), without initialising others."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices("GPU")]
    if backend == "jax":
        try:
            return list(keras.distribution.list_devices("gpu"))
        except RuntimeError:  # jax raises when it has no GPU platform
            return []
    return []


@contextlib.contextmanager
def distribution_scope(devices: list[str] | None = None, min_devices: int = 2, enabled: bool = True):
    """Yield a `Replicas`; inside the block, variables and training are spread over `devices`.

    `devices=None` means every GPU. Passing CPU devices (e.g. two logical CPUs) is how tests exercise the path.
    """
    import keras

    backend = keras.backend.backend()
    if enabled:
        devices = accelerator_devices() if devices is None else list(devices)
    if not enabled or len(devices) < max(min_devices, 2):
        yield Replicas("single")
        return
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(devices=devices)
        with strategy.scope():
            yield Replicas("mirrored", strategy.num_replicas_in_sync, tuple(devices), strategy)
        return
    if backend == "jax":
        distribution = keras.distribution.DataParallel(devices=devices)
        with distribution.scope():
            yield Replicas("data_parallel", len(devices), tuple(devices), distribution)
        return
    yield Replicas("single")
