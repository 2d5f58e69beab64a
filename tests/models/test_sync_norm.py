"""sync_norm: every batch norm global across devices, through the config and the file; plain on one device."""

import re

import numpy as np
import pytest

from marsseg.config import ModelConfig
from tests.helpers.models import TINY, forward, images

keras = pytest.importorskip("keras")
from marsseg.models.unet import build_unet  # noqa: E402


def _norms(model):
    """Every batch-norm layer of a U-Net: top-level ones and those inside the blocks."""
    found = []
    for layer in model.layers:
        inner = [getattr(layer, name, None) for name in ("norm1", "norm2", "norm")] + list(getattr(layer, "norms", []))
        found += [n for n in [layer, *inner] if isinstance(n, keras.layers.BatchNormalization)]
    return found


SYNC_CFG = ModelConfig(**TINY, input_stride=2, context="aspp", attention=True, deep_supervision=True)


def test_sync_norm_makes_every_batch_norm_global_and_survives_config_and_file(tmp_path):
    from marsseg.models.blocks import GlobalBatchNormalization

    model = build_unet(SYNC_CFG, input_channels=1, sync_norm=True)
    norms = _norms(model)
    # stem, 2 in each of enc0, enc1, bottleneck, dec1, dec0, one per gate, 4 in the context block (1x1, 2 rates, global)
    assert len(norms) == 1 + 2 * 5 + 2 + 4
    assert all(isinstance(n, GlobalBatchNormalization) for n in norms)
    # Keras accepts `synchronized` under TensorFlow only; elsewhere the batch is global by itself.
    assert all(n.synchronized == (keras.backend.backend() == "tensorflow") for n in norms)
    twin = keras.Model.from_config(model.get_config())
    assert all(isinstance(n, GlobalBatchNormalization) for n in _norms(twin))
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.uniform(0.1, 0.2, w.shape).astype(w.dtype) for w in model.get_weights()])
    model.save(tmp_path / "sync.keras")
    reloaded = keras.models.load_model(tmp_path / "sync.keras", compile=False)  # on one device
    assert all(isinstance(n, GlobalBatchNormalization) for n in _norms(reloaded))
    x = images(2)
    for a, b in zip(forward(model, x), forward(reloaded, x)):
        np.testing.assert_array_equal(a, b)
    plain = build_unet(SYNC_CFG, input_channels=1)
    assert not any(isinstance(n, GlobalBatchNormalization) for n in _norms(plain))
    assert plain.get_layer("enc0").get_config()["sync_norm"] is False


def test_a_file_saved_before_sync_norm_existed_reloads(tmp_path):
    import zipfile

    model = build_unet(SYNC_CFG, input_channels=1)
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as new, zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in new.infolist():
            data = new.read(item)
            if item.filename == "config.json":
                text = data.decode()
                data = re.sub(r',\s*"sync_norm": (true|false)', "", text).encode()
                assert "sync_norm" in text and b"sync_norm" not in data
            old.writestr(item, data)
    reloaded = keras.models.load_model(tmp_path / "old.keras", compile=False)
    assert reloaded.get_layer("enc0").sync_norm is False and reloaded.get_layer("context").sync_norm is False
    x = images(2)
    for a, b in zip(forward(model, x), forward(reloaded, x)):
        np.testing.assert_array_equal(a, b)


def test_global_batch_norm_on_one_device_is_plain_batch_norm():
    from marsseg.models.blocks import GlobalBatchNormalization

    x = np.random.default_rng(0).normal(2.0, 3.0, (4, 8, 16, 3)).astype(np.float32)
    plain, synced = keras.layers.BatchNormalization(momentum=0.5), GlobalBatchNormalization(momentum=0.5)
    outs = [keras.ops.convert_to_numpy(layer(x, training=True)) for layer in (plain, synced)]
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-4)
    for a, b in zip(plain.non_trainable_weights, synced.non_trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
