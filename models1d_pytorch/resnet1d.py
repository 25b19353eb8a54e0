"""Pre-activation 1D ResNeXt on the raw waveform (the competition's Seq00/Seq02/Seq03 models).

Layout after Hong et al.'s resnet1d: a stride-1 stem, ``n_block`` two-convolution residual blocks,
the time axis halved (``stride``) every ``downsample_gap`` blocks and the channels doubled every
``increasefilter_gap`` blocks; shortcuts are max-pooled and zero-padded on the channel axis.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from g2net.types import Features, Strain

from .common import Model1d, SamePadConv1d, SamePadMaxPool1d, reinit_weights


class ResidualBlock1d(nn.Module):
    """BN-ReLU-Dropout-Conv twice, with a pooled / channel-padded identity shortcut."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 groups: int, use_bn: bool = True, dropout: float = 0.0,
                 preactivate: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.preactivate = preactivate
        self.bn1 = nn.BatchNorm1d(in_channels) if use_bn and preactivate else nn.Identity()
        self.drop1 = nn.Dropout(dropout)
        self.conv1 = SamePadConv1d(in_channels, out_channels, kernel_size, stride=stride,
                                   groups=groups)
        self.bn2 = nn.BatchNorm1d(out_channels) if use_bn else nn.Identity()
        self.drop2 = nn.Dropout(dropout)
        self.conv2 = SamePadConv1d(out_channels, out_channels, kernel_size, stride=1, groups=groups)
        self.pool = SamePadMaxPool1d(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.preactivate:  # the first block follows the stem's activation directly
            out = self.drop1(F.relu(self.bn1(out)))
        out = self.conv1(out)
        out = self.conv2(self.drop2(F.relu(self.bn2(out))))
        shortcut = self.pool(x)
        extra = self.out_channels - self.in_channels
        if extra:
            shortcut = F.pad(shortcut, (0, 0, extra // 2, extra - extra // 2))
        return out + shortcut


class ResNet1d(Model1d):
    """1D ResNeXt classifier: ``(B, in_chans, T)`` -> ``(B, num_classes)`` logits.

    ``groups`` is the grouped-convolution cardinality (it must divide ``base_filters``);
    ``downsample_gap`` defaults to ``n_block // 8`` and ``increasefilter_gap`` to ``n_block // 4``
    (so 16 blocks halve the time axis 8 times and double the width 3 times).
    """

    def __init__(self, in_chans: int = 3, base_filters: int = 64, kernel_size: int = 16,
                 stride: int = 2, groups: int = 32, n_block: int = 16, num_classes: int = 1,
                 use_bn: bool = True, dropout: float = 0.0, downsample_gap: int | None = None,
                 increasefilter_gap: int | None = None, final_act: bool = True,
                 reinit: bool = False):
        super().__init__()
        self.downsample_gap = downsample_gap or max(1, n_block // 8)
        self.increasefilter_gap = increasefilter_gap or max(1, n_block // 4)
        self.use_bn, self.final_act = use_bn, final_act
        self.stem = SamePadConv1d(in_chans, base_filters, kernel_size, stride=1)
        self.stem_bn = nn.BatchNorm1d(base_filters) if use_bn else nn.Identity()
        blocks = []
        channels = base_filters
        for i in range(n_block):
            out_channels = channels * 2 if i > 0 and i % self.increasefilter_gap == 0 else channels
            block_stride = stride if i % self.downsample_gap == 1 else 1
            blocks.append(ResidualBlock1d(channels, out_channels, kernel_size, block_stride, groups,
                                          use_bn=use_bn, dropout=dropout, preactivate=i > 0))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.final_bn = nn.BatchNorm1d(channels) if use_bn and final_act else nn.Identity()
        self._num_features = channels
        self.classifier = nn.Linear(channels, num_classes)
        if reinit:
            reinit_weights(self)

    def forward_feature_map(self, x: Strain) -> Float[Tensor, "batch features time"]:
        """``(B, C, T)`` -> ``(B, channels, T / stride**n_downsamples)`` before pooling."""
        out = self.blocks(F.relu(self.stem_bn(self.stem(x))))
        if self.final_act:
            out = F.relu(self.final_bn(out))
        return out

    def forward_features(self, x: Strain) -> Features:
        return self.forward_feature_map(x).mean(dim=-1)
