"""A plain stack of same-length Conv1d-BN-SiLU layers: the smallest 1D baseline."""
from __future__ import annotations

import torch
import torch.nn as nn

from .common import Model1d, reinit_weights


class CNN1d(Model1d):
    """``(B, in_channels, T)`` -> conv stack (``hidden_dims``) -> average pool -> ``(B, num_classes)``.

    ``pool`` > 1 max-pools the time axis by that factor after every layer, which keeps deep stacks
    affordable on 4096-sample inputs.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1,
                 hidden_dims: tuple[int, ...] = (8, 16, 32, 64), kernel_size: int = 3,
                 pool: int = 1, reinit: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for dims in hidden_dims:
            layers += [nn.Conv1d(channels, dims, kernel_size, padding="same"),
                       nn.BatchNorm1d(dims), nn.SiLU()]
            if pool > 1:
                layers.append(nn.MaxPool1d(pool, ceil_mode=True))
            channels = dims
        self.features = nn.Sequential(*layers)
        self._num_features = channels
        self.classifier = nn.Linear(channels, num_classes)
        if reinit:
            reinit_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=-1)
