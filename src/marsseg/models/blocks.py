"""U-Net building blocks as serialisable Keras 3 layers (keras.ops only, any backend).

Each layer creates its sub-layers in `__init__` and builds them in `build`, so a `.keras` file reloads
with every weight in place before the first call. Sub-layers take their parent's dtype policy, so a model saved
under mixed precision reloads with the same precisions whatever the global policy is then.
`norm_momentum` defaults to Keras's 0.99 here, not `ModelConfig`'s 0.9, so a `.keras` file saved before the
setting existed reloads with the momentum it was trained with.
`sync_norm` (default False, so older files reload as they were): batch-norm statistics over the global batch when
training on several replicas (`GlobalBatchNormalization`).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from marsseg.models.dropout import ChannelDropout


@keras.saving.register_keras_serializable(package="marsseg")
class GlobalBatchNormalization(layers.BatchNormalization):
    """Batch norm whose training statistics are the whole batch's, over every replica of a data-parallel step.

    TensorFlow: `synchronized=True` (the moments are all-reduced across the distribution strategy's replicas; one
    device: its batch, in two extra sums). Without it each MirroredStrategy replica normalises by, and keeps as its
    moving statistics, its own share of the batch (measured: replica r's moving mean was exactly half r's mean).
    Other backends: plain batch norm (JAX's DataParallel already reduces over the global batch, and Keras refuses
    `synchronized` there), so a file saved under TensorFlow reloads on any backend.
    """

    def __init__(self, **kwargs):
        kwargs["synchronized"] = keras.backend.backend() == "tensorflow"
        super().__init__(**kwargs)


def norm_layer(sync: bool, **kwargs) -> layers.BatchNormalization:
    """Keras's batch norm, or with `sync` the global-batch one (for models trained on several replicas)."""
    return GlobalBatchNormalization(**kwargs) if sync else layers.BatchNormalization(**kwargs)


