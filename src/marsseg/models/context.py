"""A context bottleneck: atrous spatial pyramid pooling with a global branch (DeepLab v3), keras.ops only.

The U-Net's bottleneck sees the whole image at 1/2**depth resolution but through 3×3 convolutions only; the
strongest public solutions of this competition added context there (ASPP, a dilated pyramid, global pooling).
Branches: a 1×1 convolution, 3×3 convolutions at each dilation rate, and the image mean through a 1×1
convolution broadcast back over the map; each with batch norm and ReLU, concatenated, projected by a 1×1
convolution and added to the input, so an untrained block starts close to the plain bottleneck's output.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from marsseg.models.blocks import norm_layer


@keras.saving.register_keras_serializable(package="marsseg")
class ContextBlock(keras.layers.Layer):
    """(B, H, W, C) -> (B, H, W, C): x + project(concat(1×1, dilated 3×3 at each rate, global mean))."""

    def __init__(
        self,
        filters: int,
        rates: tuple[int, ...] = (2, 4),
        batch_norm: bool = True,
        norm_momentum: float = 0.99,
        sync_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.rates = tuple(int(r) for r in rates)
        self.batch_norm = bool(batch_norm)
        self.norm_momentum = float(norm_momentum)
        self.sync_norm = bool(sync_norm)  # global-batch statistics over data-parallel replicas (blocks.py)
        policy = self.dtype_policy
        conv = dict(padding="same", use_bias=not self.batch_norm, kernel_initializer="he_normal", dtype=policy)
        self.branches = [layers.Conv2D(self.filters, 1, name="branch_1x1", **conv)]
        self.branches += [
            layers.Conv2D(self.filters, 3, dilation_rate=r, name=f"branch_rate{r}", **conv) for r in self.rates
        ]
        self.global_conv = layers.Conv2D(self.filters, 1, name="branch_global", **conv)
        # Zero-initialised projection: the block adds nothing until it has learned something.
        self.project = layers.Conv2D(
            self.filters, 1, padding="same", kernel_initializer="zeros", name="project", dtype=policy
        )
        n = len(self.branches) + 1
        self.norms = (
            [norm_layer(self.sync_norm, momentum=self.norm_momentum, name=f"norm{i}", dtype=policy) for i in range(n)]
            if self.batch_norm
            else []
        )

    def build(self, input_shape):
        if input_shape[-1] != self.filters:
            raise ValueError(f"ContextBlock({self.filters}) needs {self.filters} input channels, got {input_shape[-1]}")
        branch_shape = tuple(input_shape[:-1]) + (self.filters,)
        for conv in self.branches:
            conv.build(input_shape)
        self.global_conv.build((input_shape[0], 1, 1, input_shape[-1]))
        for norm in self.norms:
            norm.build(branch_shape)
        self.project.build(tuple(input_shape[:-1]) + (self.filters * (len(self.branches) + 1),))
        self.built = True

    def _norm_relu(self, i: int, x, training):
        if self.norms:
            x = self.norms[i](x, training=training)
        return ops.relu(x)

    def call(self, x, training=None):
        outputs = [self._norm_relu(i, conv(x), training) for i, conv in enumerate(self.branches)]
        pooled = self.global_conv(ops.mean(x, axis=(1, 2), keepdims=True))
        pooled = self._norm_relu(len(self.branches), pooled, training)
        outputs.append(pooled * ops.ones_like(x[..., :1]))  # broadcast the image-level context over the map
        return x + self.project(ops.concatenate(outputs, axis=-1))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "rates": list(self.rates),
            "batch_norm": self.batch_norm,
            "norm_momentum": self.norm_momentum,
            "sync_norm": self.sync_norm,
        }
