"""Networks: the gated U-Net with deep supervision (`build_unet`) and its blocks. Random init only.

Exported here: what the rest of the package uses. The helpers only tests need stay in their modules (`models.unet`)."""

from marsseg.models.blocks import AttentionGate, ConvBlock, ResidualRefinementHead, SegmentationHead
from marsseg.models.context import ContextBlock
from marsseg.models.unet import aux_loss_weights, build_unet, main_head, targets_for

__all__ = [
    "AttentionGate",
    "ContextBlock",
    "ConvBlock",
    "ResidualRefinementHead",
    "SegmentationHead",
    "aux_loss_weights",
    "build_unet",
    "main_head",
    "targets_for",
]
