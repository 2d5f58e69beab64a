"""The gated U-Net: configurable depth and width, batch norm, dropout, attention gates, deep supervision.

Random initialisation only: nothing here can load pretrained weights (the competition forbids them).
"""

from __future__ import annotations

import keras
from keras import layers

from marsseg.config import ModelConfig, dilation_rates, rules_of
from marsseg.errors import ConfigError
from marsseg.models.blocks import AttentionGate, ConvBlock, ResidualRefinementHead, SegmentationHead, norm_layer
from marsseg.models.context import ContextBlock

IMAGE_SHAPE = (64, 128)


def context_rates(model_cfg: ModelConfig) -> tuple[int, ...]:
    """The context block's dilation rates from the comma-separated setting."""
    return dilation_rates(model_cfg.context_rates)


def check_model_config(model_cfg: ModelConfig, input_channels: int, num_classes: int) -> None:
    """Raise ConfigError with the fix when a setting cannot make a network: the schema's choices and ranges of
    ModelConfig (`config.schema`), then what the network needs of its inputs."""
    rules, defaults = rules_of(ModelConfig), ModelConfig()
    for name, rule in rules.items():
        value = getattr(model_cfg, name)
        if rule.checked and not rule.admits(value):
            allowed, example = rule.allowed(integer=isinstance(value, int)), getattr(defaults, name)
            problem = "is not a choice" if rule.choices else "is out of range"
            raise ConfigError(
                f"model {name} {value!r} {problem}; {name} must be {allowed} (e.g. --set stage1.model.{name}={example})"
            )
    if model_cfg.residual and input_channels < 1 + num_classes:
        raise ConfigError(
            f"model residual=true refines stage-1 probabilities, so it needs the image plus "
            f"{num_classes} probability channels ({1 + num_classes} in all), got {input_channels}; "
            f"it is for stage 2 only (--set stage2.model.residual=true)"
        )
    if model_cfg.context != "none":
        try:
            rates = context_rates(model_cfg)
        except ValueError:
            rates = ()
        if not rates or min(rates) < 1:
            raise ConfigError(
                f"model context_rates must be {rules['context_rates'].form} (e.g. {defaults.context_rates}), "
                f"got {model_cfg.context_rates!r}"
            )
    if input_channels < 1 or num_classes < 2:
        raise ConfigError(f"a U-Net needs >= 1 input channel and >= 2 classes, got {input_channels} and {num_classes}")


