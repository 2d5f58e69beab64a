"""Segmentation losses: thin serialisable `keras.losses.Loss` classes over the math in `functional.py`.

    loss = build_loss(cfg.stage1.loss, class_weights=class_weights(masks))   # e.g. "focal_tversky+focal"

Every loss takes integer labels (B, H, W) or (B, H, W, 1) and probabilities (B, H, W, K), returns a float32
scalar for the batch, and computes in float32 whatever the model's precision.
"""

from __future__ import annotations

import keras
import numpy as np

from marsseg.config import LOSS_TERMS, LossConfig, either, loss_terms, rule_of
from marsseg.errors import ConfigError
from marsseg.training import functional as F


class _SegmentationLoss(keras.losses.Loss):
    """Shared settings: number of classes, background ignoring, per-class weights (stored as a plain list)."""

    def __init__(
        self,
        num_classes: int = 5,
        ignore_background: bool = False,
        class_weights=None,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.num_classes = int(num_classes)
        self.ignore_background = bool(ignore_background)
        if class_weights is not None:
            class_weights = [float(w) for w in np.asarray(class_weights, dtype=np.float64).ravel()]
            if len(class_weights) != self.num_classes:
                raise ConfigError(
                    f"class weights have {len(class_weights)} values, the model has {self.num_classes} classes"
                )
        self.class_weights = class_weights

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "ignore_background": self.ignore_background,
            "class_weights": self.class_weights,
        }


