"""Building blocks shared by the shapes detector and classifier."""
from __future__ import annotations

from mxnet.gluon import nn

STRIDE = 8
HEATMAP_BIAS = -2.19  # sigmoid(-2.19) ~ 0.1: CenterNet's prior for the heatmap logits


def conv_block(channels: int, strides: int = 1) -> nn.HybridSequential:
    """3x3 convolution (no bias) + batch norm + ReLU."""
    block = nn.HybridSequential()
    block.add(nn.Conv2D(channels, 3, strides=strides, padding=1, use_bias=False),
              nn.BatchNorm(), nn.Activation("relu"))
    return block
