"""A run's trained networks as `.keras` files: the one way the kit saves and loads a model.

    save_run_model(result.model, out_dir / "model_stage1_fold1.keras")   # atomic; weights only, no optimizer
    model = load_run_model(out_dir / "model_stage1_fold1.keras")           # compile=False, the kit's layers

`load_run_model` is the only model loader the kit allows (the rules check accepts no other), and it loads a file
the kit itself trained and wrote: never pretrained weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras


def custom_objects() -> dict:
    """The kit's own layers by their registered names (`marsseg>Name`) and plain names. They are registered on
    import too; the explicit table keeps a load working whatever was imported before it."""
    from marsseg.models import AttentionGate, ContextBlock, ConvBlock, ResidualRefinementHead, SegmentationHead
    from marsseg.models.blocks import GlobalBatchNormalization  # what a model trained on several replicas holds

    layers = (AttentionGate, ContextBlock, ConvBlock, GlobalBatchNormalization, ResidualRefinementHead)
    layers += (SegmentationHead,)
    table = {cls.__name__: cls for cls in layers}
    table.update({keras.saving.get_registered_name(cls): cls for cls in layers})
    return table


def save_run_model(model: keras.Model, path) -> Path:
    """Write `model` (architecture and weights; no optimizer state, a third of the bytes) to `path`, a `.keras`
    file, through a temporary name in the same folder, so a reader never sees half a file. `model` may be a
    `reuse.FoldModel`: that fold's weights, under its own name."""
    from marsseg.training.reuse import keras_model

    name = model.name  # a FoldModel's own; its shared network has the first fold's
    model = keras_model(model)
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a run model is saved as a .keras file")
    path.parent.mkdir(parents=True, exist_ok=True)
    # An uncompiled view on the same layers: Keras saves a compiled model's optimizer slots too (Adam's two per
    # weight: 98 MB instead of 33 MB for a `kaggle` stage-1 network, measured), which prediction never needs.
    view = keras.Model(model.inputs, model.outputs if len(model.outputs) > 1 else model.outputs[0], name=name)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")  # Keras wants the .keras suffix
    try:
        view.save(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def load_run_model(path) -> keras.Model:
    """A model written by `save_run_model` (or `model.save`), uncompiled, ready to predict."""
    return keras.saving.load_model(str(path), custom_objects=custom_objects(), compile=False)
