"""The context bottleneck (ASPP with a global branch): shapes, identity at start, learning, save/reload, settings."""

import numpy as np
import pytest

from marsseg.config import ModelConfig
from marsseg.errors import ConfigError

keras = pytest.importorskip("keras")
from marsseg.models import ContextBlock, build_unet  # noqa: E402
from marsseg.models.unet import count_params  # noqa: E402

TINY = dict(depth=2, base_filters=4, attention=False, deep_supervision=False)


def _x(shape=(2, 8, 16, 8), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("rates", [(2,), (2, 4), (1, 3, 6)])
def test_block_keeps_the_shape_and_starts_as_the_identity(rates):
    x = _x()
    block = ContextBlock(8, rates=rates)
    out = keras.ops.convert_to_numpy(block(x, training=False))
    assert out.shape == x.shape
    np.testing.assert_allclose(out, x, atol=1e-6)  # zero-initialised projection: nothing added yet
    # one 1x1 branch, one per rate, the global branch, the projection
    assert len(block.branches) == 1 + len(rates)


def test_the_global_branch_carries_image_level_context():
    """With the projection moved off zero, changing pixels far away changes every output pixel (global mean)."""
    block = ContextBlock(4, rates=(2,), batch_norm=False)
    x = _x((1, 8, 16, 4))
    block(x)
    rng = np.random.default_rng(3)
    block.project.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in block.project.get_weights()])
    far = x.copy()
    far[:, 7, 15, :] += 10.0  # one corner pixel, out of reach of a rate-2 3x3 at pixel (0, 0)
    before = keras.ops.convert_to_numpy(block(x))[0, 0, 0]
    after = keras.ops.convert_to_numpy(block(far))[0, 0, 0]
    assert not np.allclose(before, after)


def test_unet_with_aspp_reloads_with_identical_predictions(tmp_path):
    cfg = ModelConfig(**TINY, context="aspp", context_rates="2,4")
    model = build_unet(cfg, input_channels=1)
    assert any(layer.name == "context" for layer in model.layers)
    plain = build_unet(ModelConfig(**TINY), input_channels=1)
    assert count_params(model) > count_params(plain)
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.uniform(0.1, 0.2, w.shape).astype(w.dtype) for w in model.get_weights()])
    x = np.random.default_rng(0).random((2, 64, 128, 1), dtype=np.float32)
    path = tmp_path / "aspp.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(reloaded(x, training=False)),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(context="dense"), "model context 'dense'"),
        (dict(context="aspp", context_rates="0,2"), "context_rates"),
        (dict(context="aspp", context_rates="two"), "context_rates"),
        (dict(context="aspp", context_rates=""), "context_rates"),
    ],
)
def test_bad_context_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        build_unet(ModelConfig(**TINY, **settings), input_channels=1)
