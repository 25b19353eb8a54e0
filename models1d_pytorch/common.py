"""Pieces every 1D network shares: 'same' padding, weight re-initialisation and the
``forward(x, lam=None, idx=None)`` contract of the mixup hooks (the mixing itself is in :mod:`mixing`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from g2net.mixing import mix_batch
from g2net.types import Features, Logits, Strain


def reinit_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions, unit/zero batch norms, zero linear biases (training from scratch)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


class SamePadConv1d(nn.Conv1d):
    """Conv1d whose output length is ``ceil(length / stride)`` for any kernel size and stride.

    PyTorch's ``padding='same'`` refuses strides above one; this pads (TensorFlow style, the extra
    sample on the right) so strided residual networks keep predictable lengths.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, dilation: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         dilation=dilation, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        stride, = self.stride
        span = self.dilation[0] * (self.kernel_size[0] - 1) + 1
        out_len = -(-length // stride)
        total = max(0, (out_len - 1) * stride + span - length)
        return super().forward(F.pad(x, (total // 2, total - total // 2)))


class SamePadMaxPool1d(nn.Module):
    """Max pooling with window = stride = ``kernel_size`` and output length ``ceil(length / k)``."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size <= 1:
            return x
        total = (-x.shape[-1]) % self.kernel_size
        x = F.pad(x, (total // 2, total - total // 2), value=float("-inf")) if total else x
        return F.max_pool1d(x, self.kernel_size)


class Model1d(nn.Module):
    """Base of the waveform classifiers: ``(B, C, T)`` in, ``(B, num_classes)`` logits out.

    Subclasses build ``self.classifier`` and implement :meth:`forward_features` returning pooled
    ``(B, features)``. ``forward(x, lam, idx)`` mixes the input waveforms in-batch before the
    network (what ``training_extras.MixupTrain2`` calls), like ``SpectroCNN`` does on its image;
    it returns logits either way.
    """

    classifier: nn.Module
    features: nn.Module

    def _set_features(self, layers: list[nn.Module], channels: int, num_classes: int,
                      reinit: bool) -> None:
        """``features`` = the layers, ``classifier`` = Linear(channels, num_classes)."""
        self.features = nn.Sequential(*layers)
        self._num_features = channels
        self.classifier = nn.Linear(channels, num_classes)
        if reinit:
            reinit_weights(self)

    def forward_features(self, x: Strain) -> Features:
        """Pooled ``(B, features)``: the time average of the feature map by default."""
        return self.features(x).mean(dim=-1)

    def forward(self, x: Strain, lam: torch.Tensor | float | None = None,
                idx: torch.Tensor | None = None) -> Logits:
        if lam is not None:
            x, _ = mix_batch(x, lam, idx)
        return self.classifier(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int = 0) -> None:
        """Replace the last layer (``num_classes=0``: return the pooled features)."""
        in_features = self.num_features
        self.classifier = nn.Linear(in_features, num_classes) if num_classes else nn.Identity()

    @property
    def num_features(self) -> int:
        return self._num_features