@keras.saving.register_keras_serializable(package="marsseg")
class ConvBlock(keras.layers.Layer):
    """Two 3×3 convolutions, each followed by batch norm (optional) and ReLU; spatial dropout between them."""

    def __init__(
        self,
        filters: int,
        dropout: float = 0.0,
        batch_norm: bool = True,
        kernel_size: int = 3,
        norm_momentum: float = 0.99,
        sync_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.norm_momentum = float(norm_momentum)
        self.sync_norm = bool(sync_norm)
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.kernel_size = int(kernel_size)
        # Without batch norm the convolution needs its own bias; with it the bias would be redundant.
        conv = dict(padding="same", use_bias=not self.batch_norm, kernel_initializer="he_normal")
        self.conv1 = layers.Conv2D(self.filters, self.kernel_size, name="conv1", dtype=self.dtype_policy, **conv)
        self.conv2 = layers.Conv2D(self.filters, self.kernel_size, name="conv2", dtype=self.dtype_policy, **conv)
        norm = dict(momentum=self.norm_momentum, dtype=self.dtype_policy)
        self.norm1 = norm_layer(self.sync_norm, name="norm1", **norm) if self.batch_norm else None
        self.norm2 = norm_layer(self.sync_norm, name="norm2", **norm) if self.batch_norm else None
        # Spatial dropout in one multiply (`ChannelDropout`; Keras's SpatialDropout2D makes two passes).
        self.drop = ChannelDropout(self.dropout, name="drop", dtype=self.dtype_policy) if self.dropout > 0 else None

    def build(self, input_shape):
        self.conv1.build(input_shape)
        mid = tuple(input_shape[:-1]) + (self.filters,)
        if self.norm1 is not None:
            self.norm1.build(mid)
            self.norm2.build(mid)
        if self.drop is not None:
            self.drop.build(mid)
        self.conv2.build(mid)
        self.built = True

    def call(self, x, training=None):
        x = self.conv1(x)
        if self.norm1 is not None:
            x = self.norm1(x, training=training)
        x = ops.relu(x)
        if self.drop is not None:
            x = self.drop(x, training=training)
        x = self.conv2(x)
        if self.norm2 is not None:
            x = self.norm2(x, training=training)
        return ops.relu(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "dropout": self.dropout,
            "batch_norm": self.batch_norm,
            "kernel_size": self.kernel_size,
            "norm_momentum": self.norm_momentum,
            "sync_norm": self.sync_norm,
        }


@keras.saving.register_keras_serializable(package="marsseg")
class AttentionGate(keras.layers.Layer):
    """Additive attention gate on a skip connection (Oktay et al. 2018, "Attention U-Net").

    Inputs `[skip, gate]`: `skip` (B, H, W, Cs) from the encoder, `gate` (B, H/2, W/2, Cg) from the decoder level
    below. Returns `skip * alpha` with alpha (B, H, W, 1) in (0, 1): the coarser, more semantic gate signal decides
    which skip pixels pass.
    """

    def __init__(
        self,
        inter_filters: int,
        batch_norm: bool = True,
        norm_momentum: float = 0.99,
        sync_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.inter_filters = int(inter_filters)
        self.norm_momentum = float(norm_momentum)
        self.sync_norm = bool(sync_norm)
        self.batch_norm = bool(batch_norm)
        # theta_x brings the skip down to the gate's resolution (stride 2), as in the paper.
        policy = self.dtype_policy
        self.theta_x = layers.Conv2D(
            self.inter_filters, 2, strides=2, padding="same", use_bias=False, name="theta_x", dtype=policy
        )
        self.phi_g = layers.Conv2D(self.inter_filters, 1, padding="same", name="phi_g", dtype=policy)
        self.psi = layers.Conv2D(1, 1, padding="same", name="psi", dtype=policy)
        # Nearest, not bilinear: TensorFlow's CPU gradient of a bilinear resize made the gates cost a third of a
        # training step (cpu preset: 2.9 s vs 1.9 s per batch of 32); the gate map is smooth enough either way.
        self.upsample = layers.UpSampling2D(2, interpolation="nearest", name="upsample", dtype=self.dtype_policy)
        self.norm = (
            norm_layer(self.sync_norm, name="norm", momentum=self.norm_momentum, dtype=self.dtype_policy)
            if self.batch_norm
            else None
        )

    def build(self, input_shape):
        skip_shape, gate_shape = input_shape
        self.theta_x.build(skip_shape)
        self.phi_g.build(gate_shape)
        inter = tuple(gate_shape[:-1]) + (self.inter_filters,)
        self.psi.build(inter)
        if self.norm is not None:
            self.norm.build(tuple(skip_shape))
        self.built = True

    def call(self, inputs, training=None):
        skip, gate = inputs
        f = ops.relu(self.theta_x(skip) + self.phi_g(gate))
        alpha = ops.sigmoid(self.psi(f))
        alpha = self.upsample(alpha)
        out = skip * alpha
        if self.norm is not None:
            out = self.norm(out, training=training)
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {
            **super().get_config(),
            "inter_filters": self.inter_filters,
            "batch_norm": self.batch_norm,
            "norm_momentum": self.norm_momentum,
            "sync_norm": self.sync_norm,
        }


@keras.saving.register_keras_serializable(package="marsseg")
class SegmentationHead(keras.layers.Layer):
    """1×1 convolution to class logits, bilinear upsampling by `scale`, softmax in float32 (safe under mixed
    precision)."""

    def __init__(self, num_classes: int, scale: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.scale = int(scale)
        self.classifier = layers.Conv2D(self.num_classes, 1, padding="same", name="classifier", dtype=self.dtype_policy)
        self.upsample = (
            layers.UpSampling2D(self.scale, interpolation="bilinear", name="upsample", dtype=self.dtype_policy)
            if self.scale > 1
            else None
        )

    def build(self, input_shape):
        self.classifier.build(input_shape)
        self.built = True

    def call(self, x):
        logits = self.classifier(x)
        if self.upsample is not None:
            logits = self.upsample(logits)
        return ops.softmax(ops.cast(logits, "float32"), axis=-1)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        scale = lambda n: None if n is None else n * self.scale  # noqa: E731
        return (b, scale(h), scale(w), self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "scale": self.scale}


@keras.saving.register_keras_serializable(package="marsseg")
class ResidualRefinementHead(keras.layers.Layer):
    """Stage 2's main head: softmax(log(prior) + correction), where `prior` is the class-probability channels of
    the network's own input and `correction` a 1×1 convolution of the decoder features, zero at initialisation.

    Inputs `[features, network_input]`; the prior is `network_input[..., prior_start:prior_start + num_classes]`.
    An untrained head reproduces the prior exactly, so the refinement starts at stage 1's quality and training
    learns only what to change; a stage 2 from scratch would spend its first epochs relearning stage 1.
    """

    def __init__(self, num_classes: int, prior_start: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.prior_start = int(prior_start)
        self.classifier = layers.Conv2D(
            self.num_classes,
            1,
            padding="same",
            kernel_initializer="zeros",
            bias_initializer="zeros",
            name="classifier",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        features_shape, input_shape_ = input_shape
        if input_shape_[-1] is not None and input_shape_[-1] < self.prior_start + self.num_classes:
            raise ValueError(
                f"the network input has {input_shape_[-1]} channels; a residual head needs the "
                f"{self.num_classes} prior probabilities from channel {self.prior_start} on"
            )
        self.classifier.build(features_shape)
        self.built = True

    def call(self, inputs):
        features, network_input = inputs
        prior = ops.cast(network_input[..., self.prior_start : self.prior_start + self.num_classes], "float32")
        # The floor keeps log finite where stage 1 gave a class (almost) nothing; 1e-4 still lets a correction
        # of about 9 logits bring it back.
        log_prior = ops.log(ops.maximum(prior, 1e-4))
        logits = ops.cast(self.classifier(features), "float32") + log_prior
        return ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        features_shape, _ = input_shape
        return tuple(features_shape[:-1]) + (self.num_classes,)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "prior_start": self.prior_start}