def build_unet(
    model_cfg: ModelConfig, input_channels: int, num_classes: int = 5, name: str = "unet", sync_norm: bool = False
) -> keras.Model:
    """A U-Net on (64, 128, input_channels) float32 images giving (B, 64, 128, num_classes) softmax probabilities.

    Encoder level i (0 = full resolution) has `base_filters * 2**i` filters; `depth` poolings lead to the
    bottleneck. With `input_stride` 2 a strided stem convolution comes first and every level works at half the
    resolution; the heads upsample back to full size. With `deep_supervision` the outputs are the list
    `[main, aux1, ..., aux{depth-1}]`: `aux{i}` is a softmax head on decoder level i (1/2**i resolution),
    upsampled to full size. Only `main` is for prediction.
    `sync_norm`: every batch norm takes its statistics over the global batch, all data-parallel replicas together
    (`blocks.GlobalBatchNormalization`); `fit` sets it when it trains on several devices.
    With `residual` (stage 2: input channels 1..num_classes are stage-1 probabilities) the main head adds a learned,
    zero-initialised correction to the log of those probabilities: untrained, the network returns them unchanged.
    """
    check_model_config(model_cfg, input_channels, num_classes)
    depth, base = model_cfg.depth, model_cfg.base_filters
    norm = dict(batch_norm=model_cfg.batch_norm, norm_momentum=model_cfg.norm_momentum, sync_norm=sync_norm)
    block = dict(dropout=model_cfg.dropout, **norm)

    inputs = keras.Input(shape=(*IMAGE_SHAPE, input_channels), dtype="float32", name="image")
    x = inputs
    stride = model_cfg.input_stride
    if stride > 1:
        x = layers.Conv2D(
            base,
            3,
            strides=stride,
            padding="same",
            use_bias=not model_cfg.batch_norm,
            kernel_initializer="he_normal",
            name="stem",
        )(x)
        if model_cfg.batch_norm:
            x = norm_layer(sync_norm, momentum=model_cfg.norm_momentum, name="stem_norm")(x)
        x = layers.ReLU(name="stem_relu")(x)
    skips = []
    for level in range(depth):
        x = ConvBlock(base * 2**level, name=f"enc{level}", **block)(x)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = ConvBlock(base * 2**depth, name="bottleneck", **block)(x)
    if model_cfg.context == "aspp":
        x = ContextBlock(base * 2**depth, rates=context_rates(model_cfg), name="context", **norm)(x)

    decoder = {}
    for level in reversed(range(depth)):
        skip = skips[level]
        if model_cfg.attention:
            inter = max(base * 2**level // 2, 1)
            skip = AttentionGate(inter, name=f"gate{level}", **norm)([skip, x])
        up = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{level}")(x)
        x = layers.Concatenate(name=f"concat{level}")([up, skip])
        x = ConvBlock(base * 2**level, name=f"dec{level}", **block)(x)
        decoder[level] = x

    # Heads compute in float32 so softmax probabilities stay float32 under mixed precision.
    if model_cfg.residual:
        features = decoder[0]
        if stride > 1:
            features = layers.UpSampling2D(stride, interpolation="bilinear", name="stem_up")(features)
        main = ResidualRefinementHead(num_classes, prior_start=1, name="main", dtype="float32")([features, inputs])
    else:
        main = SegmentationHead(num_classes, scale=stride, name="main", dtype="float32")(decoder[0])
    if not model_cfg.deep_supervision:
        return keras.Model(inputs, main, name=name)
    aux = [
        SegmentationHead(num_classes, scale=stride * 2**level, name=f"aux{level}", dtype="float32")(decoder[level])
        for level in range(1, depth)
    ]
    return keras.Model(inputs, [main, *aux], name=name)


def num_aux_heads(model_cfg: ModelConfig) -> int:
    return model_cfg.depth - 1 if model_cfg.deep_supervision else 0


def aux_loss_weights(model_cfg: ModelConfig, n_aux: int | None = None) -> list[float]:
    """Loss weights `[main, aux1, ...]`: main 1.0, aux{i} gets `aux_loss_weight / 2**(i-1)`.

    Coarser heads see less detail, so their pull on the shared weights halves with each level.
    """
    n_aux = num_aux_heads(model_cfg) if n_aux is None else n_aux
    return [1.0] + [model_cfg.aux_loss_weight / 2**i for i in range(n_aux)]


def output_names(model: keras.Model) -> list[str]:
    """Names of the model's outputs in order: ['main'] or ['main', 'aux1', ...]."""
    return list(model.output_names)


def main_head(model: keras.Model) -> keras.Model:
    """A single-output view of `model` (same weights): the main head only, for prediction and TTA."""
    if not isinstance(model.output, (list, tuple)):
        return model
    return keras.Model(model.input, model.get_layer("main").output, name=f"{model.name}_main")


def main_output(outputs):
    """The main head's probabilities from a model's outputs (a list under deep supervision, else a tensor)."""
    if isinstance(outputs, dict):
        return outputs["main"]
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def predict_main(model: keras.Model, x, batch_size: int = 32, verbose=0):
    """Main-head class probabilities (N, 64, 128, K) as a numpy array."""
    return main_output(model.predict(x, batch_size=batch_size, verbose=verbose))


def targets_for(model: keras.Model, y):
    """The labels `y` once per output, as `fit` wants for a deep-supervised model (`y` itself otherwise)."""
    n = len(model.outputs)
    return y if n == 1 else tuple([y] * n)


def count_params(model: keras.Model) -> int:
    return int(model.count_params())
