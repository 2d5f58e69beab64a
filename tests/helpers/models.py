"""Small helpers for the model tests: eager forward passes and random images."""

import keras
import numpy as np

# The smallest U-Net the tests build: two levels of four filters.
TINY = dict(depth=2, base_filters=4)


def forward(model, x):
    """Inference outputs as numpy (a list under deep supervision); eager, so tiny tests skip tracing."""
    out = model(x, training=False)
    return (
        [keras.ops.convert_to_numpy(o) for o in out]
        if isinstance(out, (list, tuple))
        else keras.ops.convert_to_numpy(out)
    )


def images(n=3, channels=1, seed=0):
    return np.random.default_rng(seed).random((n, 64, 128, channels), dtype=np.float32)
