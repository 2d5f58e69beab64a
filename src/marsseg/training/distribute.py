"""Data-parallel training when several accelerators are present (Kaggle's default here: two T4s), and what the
devices are (`gpu_compute_capabilities`, which decides mixed precision in `fit`).

    with distribution_scope() as replicas:      # build, compile AND fit inside the block
        model = build_unet(...); model.compile(...); model.fit(...)
    print(replicas.describe())

TensorFlow backend: `tf.distribute.MirroredStrategy`; JAX backend: `keras.distribution.DataParallel`;
anything else, or fewer than `min_devices` devices: a no-op. This is device plumbing, not model math, so it is the
one place that may import TensorFlow (lazily, only under that backend). The batch size given to `fit` stays the
global batch; each replica gets an equal share (keep it a multiple of `num_replicas` under JAX).

State that must see the whole batch, not one replica's share, needs care under MirroredStrategy: batch-norm
statistics (the models' `sync_norm`, set by `fit` when there are several replicas) and metric counts
(`add_over_replicas`). Keras 3.5.0 (Kaggle's image) creates every TensorFlow variable without an aggregation, so
under the strategy each replica keeps its own copy and a read returns replica 0's: measured on two logical CPUs, a
validation mIoU of replica 0's half of each batch (1.0 where the truth was 0.18), and, with either Keras, each
replica's batch-norm moving mean its own half's. JAX's DataParallel shards one global array and reduces over it.
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


def gpu_compute_capabilities() -> list[tuple[int, int] | None]:
    """(major, minor) CUDA compute capability of each GPU the backend sees; None where the backend does not say
    (a non-NVIDIA GPU, or a backend without the query). Empty without GPUs."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        details = [tf.config.experimental.get_device_details(d) for d in tf.config.list_physical_devices("GPU")]
        return [parse_capability(d.get("compute_capability")) for d in details]
    if backend == "jax":
        import jax

        try:
            gpus = jax.devices("gpu")
        except RuntimeError:  # jax raises when it has no GPU platform
            return []
        return [parse_capability(getattr(d, "compute_capability", None)) for d in gpus]
    return [None for _ in accelerator_devices()]


def parse_capability(value) -> tuple[int, int] | None:
    """TensorFlow says (7, 5), JAX on CUDA "7.5": both as (7, 5); anything else as None."""
    try:
        if isinstance(value, str):
            major, minor = value.split(".")[:2]
            return int(major), int(minor)
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return int(value[0]), int(value[1])
    except ValueError:
        pass
    return None


def add_over_replicas(variable, value):
    """`variable.assign_add(value)` from inside a train or test step, counting every replica's `value`.

    A Keras variable that sums over replicas on read (TensorFlow ON_READ/SUM, today's Keras for metric variables)
    or on write (SUM) gets the local share, as it does anyway. One without an aggregation (Keras 3.5.0) would keep
    replica 0's share only, so the shares are summed over the replicas first and every copy adds the whole batch's.
    One device, a cross-replica context, or another backend: a plain add.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        aggregation = getattr(getattr(variable, "value", variable), "aggregation", None)
        if context is not None and context.num_replicas_in_sync > 1 and aggregation == tf.VariableAggregation.NONE:
            value = context.all_reduce(tf.distribute.ReduceOp.SUM, value)
    return variable.assign_add(value)


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
