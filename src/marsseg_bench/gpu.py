"""`make gpu-check` (and `make bench` on a machine with a GPU): a canary of the `kaggle` preset on full-size
synthetic data, its speeds per stage, and its full run projected (`pipeline.canary`).

Under JAX each network compiles for a minute or more (measured on an H100), so the canary trains one fold model
per network of the model cycle for a few epochs; the steady epochs give the projection.

Where the Keras backend sees no GPU the section measures nothing and BENCHMARKS.md keeps the block it had, so
`make bench` on a laptop does not erase numbers taken on a GPU box. On a GPU image without TensorFlow, run it with
`KERAS_BACKEND=jax` (see README, "GPU timings").
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from marsseg.config import preset
from marsseg.data.synth import make_synthetic, save_synthetic
from marsseg.training.distribute import accelerator_devices

N_TRAIN, N_TEST = 2615, 10022  # the real data's sizes: test prediction is timed at full size


def nvidia_gpu_names() -> list[str]:
    """The NVIDIA GPUs nvidia-smi lists (none where it is missing or fails); no deep-learning backend is asked."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def accelerator_name() -> str | None:
    """The first GPU's name (nvidia-smi where it exists, else the backend's device name); None without a GPU."""
    devices = accelerator_devices()
    if not devices:
        return None
    names = nvidia_gpu_names()
    return f"{len(devices)} × {names[0] if names else devices[0]}"


def gpu_here(section: str, log) -> str | None:
    """The GPU a GPU section measures on; None (and a log line) where the Keras backend sees none."""
    gpu = accelerator_name()
    if gpu is None:
        log(f"{section}: the Keras backend sees no GPU here; the section is left as it was")
    return gpu


class CompileCounter:
    """Counts JAX's backend compilations, with its cache-miss explanations logged (why each one compiled), and
    snapshots the count at each phase line of the run's log: compiles per phase, then per epoch. Counts nothing
    under other backends (`counting` False)."""

    def __init__(self):
        import keras

        self.count, self.at_phase, self.current = 0, {}, None
        self.counting = keras.backend.backend() == "jax"
        if self.counting:
            import jax

            jax.config.update("jax_explain_cache_misses", True)  # each miss's reason goes to JAX's log (stderr)
            jax.monitoring.register_event_duration_secs_listener(self._event)

    def _event(self, event: str, duration: float, **_) -> None:
        if event.endswith("backend_compile_duration"):
            self.count += 1
            if self.current is not None:
                self.at_phase[self.current] = self.at_phase.get(self.current, 0) + 1

    def phase(self, line: str) -> None:
        """Follow a `[marsseg] hh:mm:ss PHASE | ...` line: later compilations count towards PHASE."""
        match = re.match(r"\[marsseg\] \d\d:\d\d:\d\d ([a-z0-9 ]+?)(?: fold \d+)?(?: \||$)", line)
        if match:
            self.current = match.group(1)


def section_gpu(
    repeats: int,
    log,
    gpu: str | None = None,
    preset_name: str = "kaggle",
    budget: float = 360.0,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    require_gpu: bool = True,
) -> str | None:
    """`make gpu-check`: a canary of the preset (`pipeline.canary`: every network of the model cycle, stage 2,
    prediction, both CSVs, cut to `budget` seconds) on full-size synthetic data, on the GPU the Keras backend
    sees: images/s and compile seconds per stage, compilations per epoch (JAX), peak GPU memory, the projected
    full run. None (the block stays) where the backend sees no GPU, unless `require_gpu` is off (the dry mode)."""
    import keras

    from marsseg.config import override
    from marsseg.pipeline.canary import report_lines
    from marsseg.pipeline.run import run

    if gpu is None:
        gpu = gpu_here("gpu", log) if require_gpu else (accelerator_name() or "no GPU (dry mode, on the CPU)")
        if gpu is None:
            return None
    sets = ["canary.enabled=true", f"canary.budget_seconds={budget:g}", f"require_gpu={require_gpu}"]
    sets += [] if require_gpu else ["canary.epochs=2"]  # the dry mode: the least that still gives a steady epoch
    cfg = override(preset(preset_name), sets)
    counter = CompileCounter()
    lines = []

    def follow(line):
        counter.phase(line)
        lines.append(line)
        log(line)

    tmp = Path(tempfile.mkdtemp(prefix="marsseg-gpu-check-"))
    try:
        log(f"gpu: synthetic data {n_train} train + {n_test} test")
        save_synthetic(make_synthetic(n_train, n_test, seed=5), tmp / "data.npz")
        started = time.monotonic()
        metrics = run(cfg, tmp / "data.npz", tmp / "run", log=follow, submissions_dir=None, verbose=0)
        wall = time.monotonic() - started
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = report_lines(metrics)
    epochs = {"stage1": sum(len(t["epoch_seconds"]) for t in metrics["canary"]["measured"]["stage1"])}
    epochs["stage2"] = len((metrics["canary"]["measured"].get("stage2") or {}).get("epoch_seconds", []))
    if counter.counting:
        per_epoch = ", ".join(
            f"{stage} {counter.at_phase.get(stage, 0)} in {n} epochs" for stage, n in epochs.items() if n
        )
        compiles = f"JAX backend compilations: {counter.count} in all; {per_epoch} (cache-miss reasons in the log)."
    else:
        compiles = f"Compilations are counted under JAX only (backend here: {keras.backend.backend()})."
    size = "full-size" if (n_train, n_test) == (N_TRAIN, N_TEST) else "small"
    return "\n".join(
        [
            (
                f"## On a GPU: a canary of the `{preset_name}` preset"
                if require_gpu
                else "## Dry run of `make gpu-check`"
            )
            + f" ({gpu}, Keras backend {keras.backend.backend()})",
            "",
            f"`make gpu-check`: the `{preset_name}` preset's canary (`marsseg submit --canary` runs the same on "
            f"Kaggle) on {size} synthetic data ({n_train} training, {n_test} test images, seed 5), "
            f"{budget:.0f} s budget, {wall:.0f} s in all.",
            "",
            "```",
            *report,
            "```",
            "",
            compiles,
        ]
    )