@keras.saving.register_keras_serializable(package="marsseg")
class CrossEntropyLoss(_SegmentationLoss):
    def __init__(self, name="ce", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return F.cross_entropy_loss(y_true, y_pred, self.num_classes, self.class_weights, self.ignore_background)


@keras.saving.register_keras_serializable(package="marsseg")
class FocalLoss(_SegmentationLoss):
    def __init__(self, gamma: float = 2.0, name="focal", **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        return F.focal_loss(y_true, y_pred, self.num_classes, self.gamma, self.class_weights, self.ignore_background)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="marsseg")
class DiceLoss(_SegmentationLoss):
    def __init__(self, name="dice", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return F.dice_loss(y_true, y_pred, self.num_classes, self.class_weights, self.ignore_background)


@keras.saving.register_keras_serializable(package="marsseg")
class FocalTverskyLoss(_SegmentationLoss):
    def __init__(self, alpha: float = 0.7, beta: float = 0.3, gamma: float = 0.75, name="focal_tversky", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)

    def call(self, y_true, y_pred):
        return F.focal_tversky_loss(
            y_true,
            y_pred,
            self.num_classes,
            self.alpha,
            self.beta,
            self.gamma,
            self.class_weights,
            self.ignore_background,
        )

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="marsseg")
class LovaszSoftmaxLoss(_SegmentationLoss):
    """Lovász-softmax: a surrogate of 1 - IoU per class (`functional.lovasz_softmax_loss`)."""

    def __init__(self, name="lovasz", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return F.lovasz_softmax_loss(y_true, y_pred, self.num_classes, self.class_weights, self.ignore_background)


# The class of each loss term the schema allows (`config.schema.LOSS_TERMS`: ce, focal, dice, focal_tversky,
# lovasz), in its order.
LOSSES = dict(
    zip(LOSS_TERMS, (CrossEntropyLoss, FocalLoss, DiceLoss, FocalTverskyLoss, LovaszSoftmaxLoss), strict=True)
)
# Region losses (dice, focal_tversky, lovasz) average over classes, which already balances rare classes;
# inverse-frequency weights on top of that would count the imbalance twice, so only the per-pixel losses take them.
PIXEL_LOSSES = {"ce", "focal"}


def parse_loss_name(spec: str) -> list[tuple[float, str]]:
    """'focal_tversky+0.5*focal' -> [(1.0, 'focal_tversky'), (0.5, 'focal')]; ConfigError on anything else."""
    terms = loss_terms(spec)
    if terms is None:
        raise ConfigError(
            f"loss {spec!r} is not understood; write terms from {', '.join(LOSSES)} joined "
            f"by '+', each optionally weighted like '0.5*focal' (example: focal_tversky+focal)"
        )
    return terms


def _make(name: str, loss_cfg: LossConfig, class_weights, num_classes: int) -> _SegmentationLoss:
    common = dict(
        num_classes=num_classes,
        ignore_background=loss_cfg.ignore_background,
        class_weights=class_weights if name in PIXEL_LOSSES else None,
    )
    if name == "focal":
        return FocalLoss(gamma=loss_cfg.focal_gamma, **common)
    if name == "focal_tversky":
        return FocalTverskyLoss(
            alpha=loss_cfg.tversky_alpha, beta=loss_cfg.tversky_beta, gamma=loss_cfg.tversky_gamma, **common
        )
    return LOSSES[name](**common)


@keras.saving.register_keras_serializable(package="marsseg")
class SumLoss(_SegmentationLoss):
    """A weighted sum of the losses above, described by a spec like 'focal_tversky+focal' and one LossConfig."""

    def __init__(
        self,
        spec: str = "focal_tversky+focal",
        focal_gamma: float = 2.0,
        tversky_alpha: float = 0.7,
        tversky_beta: float = 0.3,
        tversky_gamma: float = 0.75,
        name=None,
        **kwargs,
    ):
        # Keras uses the name as a name scope, where '+' and '*' are not allowed.
        super().__init__(name=name or spec.replace(" ", "").replace("+", "_plus_").replace("*", "x"), **kwargs)
        self.spec = spec
        self.focal_gamma, self.tversky_alpha = float(focal_gamma), float(tversky_alpha)
        self.tversky_beta, self.tversky_gamma = float(tversky_beta), float(tversky_gamma)
        cfg = LossConfig(
            name=spec,
            ignore_background=self.ignore_background,
            focal_gamma=self.focal_gamma,
            tversky_alpha=self.tversky_alpha,
            tversky_beta=self.tversky_beta,
            tversky_gamma=self.tversky_gamma,
        )
        self.terms = [(w, _make(n, cfg, self.class_weights, self.num_classes)) for w, n in parse_loss_name(spec)]

    def call(self, y_true, y_pred):
        total = 0.0
        for weight, loss in self.terms:
            total = total + weight * loss.call(y_true, y_pred)
        return total

    def get_config(self):
        return {
            **super().get_config(),
            "spec": self.spec,
            "focal_gamma": self.focal_gamma,
            "tversky_alpha": self.tversky_alpha,
            "tversky_beta": self.tversky_beta,
            "tversky_gamma": self.tversky_gamma,
        }


def build_loss(loss_cfg: LossConfig, class_weights=None, num_classes: int = 5) -> keras.losses.Loss:
    """The loss named by `loss_cfg.name`. `class_weights` (K,) apply to ce/focal terms unless
    `loss_cfg.class_weights == "none"`; region terms (dice, focal_tversky) are class-balanced by construction."""
    choices = rule_of(LossConfig, "class_weights").choices
    if loss_cfg.class_weights not in choices:
        raise ConfigError(f"loss class_weights {loss_cfg.class_weights!r} is not {either(choices)}")
    weights = None if loss_cfg.class_weights == "none" else class_weights
    terms = parse_loss_name(loss_cfg.name)
    if len(terms) == 1 and terms[0][0] == 1.0:
        return _make(terms[0][1], loss_cfg, weights, num_classes)
    return SumLoss(
        spec=loss_cfg.name,
        focal_gamma=loss_cfg.focal_gamma,
        tversky_alpha=loss_cfg.tversky_alpha,
        tversky_beta=loss_cfg.tversky_beta,
        tversky_gamma=loss_cfg.tversky_gamma,
        num_classes=num_classes,
        ignore_background=loss_cfg.ignore_background,
        class_weights=weights,
    )
