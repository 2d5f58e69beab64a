"""Networks: the gated U-Net with deep supervision (`build_unet`) and its blocks. Random init only."""

from marsseg.models.blocks import AttentionGate, ConvBlock, ResidualRefinementHead, SegmentationHead
from marsseg.models.context import ContextBlock
from marsseg.models.unet import (
    aux_loss_weights,
    build_unet,
    check_model_config,
    count_params,
    main_head,
    main_output,
    num_aux_heads,
    output_names,
    predict_main,
    targets_for,
)

__all__ = [
    "AttentionGate",
    "ContextBlock",
    "ConvBlock",
    "ResidualRefinementHead",
    "SegmentationHead",
    "aux_loss_weights",
    "build_unet",
    "check_model_config",
    "count_params",
    "main_head",
    "main_output",
    "num_aux_heads",
    "output_names",
    "predict_main",
    "targets_for",
]
