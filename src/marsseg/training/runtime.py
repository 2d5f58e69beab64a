"""What a run trains on: the devices the Keras backend sees, their compute capability, the precision and the
replica count (the first line of every run's log and `metrics.json`'s `runtime`), the refusal to train a GPU
preset on a CPU, and the GPUs' peak memory.

    facts = runtime_facts(cfg.stage1.train.mixed_precision)
    log(runtime_line(facts))       # Keras 3.13.2 on tensorflow 2.20.0; devices: 2 x Tesla T4 (7.5); replicas 2; ...
    require_gpu(cfg, facts)        # GpuMissing (exit 2) for the gpu and kaggle presets on a CPU

Device plumbing, like `distribute`: the backend's own device queries are imported lazily, under their backend.
"""

from __future__ import annotations

import importlib

from marsseg.config import TrainConfig, either, rule_of
from marsseg.errors import ConfigError, UserError
from marsseg.training import distribute

# How a user checks what the backend sees, per backend (for the refusal's one line).
CHECK_COMMANDS = {
    "tensorflow": "python -c \"import tensorflow as tf; print(tf.config.list_physical_devices('GPU'))\"",
    "jax": 'python -c "import jax; print(jax.devices())"',
    "torch": 'python -c "import torch; print(torch.cuda.is_available())"',
}


# Tensor cores, which make float16 pay, came with compute capability 7.0 (V100, then T4 7.5). A Pascal GPU (6.0) has
# none: float16 there only adds casts and loss scaling (shared/kaggle-api.md, "More facts").
MIXED_MIN_CAPABILITY = (7, 0)


def precision_choice(setting: str) -> tuple[bool, str]:
    """(mixed float16 or not, why) for a `train.mixed_precision` setting: "on" and "off" decide; "auto" means
    mixed float16 where every GPU has compute capability >= 7.0, float32 on CPUs and older GPUs."""
    choices = rule_of(TrainConfig, "mixed_precision").choices
    if setting not in choices:
        raise ConfigError(f"train mixed_precision {setting!r} is not {either(choices)}")
    if setting != "auto":
        return setting == "on", f"mixed_precision={setting}"
    if not distribute.accelerator_devices():
        return False, "no GPU"
    capabilities = distribute.gpu_compute_capabilities()
    known = [c for c in capabilities if c is not None]
    if not known:
        return True, "GPU compute capability unknown; assumed to have tensor cores"
    lowest = min(known)
    shown = ".".join(map(str, lowest))
    if lowest < MIXED_MIN_CAPABILITY:
        return False, f"mixed float16 off: GPU compute capability {shown} < 7.0 (no tensor cores)"
    return True, f"GPU compute capability {shown} >= 7.0"


class GpuMissing(UserError):
    """A preset that needs a GPU found none: refused before any data is loaded."""


def _gpu_names() -> list[str]:
    """Each GPU's model name as the backend reports it ("Tesla T4", "NVIDIA H200"); "GPU" where it does not say."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            details = [tf.config.experimental.get_device_details(d) for d in tf.config.list_physical_devices("GPU")]
            return [d.get("device_name") or "GPU" for d in details]
        if backend == "jax":
            import jax

            return [getattr(d, "device_kind", "") or "GPU" for d in jax.devices("gpu")]
    except (RuntimeError, ValueError):  # no GPU platform, or a driver that cannot be asked
        return []
    return ["GPU" for _ in distribute.accelerator_devices()]


def runtime_facts(mixed_precision: str = "auto") -> dict:
    """Keras, its backend and version, the GPUs (name and compute capability), how many replicas training uses
    (`distribute.distribution_scope`: every GPU when there are at least two) and the precision (`precision_choice`)."""
    import keras

    backend = keras.backend.backend()
    try:
        version = getattr(importlib.import_module(backend), "__version__", "") if backend != "numpy" else ""
    except ImportError:
        version = ""
    devices = distribute.accelerator_devices()
    names = _gpu_names()
    capabilities = distribute.gpu_compute_capabilities() if devices else []
    gpus = []
    for i, device in enumerate(devices):
        capability = capabilities[i] if i < len(capabilities) else None
        gpus.append(
            {
                "device": device,
                "name": names[i] if i < len(names) else "GPU",
                "compute_capability": ".".join(map(str, capability)) if capability else None,
            }
        )
    mixed, why = precision_choice(mixed_precision)
    return {
        "keras": keras.__version__,
        "backend": backend,
        "backend_version": version,
        "gpus": gpus,
        "replicas": len(devices) if len(devices) >= 2 else 1,
        "precision": "mixed_float16" if mixed else "float32",
        "precision_reason": why,
    }


def describe_devices(facts: dict) -> str:
    """'2 x Tesla T4 (compute capability 7.5)', or 'CPU only'."""
    if not facts["gpus"]:
        return "CPU only"
    kinds: dict[str, int] = {}
    for gpu in facts["gpus"]:
        shown = gpu["name"] + (
            f" (compute capability {gpu['compute_capability']})" if gpu["compute_capability"] else ""
        )
        kinds[shown] = kinds.get(shown, 0) + 1
    return ", ".join(f"{n} x {kind}" for kind, n in kinds.items())


def runtime_line(facts: dict) -> str:
    """The first line of a run's log: Keras and backend, the devices, the replica count and the precision (why)."""
    return (
        f"Keras {facts['keras']} on {facts['backend']} {facts['backend_version']}; devices: {describe_devices(facts)}; "
        f"replicas {facts['replicas']}; precision {facts['precision']} ({facts['precision_reason']})"
    )


def require_gpu(cfg, facts: dict) -> None:
    """GpuMissing when `cfg.require_gpu` is on and the backend sees no GPU: one line naming what was found, how to
    check it, and the setting that trains on the CPU anyway."""
    if not cfg.require_gpu or facts["gpus"]:
        return
    check = CHECK_COMMANDS.get(facts["backend"], "nvidia-smi")
    raise GpuMissing(
        f"preset {cfg.preset} needs a GPU (require_gpu=true), but Keras {facts['keras']} on {facts['backend']} "
        f"{facts['backend_version']} sees none (CPU only: a CPU-only build, or a CUDA/driver mismatch); nothing was "
        f"trained. Check with `nvidia-smi` and `{check}`; to train on the CPU anyway, --set require_gpu=false "
        '(in the kernel: OVERRIDES = ["require_gpu=false"])'
    )


def peak_gpu_bytes() -> int | None:
    """The largest peak memory of any GPU so far in this process (bytes); None without GPUs or where the backend
    does not say. TensorFlow counts from the last `reset_peak_gpu_memory`, JAX from the process start."""
    import keras

    backend = keras.backend.backend()
    peaks = []
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            for i, _ in enumerate(tf.config.list_physical_devices("GPU")):
                peaks.append(int(tf.config.experimental.get_memory_info(f"GPU:{i}")["peak"]))
        elif backend == "jax":
            import jax

            for device in jax.devices("gpu"):
                stats = device.memory_stats() or {}
                if "peak_bytes_in_use" in stats:
                    peaks.append(int(stats["peak_bytes_in_use"]))
    except (RuntimeError, ValueError):
        return None
    return max(peaks) if peaks else None


def reset_peak_gpu_memory() -> None:
    """Start the next stage's peak from here where the backend can (TensorFlow); a no-op elsewhere."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    for i, _ in enumerate(tf.config.list_physical_devices("GPU")):
        try:
            tf.config.experimental.reset_memory_stats(f"GPU:{i}")
        except (RuntimeError, ValueError):
            pass
