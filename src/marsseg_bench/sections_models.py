"""The `models` section of `make bench`: parameters and seconds per batch of the presets' two U-Nets."""

from __future__ import annotations

import numpy as np

from marsseg.config import preset
from marsseg_bench.timing import median_seconds


def section_models(
    repeats: int, log, presets=("cpu", "gpu"), batch: int = 32, device: str = "this CPU", mixed_precision: bool = False
) -> str:
    """Parameters and seconds per batch (training step = forward + backward + update; inference) of the
    presets' stage-1 and stage-2 U-Nets, compiled as training compiles them (loss on every head); with
    `mixed_precision`, under the mixed_float16 policy that training uses on a GPU."""
    import keras

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (batch, 64, 128))
    previous_policy = keras.config.dtype_policy().name
    if mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        rows = [
            _network_row(name, stage, channels, batch, repeats, rng, labels, log)
            for name in presets
            for stage, channels in (("stage1", 1), ("stage2", 6))
        ]
    finally:
        keras.config.set_dtype_policy(previous_policy)
    precision = "mixed_float16" if mixed_precision else "float32"
    return "\n".join(
        [
            f"## Networks on {device} (batch {batch}, {precision}, Keras backend {keras.backend.backend()})",
            "",
            f"Median of {repeats} batches ({max(2, repeats // 2)} for base width ≥ 32) after one untimed tracing call. "
            "Training step: forward + backward + AdamW update with the preset's loss on every deep-supervision head.",
            "",
            "| preset | stage | depth | base filters | input stride | parameters | train step | train img/s | "
            "inference | infer img/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )


def _network_row(name, stage, channels, batch, repeats, rng, labels, log) -> str:
    import keras

    from marsseg.models import aux_loss_weights, build_unet, main_head, targets_for
    from marsseg.training.losses import build_loss

    cfg = getattr(preset(name), stage)
    log(f"models: {name} {stage}")
    keras.utils.set_random_seed(0)
    model = build_unet(cfg.model, input_channels=channels, name=f"{name}_{stage}")
    model.compile(
        keras.optimizers.AdamW(1e-3),
        loss=[build_loss(cfg.loss)] * len(model.outputs),
        loss_weights=aux_loss_weights(cfg.model),
    )
    x = rng.random((batch, 64, 128, channels), dtype=np.float32)
    y = targets_for(model, labels)
    predictor = main_head(model)
    model.train_on_batch(x, y)  # the first call traces the graph: not timed
    predictor.predict_on_batch(x)
    n = max(2, repeats // 2) if cfg.model.base_filters >= 32 else repeats
    train_t, _ = median_seconds(lambda: model.train_on_batch(x, y), n)
    infer_t, _ = median_seconds(lambda: predictor.predict_on_batch(x), n)
    m = cfg.model
    return (
        f"| {name} | {stage} | {m.depth} | {m.base_filters} | {m.input_stride} | {model.count_params():,} | "
        f"{_seconds(train_t)} | {batch / train_t:.0f} | {_seconds(infer_t)} | {batch / infer_t:.0f} |"
    )


def _seconds(t: float) -> str:
    return f"{t:.2f} s" if t >= 0.1 else f"{t * 1000:.1f} ms"
