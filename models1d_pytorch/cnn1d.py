"""A plain stack of Conv1d-BN-SiLU layers: the smallest 1D baseline, and the fast ``Demo`` model."""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from g2net.types import Features, Strain

from .common import Model1d, SamePadConv1d


def _per_layer(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    values = (value,) * n if isinstance(value, int) else tuple(value)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} layers")
    return values


class CNN1d(Model1d):
    """``(B, in_chans, T)`` -> conv stack (``hidden_dims``) -> pool -> ``(B, num_classes)``.

    ``kernel_size``, ``stride`` and ``pool`` are one value for every layer or one per layer. A
    strided first layer with a long kernel acts as a learned filter bank and cuts the cost of every
    later layer; ``pool`` > 1 max-pools the time axis after a layer. ``global_pool='max'`` keeps
    the strongest response anywhere in the window (a short chirp), ``'avg'`` averages.
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 1,
                 hidden_dims: tuple[int, ...] = (8, 16, 32, 64),
                 kernel_size: int | Sequence[int] = 3, pool: int | Sequence[int] = 1,
                 stride: int | Sequence[int] = 1, global_pool: str = "avg", reinit: bool = False):
        super().__init__()
        n = len(hidden_dims)
        kernels = _per_layer(kernel_size, n, "kernel_size")
        strides = _per_layer(stride, n, "stride")
        pools = _per_layer(pool, n, "pool")
        if global_pool not in ("avg", "max"):
            raise ValueError(f"global_pool must be 'avg' or 'max', not {global_pool!r}")
        layers: list[nn.Module] = []
        channels = in_chans
        for dims, kernel, step, pool_size in zip(hidden_dims, kernels, strides, pools):
            conv = (SamePadConv1d(channels, dims, kernel) if step == 1 else
                    nn.Conv1d(channels, dims, kernel, stride=step, padding=(kernel - step) // 2))
            layers += [conv, nn.BatchNorm1d(dims), nn.SiLU()]
            if pool_size > 1:
                layers.append(nn.MaxPool1d(pool_size, ceil_mode=True))
            channels = dims
        self.global_pool = global_pool
        self._set_features(layers, channels, num_classes, reinit)

    def forward_features(self, x: Strain) -> Features:
        features = self.features(x)
        return features.amax(dim=-1) if self.global_pool == "max" else features.mean(dim=-1)
