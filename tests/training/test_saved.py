"""A run's models on disk: `save_run_model` (atomic, no optimizer state) and `load_run_model` (the one loader)."""

import zipfile

import numpy as np
import pytest


def _trained(stage: str, small_synthetic):
    """A smoke-size model after one real (compiled, optimised) epoch: batch-norm statistics and Adam slots set."""
    from dataclasses import replace

    from marsseg.config import preset
    from marsseg.training.context import StageContext, StageData
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage

    cfg = preset("smoke")
    stage_cfg = getattr(cfg, stage)
    stage_cfg = replace(stage_cfg, train=replace(stage_cfg.train, run_eagerly=False))  # traced, as on a GPU
    s = small_synthetic
    extras = None if stage == "stage1" else np.full((40, 64, 128, 5), 0.2, np.float32)
    val_x = network_input(s.images[32:40], None if extras is None else extras[32:])
    data = StageData(s.images[:32], s.masks[:32], val_x, s.masks[32:40], None if extras is None else extras[:32])
    result = fit_stage(stage_cfg, data, seed=5, context=StageContext(verbose=0))
    return result.model, val_x


@pytest.mark.parametrize("stage", ["stage1", "stage2"])  # multi-head at half resolution; residual single head
def test_a_saved_run_model_reloads_and_predicts_identically(tmp_path, small_synthetic, stage):
    from marsseg.training.fit import predict_probs
    from marsseg.training.saved import load_run_model, save_run_model

    model, x = _trained(stage, small_synthetic)
    path = save_run_model(model, tmp_path / "model.keras")
    assert path == tmp_path / "model.keras" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]
    reloaded = load_run_model(path)
    assert reloaded is not model and reloaded.output_names == model.output_names
    for a, b in zip(reloaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(predict_probs(reloaded, x), predict_probs(model, x))
    assert _top_groups(path) == {"layers"}, "no optimizer slots: prediction never needs them"
    assert model.optimizer is not None and model.optimizer.iterations.numpy() > 0  # the original stays compiled
    model.save(tmp_path / "compiled.keras")
    assert "optimizer" in _top_groups(tmp_path / "compiled.keras")  # what a plain model.save would have carried


def _top_groups(path) -> set:
    import io

    import h5py

    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        return {name for name in weights if len(weights[name])}  # non-empty groups only


def test_a_failed_save_leaves_the_previous_file_and_no_temporary(tmp_path, small_synthetic, monkeypatch):
    import keras

    from marsseg.config import ModelConfig
    from marsseg.models import build_unet
    from marsseg.training.saved import save_run_model

    model = build_unet(ModelConfig(depth=2, base_filters=4), 1)
    path = save_run_model(model, tmp_path / "m.keras")
    before = path.read_bytes()

    def half_written(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(b"PK half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_run_model(model, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.keras"]
    with pytest.raises(ValueError, match=".keras"):
        save_run_model(model, tmp_path / "m.h5")


def test_the_loader_knows_every_layer_of_the_kit():
    import inspect

    import keras

    import marsseg.models.blocks as blocks
    import marsseg.models.context as context
    from marsseg.training.saved import custom_objects

    layers = {
        cls
        for module in (blocks, context)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, keras.layers.Layer) and cls.__module__ == module.__name__
    }
    table = custom_objects()
    assert layers and layers <= set(table.values())
    assert all(table[f"marsseg>{cls.__name__}"] is cls for cls in layers)
