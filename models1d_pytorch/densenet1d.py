"""1D DenseNet on the raw waveform (the competition's Seq09 used ``densenet121_1d``).

Same block layout as torchvision's DenseNet-121/201, with 1D convolutions: a stride-2 stem and
max-pool, dense blocks of bottleneck layers (BN-ReLU-1x1, BN-ReLU-k) whose outputs are concatenated,
and BN-ReLU-1x1-AvgPool transitions that halve channels and time.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .common import Model1d


class DenseLayer1d(nn.Module):
    """One bottleneck layer producing ``growth_rate`` new channels."""

    def __init__(self, in_channels: int, growth_rate: int, bottleneck_size: int, kernel_size: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        if bottleneck_size > 0:
            width = growth_rate * bottleneck_size
            layers += [nn.BatchNorm1d(in_channels), nn.ReLU(inplace=True),
                       nn.Conv1d(in_channels, width, kernel_size=1, bias=False)]
        layers += [nn.BatchNorm1d(width), nn.ReLU(inplace=True),
                   nn.Conv1d(width, growth_rate, kernel_size, padding=kernel_size // 2, bias=False)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DenseBlock1d(nn.Module):
    """``num_layers`` dense layers, each seeing the concatenation of all earlier outputs."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, kernel_size: int,
                 bottleneck_size: int):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer1d(in_channels + i * growth_rate, growth_rate, bottleneck_size, kernel_size)
            for i in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class DenseNet1d(Model1d):
    """``(B, in_chans, T)`` -> ``(B, num_classes)`` logits."""

    def __init__(self, growth_rate: int = 32, block_config: tuple[int, ...] = (6, 12, 24, 16),
                 num_init_features: int = 64, bottleneck_size: int = 4, first_kernel_size: int = 7,
                 kernel_size: int = 3, in_chans: int = 3, num_classes: int = 1,
                 reinit: bool = True):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv1d(in_chans, num_init_features, first_kernel_size, stride=2,
                      padding=first_kernel_size // 2, bias=False),
            nn.BatchNorm1d(num_init_features), nn.ReLU(inplace=True),
            nn.MaxPool1d(kernel_size=3, stride=2, padding=1)]
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            layers.append(DenseBlock1d(num_layers, channels, growth_rate, kernel_size,
                                       bottleneck_size))
            channels += num_layers * growth_rate
            if i < len(block_config) - 1:
                layers += [nn.BatchNorm1d(channels), nn.ReLU(inplace=True),
                           nn.Conv1d(channels, channels // 2, kernel_size=1, bias=False),
                           nn.AvgPool1d(kernel_size=2, stride=2)]
                channels //= 2
        layers += [nn.BatchNorm1d(channels), nn.ReLU(inplace=True)]
        self._set_features(layers, channels, num_classes, reinit)


def densenet121_1d(in_chans: int = 3, num_classes: int = 1, **kwargs) -> DenseNet1d:
    """DenseNet-121 layout: blocks (6, 12, 24, 16), growth 32, 64 stem features."""
    return DenseNet1d(32, (6, 12, 24, 16), 64, in_chans=in_chans, num_classes=num_classes,
                      **kwargs)


def densenet201_1d(in_chans: int = 3, num_classes: int = 1, **kwargs) -> DenseNet1d:
    """DenseNet-201 layout: blocks (6, 12, 48, 32), growth 32, 64 stem features."""
    return DenseNet1d(32, (6, 12, 48, 32), 64, in_chans=in_chans, num_classes=num_classes,
                      **kwargs)
