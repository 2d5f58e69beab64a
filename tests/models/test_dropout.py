"""ChannelDropout: whole channels per sample, scaled by 1 / (1 - rate); identity at inference; config and file."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from marsseg.models.blocks import ConvBlock  # noqa: E402
from marsseg.models.dropout import ChannelDropout  # noqa: E402


def _x(seed=0, shape=(64, 6, 5, 8)):
    return np.random.default_rng(seed).random(shape, dtype=np.float32) + 0.5  # no zeros of its own


def test_inference_is_the_identity():
    x = _x()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ChannelDropout(0.4)(x, training=False)), x)


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5])
def test_training_drops_whole_channels_per_sample_and_scales_the_rest(rate):
    x = _x()
    out = keras.ops.convert_to_numpy(ChannelDropout(rate, seed=1)(x, training=True))
    ratio = out / x  # (B, H, W, C): 0 or 1 / (1 - rate) everywhere
    per_channel = ratio[:, :1, :1, :]
    np.testing.assert_allclose(ratio, np.broadcast_to(per_channel, ratio.shape), rtol=1e-6)
    kept = per_channel != 0
    np.testing.assert_allclose(per_channel[kept], 1 / (1 - rate), rtol=1e-6)
    dropped = float(np.mean(per_channel == 0))
    assert abs(dropped - rate) < 0.1  # 512 sample-channel draws
    # Samples differ: the mask is not one channel pattern for the whole batch.
    assert len({tuple(row) for row in per_channel[:, 0, 0, :] > 0}) > 1


def test_mean_is_preserved_over_many_draws():
    x = np.ones((2000, 1, 1, 4), np.float32)
    out = keras.ops.convert_to_numpy(ChannelDropout(0.3, seed=2)(x, training=True))
    assert abs(float(out.mean()) - 1.0) < 0.05


def test_rate_out_of_range_is_refused():
    with pytest.raises(ValueError, match="rate"):
        ChannelDropout(1.0)


def test_config_round_trip_and_a_conv_block_with_dropout_reloads(tmp_path):
    layer = ChannelDropout.from_config(ChannelDropout(0.2, seed=3, name="d").get_config())
    assert (layer.rate, layer.seed, layer.name) == (0.2, 3, "d")
    inputs = keras.Input((16, 16, 2))
    model = keras.Model(inputs, ConvBlock(4, dropout=0.2, name="block")(inputs))
    assert isinstance(model.get_layer("block").drop, ChannelDropout)
    path = str(tmp_path / "m.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    x = _x(shape=(2, 16, 16, 2))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        atol=1e-6,
    )
