"""Spatial dropout as one multiply by a per-sample channel mask (keras.ops only, any backend).

Keras's `SpatialDropout2D` (under TensorFlow, its stateless dropout op) scales the whole tensor and then selects
between it and zeros: two passes over the activations forward and two back. Here the scale goes into
the (B, 1, 1, C) mask and the activations are touched once. The same distribution: each sample's channel is kept
with probability 1 - rate and scaled by 1 / (1 - rate); only the random draws differ.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="marsseg")
class ChannelDropout(keras.layers.Layer):
    """Drops whole channels of a (B, H, W, C) tensor in training, independently per sample; identity otherwise."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"ChannelDropout: rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            return x
        shape = ops.shape(x)
        draws = keras.random.uniform((shape[0], 1, 1, shape[-1]), seed=self.seed_generator)
        mask = ops.cast(draws >= self.rate, x.dtype) * ops.cast(1.0 / (1.0 - self.rate), x.dtype)
        return x * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
