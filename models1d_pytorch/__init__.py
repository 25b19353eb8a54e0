"""1D networks on the raw waveform: ``(B, 3, 4096)`` in, ``(B, num_classes)`` logits out.

All accept ``forward(x, lam=None, idx=None)``; with ``lam``/``idx`` the waveforms are mixed in-batch
first (the in-model mixup hook).
"""
from .cnn1d import CNN1d
from .common import Model1d, SamePadConv1d, mix_batch, reinit_weights
from .densenet1d import DenseNet1d, densenet121_1d, densenet201_1d
from .resnet1d import ResidualBlock1d, ResNet1d
from .wavenet1d import GatedWaveBlock, SimplifiedWaveBlock, WaveNet1d, make_wave_block

ResNet1D = ResNet1d  # the competition code's spelling

__all__ = ["CNN1d", "Model1d", "SamePadConv1d", "mix_batch", "reinit_weights", "DenseNet1d",
           "densenet121_1d", "densenet201_1d", "ResidualBlock1d", "ResNet1d", "ResNet1D",
           "GatedWaveBlock", "SimplifiedWaveBlock", "WaveNet1d", "make_wave_block"]
