"""WaveNet-style dilated blocks and the WaveNet1d classifier (the competition's Seq12 models).

The blocks are shared with ``frontends.WaveNetSpectrogram``, which stacks one block per image
channel to learn a time-frequency image from the waveform.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .common import Model1d

WAVE_BLOCKS = ("none", "gated", "simplified")


def _entry_conv(in_channels: int, num_filters: int, downsample: bool | int) -> nn.Conv1d:
    """1x1 projection, or a strided conv (kernel stride+1) dividing the length by ``downsample``.

    ``True`` means a factor 2; ``False``, 0 or 1 mean no downsampling.
    """
    factor = 2 if downsample is True else int(downsample or 1)
    if factor <= 1:
        return nn.Conv1d(in_channels, num_filters, kernel_size=1)
    return nn.Conv1d(in_channels, num_filters, kernel_size=factor + 1, stride=factor,
                     padding=factor // 2)


class GatedWaveBlock(nn.Module):
    """WaveNet block: per dilation 1, 2, ..., 2**(num_layers-1) a gated unit
    ``tanh(conv(x)) * sigmoid(conv(x))`` and a 1x1 conv; the block returns the entry projection plus
    the sum of every layer's output (``wave_block='none'``, the plain WaveNet block)."""

    def __init__(self, num_layers: int, in_channels: int, num_filters: int, kernel_size: int,
                 downsample: bool | int = False):
        super().__init__()
        self.entry = _entry_conv(in_channels, num_filters, downsample)
        self.filter_convs = nn.ModuleList()
        self.gate_convs = nn.ModuleList()
        self.out_convs = nn.ModuleList()
        for i in range(num_layers):
            self.filter_convs.append(nn.Conv1d(num_filters, num_filters, kernel_size,
                                               dilation=2 ** i, padding="same"))
            self.gate_convs.append(nn.Conv1d(num_filters, num_filters, kernel_size,
                                             dilation=2 ** i, padding="same"))
            self.out_convs.append(nn.Conv1d(num_filters, num_filters, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(x)
        total = x
        for filt, gate, out in zip(self.filter_convs, self.gate_convs, self.out_convs):
            x = out(torch.tanh(filt(x)) * torch.sigmoid(gate(x)))
            total = total + x
        return total


class SimplifiedWaveBlock(nn.Module):
    """Ungated variant: per dilation BN-ReLU-dilated conv-BN-ReLU-1x1 conv, outputs summed with the
    entry projection (``wave_block='simplified'``)."""

    def __init__(self, num_layers: int, in_channels: int, num_filters: int, kernel_size: int,
                 downsample: bool | int = False):
        super().__init__()
        self.entry = _entry_conv(in_channels, num_filters, downsample)
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm1d(num_filters), nn.ReLU(),
                nn.Conv1d(num_filters, num_filters, kernel_size, dilation=2 ** i, padding="same"),
                nn.BatchNorm1d(num_filters), nn.ReLU(),
                nn.Conv1d(num_filters, num_filters, kernel_size=1))
            for i in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(x)
        total = x
        for layer in self.layers:
            x = layer(x)
            total = total + x
        return total


def make_wave_block(kind: str, num_layers: int, in_channels: int, num_filters: int,
                    kernel_size: int, downsample: bool | int = False) -> nn.Module:
    """``kind``: 'simplified' (ungated BN-ReLU) or 'none' / 'gated' (the WaveNet gated block)."""
    if kind == "simplified":
        return SimplifiedWaveBlock(num_layers, in_channels, num_filters, kernel_size, downsample)
    if kind in ("none", "gated"):
        return GatedWaveBlock(num_layers, in_channels, num_filters, kernel_size, downsample)
    raise ValueError(f"unknown wave_block {kind!r}; use one of {', '.join(WAVE_BLOCKS)}")


class WaveNet1d(Model1d):
    """A chain of wave blocks (each followed by batch norm) -> ReLU -> average pool -> linear.

    ``downsample`` is one value for every block or a tuple with one per block (True halves the
    length, an int divides it).
    """

    def __init__(self, in_chans: int = 3, hidden_dims: tuple[int, ...] = (16, 32, 64, 128),
                 wave_layers: tuple[int, ...] = (12, 8, 4, 1), wave_block: str = "none",
                 kernel_size: int = 3, num_classes: int = 1, reinit: bool = False,
                 downsample: bool | int | tuple = False):
        super().__init__()
        if len(hidden_dims) != len(wave_layers):
            raise ValueError(f"WaveNet1d: hidden_dims {hidden_dims} and wave_layers {wave_layers} "
                             "need the same length (one entry per block)")
        if not isinstance(downsample, (tuple, list)):
            downsample = (downsample,) * len(hidden_dims)
        if len(downsample) != len(hidden_dims):
            raise ValueError(f"WaveNet1d: downsample {downsample} needs one entry per block "
                             f"({len(hidden_dims)})")
        layers: list[nn.Module] = []
        channels = in_chans
        for dims, n_layers, down in zip(hidden_dims, wave_layers, downsample):
            layers += [make_wave_block(wave_block, n_layers, channels, dims, kernel_size, down),
                       nn.BatchNorm1d(dims)]
            channels = dims
        layers.append(nn.ReLU())
        self._set_features(layers, channels, num_classes, reinit)
