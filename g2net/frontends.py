"""Time-frequency front-ends: ``(batch, detectors, time)`` waveforms in, ``(batch, C, H, W)`` images out.

Two families:

* fixed transforms (their ``transform`` method maps ``(batch, time)`` to ``(batch, freq, time)``)
  applied to every detector row in one batched call (``(B*3, T)``), always in
  float32 with autocast switched off (a CQT/CWT in fp16 loses the faint low-frequency rows):
  :class:`CQT` (nnAudio's ``CQT1992v2``), :class:`ComplexMorletCWT`, :class:`RickerCWT`. Their image
  has one channel per detector, rows are frequencies (row 0 = the highest for the CWTs, the lowest
  for the CQT) and columns are time.
* learned front-ends that see all detectors at once and make one image channel per branch:
  :class:`WaveNetSpectrogram`, :class:`CNNSpectrogram`, :class:`ResNetSpectrogram`.

:class:`MultiSpectrogram` concatenates several along channels. :func:`create_frontend` builds any of
them from a class or a registry name, the way configs name them.
"""
from __future__ import annotations

import difflib
import inspect
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.fft import next_fast_len

from g2net.types import Image, RowImage, Series, Strain
from models1d_pytorch.common import reinit_weights
from models1d_pytorch.resnet1d import ResNet1d
from models1d_pytorch.wavenet1d import WAVE_BLOCKS, make_wave_block
from utils import SAMPLE_RATE


class Frontend(nn.Module):
    """Common interface: ``forward((B, C, T)) -> (B, channels, H, W)``."""

    def image_channels(self, n_detectors: int = 3) -> int:
        """Channels of the image made from ``n_detectors`` input rows (for the backbone's in_chans)."""
        raise NotImplementedError


class PerDetectorFrontend(Frontend):
    """A fixed ``(N, T) -> (N, H, W)`` transform applied to every detector row in one call.

    Runs in float32 with autocast disabled whatever the caller's autocast state, because spectral
    magnitudes spanning several decades do not survive fp16.
    """

    def transform(self, x: Series) -> RowImage:
        """``(N, T)`` float32 -> ``(N, H, W)``."""
        raise NotImplementedError

    def image_channels(self, n_detectors: int = 3) -> int:
        return n_detectors

    def forward(self, x: Strain) -> Image:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        batch, channels, length = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            image = self.transform(x.reshape(batch * channels, length).float())
        return image.reshape(batch, channels, *image.shape[1:])


class CQT(PerDetectorFrontend):
    """Constant-Q transform magnitude (nnAudio ``CQT1992v2``), rows from ``fmin`` upwards.

    With ``fmax`` given the number of bins follows from ``bins_per_octave`` (``n_bins`` must then be
    None); without it ``n_bins`` (default 84) is used. The image is
    ``(n_bins, T // hop_length + 1)`` per detector.
    """

    def __init__(self, sample_rate: float = SAMPLE_RATE, fmin: float = 20.0, fmax: float | None = 1024.0,
                 hop_length: int = 64, n_bins: int | None = None, bins_per_octave: int = 12,
                 filter_scale: float = 1, norm: int = 1, window: str = "hann", center: bool = True,
                 pad_mode: str = "reflect", trainable: bool = False,
                 output_format: str = "Magnitude"):
        super().__init__()
        from nnAudio.features.cqt import CQT1992v2

        if fmax is not None and n_bins is not None:
            raise ValueError("CQT: give fmax or n_bins, not both (with fmax the bins follow from "
                             "bins_per_octave)")
        if fmax is None and n_bins is None:
            n_bins = 84
        self.cqt = CQT1992v2(sr=sample_rate, hop_length=hop_length, fmin=fmin, fmax=fmax, n_bins=n_bins,
                             bins_per_octave=bins_per_octave, filter_scale=filter_scale, norm=norm,
                             window=window, center=center, pad_mode=pad_mode, trainable=trainable,
                             output_format=output_format, verbose=False)

    def transform(self, x: Series) -> RowImage:
        return self.cqt(x)


def log_spaced_frequencies(fmin: float, fmax: float, n_scales: int) -> np.ndarray:
    """``n_scales`` frequencies from ``fmax`` down to ``fmin``, equally spaced in log."""
    return fmax * (fmin / fmax) ** (np.arange(n_scales) / max(n_scales - 1, 1))


def morlet_kernels(t: torch.Tensor, scales: torch.Tensor, width: torch.Tensor | float,
                   sample_rate: float) -> torch.Tensor:
    """Complex Morlet filter bank as a ``(2 * n_scales, 1, len(t))`` conv weight (real rows, then imag).

    ``psi_s(t) = exp(-(t/s)^2 / width) * exp(2j*pi*t/s) / (sqrt(pi*width) * s * sample_rate / 2)``, i.e.
    PyWavelets' ``cmor{width}-1.0`` at scale ``s`` seconds (centre frequency ``1/s``), normalised so a
    unit-amplitude sinusoid at ``1/s`` gives magnitude 1. Differentiable in ``width``.
    """
    width = torch.as_tensor(width, dtype=t.dtype, device=t.device)
    scaled = t[None, :] / scales[:, None]
    envelope = torch.exp(-scaled ** 2 / width) / (torch.sqrt(math.pi * width) * scales[:, None] * sample_rate / 2)
    phase = 2 * math.pi * scaled
    return torch.cat([envelope * torch.cos(phase), envelope * torch.sin(phase)], dim=0).unsqueeze(1)


def ricker_kernels(t: torch.Tensor, sigmas: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Ricker (Mexican hat) bank ``(n_scales, 1, len(t))``: PyWavelets' ``mexh`` at ``sigma * sample_rate``
    samples, ``2 / (sqrt(3) * pi**0.25) * (1 - u^2) * exp(-u^2 / 2) / sqrt(sigma * sample_rate)``, u = t / sigma."""
    u = t[None, :] / sigmas[:, None]
    amplitude = 2.0 / (math.sqrt(3.0) * math.pi ** 0.25) / torch.sqrt(sigmas[:, None] * sample_rate)
    return (amplitude * (1 - u ** 2) * torch.exp(-u ** 2 / 2)).unsqueeze(1)


def fft_size(n: int) -> int:
    """Smallest ``2**a * 3**b * 5**c >= n`` (``scipy.fft.next_fast_len`` with ``real=True``): lengths
    cuFFT and pocketfft handle fast, kept 5-smooth so the transform sizes (and the rounding) do not
    depend on the FFT library's support for 7 and 11."""
    return max(1, next_fast_len(int(n), real=True))


def fft_correlate(x: torch.Tensor, kernels: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``F.conv1d`` of real rows ``x`` (N, T) with complex kernels (H, K), through the FFT.

    Returns the complex ``(N, H, L)`` with ``L = (T + 2 * padding - K) // stride + 1``, equal to
    ``conv1d(x, kernels.real) + 1j * conv1d(x, kernels.imag)`` (cross-correlation, zero padding).
    Long kernels (a CWT's lowest rows span over a second) make the direct convolution cost
    ``K`` multiply-adds per output; here each costs a few, and the stride is applied by folding
    the spectrum (aliasing it onto ``size / stride`` bins) before the inverse FFT, so only the
    kept columns are ever computed. Differentiable in ``kernels`` (a learned wavelet width).
    """
    rows, length = x.shape
    n_kernels, taps = kernels.shape
    if not 0 <= padding < taps:
        raise ValueError(f"fft_correlate needs 0 <= padding < kernel length, got {padding}, {taps}")
    out_len = (length + 2 * padding - taps) // stride + 1
    folded_len = fft_size(-(-(length + taps) // stride))
    size = stride * folded_len  # >= T + K: no circular wrap reaches a kept output
    # kernel tap i is the lag i - padding; lag q sits at index q mod size
    lags = (torch.arange(taps, device=kernels.device) - padding) % size
    circular = kernels.new_zeros(n_kernels, size).index_copy(1, lags, kernels)
    kernel_spectrum = torch.fft.ifft(circular, dim=-1) * size  # sum_q psi[q] exp(+2 pi i f q / size)
    spectrum = torch.fft.fft(x, n=size, dim=-1)
    folded = torch.einsum("nsf,ksf->nkf", spectrum.view(rows, stride, folded_len),
                          kernel_spectrum.view(n_kernels, stride, folded_len))
    return torch.fft.ifft(folded, dim=-1)[..., :out_len] / stride


def fft_conv1d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``F.conv1d(x.unsqueeze(1), weight, stride=stride, padding=padding)`` for real (N, T) rows and
    a real ``(R, 1, K)`` bank, computed with :func:`fft_correlate` (rows paired as real/imag)."""
    n_rows = weight.shape[0]
    if n_rows % 2:
        weight = torch.cat([weight, weight.new_zeros(1, *weight.shape[1:])])
    half = weight.shape[0] // 2
    out = fft_correlate(x, torch.complex(weight[:half, 0], weight[half:, 0]), stride, padding)
    return torch.cat([out.real, out.imag], dim=1)[:, :n_rows]


CONVOLUTION_METHODS = ("auto", "fft", "conv")
FFT_MIN_TAPS = 64  # 'auto' uses the FFT for kernels at least this long


class _WaveletTransform(PerDetectorFrontend):
    """Strided convolution with a wavelet bank; rows ordered from ``fmax`` to ``fmin``.

    The output has ``ceil(T / stride)`` columns (the kernel is centred on every ``stride``-th sample,
    zero padding outside the signal), minus ``border_crop // stride`` at each edge. ``method``:
    ``'conv'`` (direct ``conv1d``), ``'fft'`` (:func:`fft_conv1d`, the same numbers within float32
    rounding, much cheaper for long kernels) or ``'auto'`` (FFT from ``FFT_MIN_TAPS`` taps).
    """

    def __init__(self, sample_rate: float, fmin: float, fmax: float, n_scales: int,
                 stride: int, border_crop: int, size_factor: float, method: str = "auto"):
        super().__init__()
        if method not in CONVOLUTION_METHODS:
            raise ValueError(f"{type(self).__name__}: method must be one of "
                             f"{', '.join(CONVOLUTION_METHODS)}, got {method!r}")
        self.method = method
        if not 0 < fmin < fmax:
            raise ValueError(f"{type(self).__name__}: need 0 < fmin < fmax, got "
                             f"fmin={fmin}, fmax={fmax}")
        if fmax > sample_rate / 2:
            raise ValueError(f"{type(self).__name__}: fmax={fmax} Hz is above the Nyquist "
                             f"frequency sample_rate/2={sample_rate / 2} Hz; lower it or raise sample_rate")
        if n_scales < 2 or stride < 1 or border_crop < 0 or size_factor <= 0:
            raise ValueError(f"{type(self).__name__}: need n_scales >= 2, stride >= 1, border_crop >= 0 "
                             f"and size_factor > 0 (got {n_scales}, {stride}, {border_crop}, "
                             f"{size_factor})")
        self.sample_rate, self.fmin, self.fmax = sample_rate, fmin, fmax
        self.n_scales, self.stride, self.border_crop = n_scales, stride, border_crop
        self.size_factor = size_factor
        self.register_buffer("frequencies", torch.from_numpy(
            log_spaced_frequencies(fmin, fmax, n_scales)).float(), persistent=False)

    def _time_axis(self, one_side_seconds: float) -> torch.Tensor:
        one_side = int(self.size_factor * one_side_seconds * self.sample_rate)
        return torch.arange(-one_side, one_side + 1, dtype=torch.float64) / self.sample_rate

    def kernels(self) -> torch.Tensor:
        """The current ``(out_rows, 1, K)`` conv weight."""
        raise NotImplementedError

    def uses_fft(self, taps: int) -> bool:
        return self.method == "fft" or (self.method == "auto" and taps >= FFT_MIN_TAPS)

    def _crop(self, out: torch.Tensor) -> torch.Tensor:
        crop = self.border_crop // self.stride
        return out[..., crop:out.shape[-1] - crop] if crop else out

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        weight = (self.kernels() if weight is None else weight).to(x.dtype)
        padding = weight.shape[-1] // 2
        if self.uses_fft(weight.shape[-1]):
            return self._crop(fft_conv1d(x, weight, self.stride, padding))
        return self._crop(F.conv1d(x.unsqueeze(1), weight, stride=self.stride, padding=padding))


class ComplexMorletCWT(_WaveletTransform):
    """Magnitude of the complex Morlet CWT on ``n_scales`` log-spaced scales between ``1/fmax``
    and ``1/fmin`` seconds (rows = frequencies ``self.frequencies``, highest first).

    ``wavelet_width`` is PyWavelets' cmor bandwidth B (Gaussian ``exp(-(t/s)^2 / B)``): larger means
    finer frequency and coarser time resolution. Kernels span ``sqrt(4.5 * B)`` scale lengths of the
    lowest frequency on each side (times ``size_factor``).

    * ``trainable_width``: the width is an ``nn.Parameter`` and the bank is rebuilt from it on every
      forward pass, so the width receives gradients and trains.
    * ``trainable_filter``: the kernels themselves are free parameters initialised to the bank.
    * otherwise the bank is a buffer built once.
    """

    def __init__(self, sample_rate: float = SAMPLE_RATE, fmin: float = 16.0,
                 fmax: float = 1024.0, n_scales: int = 128, wavelet_width: float = 8.0,
                 stride: int = 4, trainable_width: bool = False, trainable_filter: bool = False,
                 border_crop: int = 0, size_factor: float = 1.0, method: str = "auto"):
        super().__init__(sample_rate, fmin, fmax, n_scales, stride, border_crop, size_factor,
                         method)
        if wavelet_width <= 0:
            raise ValueError(f"ComplexMorletCWT: wavelet_width must be positive, got {wavelet_width}")
        if trainable_width and trainable_filter:
            raise ValueError("ComplexMorletCWT: choose trainable_width (learn the Morlet width) or "
                             "trainable_filter (learn free kernels), not both")
        self.trainable_width, self.trainable_filter = trainable_width, trainable_filter
        self.initial_width = float(wavelet_width)
        scales = 1.0 / self.frequencies.double()
        t = self._time_axis(float(scales.max()) * math.sqrt(4.5 * wavelet_width))
        if trainable_width:
            self.wavelet_width = nn.Parameter(torch.tensor(float(wavelet_width)))
            self.register_buffer("t", t.float(), persistent=False)
            self.register_buffer("scales", scales.float(), persistent=False)
        else:
            bank = morlet_kernels(t, scales, float(wavelet_width), sample_rate).float()
            if trainable_filter:
                self.bank = nn.Parameter(bank)
            else:
                self.register_buffer("bank", bank, persistent=False)

    def kernels(self) -> torch.Tensor:
        if self.trainable_width:
            return morlet_kernels(self.t, self.scales, self.wavelet_width.clamp(min=1e-3), self.sample_rate)
        return self.bank

    @property
    def width(self) -> float:
        """The current wavelet width (the learned one with ``trainable_width``)."""
        return float(self.wavelet_width.detach()) if self.trainable_width else self.initial_width

    def transform(self, x: Series) -> RowImage:
        weight = self.kernels().to(x.dtype)
        if self.uses_fft(weight.shape[-1]):  # complex kernels directly: half the rows
            out = fft_correlate(x, torch.complex(weight[:self.n_scales, 0], weight[self.n_scales:, 0]),
                                self.stride, weight.shape[-1] // 2)
            real, imag = self._crop(out.real), self._crop(out.imag)
        else:
            out = self._convolve(x, weight)  # the bank built once per call (a learned width)
            real, imag = out[:, :self.n_scales], out[:, self.n_scales:]
        # the tiny offset keeps the gradient finite where a window of the input is all zeros
        return torch.sqrt(real ** 2 + imag ** 2 + 1e-20)


class RickerCWT(_WaveletTransform):
    """Ricker (Mexican hat) CWT, rows at log-spaced peak frequencies from ``fmax`` down to
    ``fmin`` (a Ricker of width sigma responds most at ``sqrt(2) / (2 pi sigma)``).

    The response is real and signed (``absolute=True`` returns its magnitude); kernels span 5 sigma
    of the lowest frequency on each side (times ``size_factor``).
    """

    def __init__(self, sample_rate: float = SAMPLE_RATE, fmin: float = 16.0,
                 fmax: float = 1024.0, n_scales: int = 128, stride: int = 4,
                 trainable_filter: bool = False, border_crop: int = 0, size_factor: float = 1.0,
                 absolute: bool = False, method: str = "auto"):
        super().__init__(sample_rate, fmin, fmax, n_scales, stride, border_crop, size_factor,
                         method)
        self.absolute = absolute
        sigmas = math.sqrt(2.0) / (2 * math.pi * self.frequencies.double())
        t = self._time_axis(5.0 * float(sigmas.max()))
        bank = ricker_kernels(t, sigmas, sample_rate).float()
        if trainable_filter:
            self.bank = nn.Parameter(bank)
        else:
            self.register_buffer("bank", bank, persistent=False)

    def kernels(self) -> torch.Tensor:
        return self.bank

    def transform(self, x: Series) -> RowImage:
        out = self._convolve(x)
        return out.abs() if self.absolute else out


def _as_tuple(value: int | Sequence[int]) -> tuple[int, ...]:
    return (int(value),) if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)


class _BranchFrontend(Frontend):
    """Learned front-end: one 1D branch per image channel, outputs ``(B, filters, W)`` stacked.

    ``output_size`` average-pools the time axis to that many columns; ``sigmoid`` squashes the image.
    """

    def __init__(self, branches: Sequence[nn.Module], output_size: int | None, sigmoid: bool,
                 separate_channel: bool = False):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.output_size, self.sigmoid = output_size, sigmoid
        self.separate_channel = separate_channel

    def image_channels(self, n_detectors: int = 3) -> int:
        return len(self.branches)

    def forward(self, x: Strain) -> Image:
        if self.separate_channel:
            if x.shape[1] != len(self.branches):
                raise ValueError(f"{type(self).__name__}(separate_channel=True) has "
                                 f"{len(self.branches)} branches, one per detector, but the input "
                                 f"has {x.shape[1]} detectors; give one wave_layers entry per detector")
            outs = [branch(x[:, i:i + 1]) for i, branch in enumerate(self.branches)]
        else:
            outs = [branch(x) for branch in self.branches]
        image = torch.stack(outs, dim=1)
        if self.output_size is not None:
            image = F.adaptive_avg_pool2d(image, (image.shape[-2], self.output_size))
        return image.sigmoid() if self.sigmoid else image


class WaveNetSpectrogram(_BranchFrontend):
    """One stack of dilated WaveNet blocks per image channel (``len(wave_layers)`` channels).

    Branch ``i`` has ``wave_layers[i]`` dilated layers (dilations 1..2**(n-1)) and maps the waveform
    to ``(base_filters, T / downsample)`` (a tuple of ``base_filters`` chains several blocks, each
    downsampling again). ``wave_block``: 'simplified' (ungated BN-ReLU blocks) or 'none' (the plain
    gated WaveNet block). ``separate_channel``: branch ``i`` sees only detector ``i`` (then
    ``len(wave_layers)`` must equal the number of detectors and ``in_chans`` is ignored).
    """

    def __init__(self, in_chans: int = 3, base_filters: int | Sequence[int] = 128,
                 wave_layers: Sequence[int] = (10, 6, 2), wave_block: str = "simplified",
                 kernel_size: int = 3, downsample: int | bool = 4, separate_channel: bool = False,
                 output_size: int | None = None, reinit: bool = True, sigmoid: bool = False):
        if wave_block not in WAVE_BLOCKS:
            raise ValueError(f"WaveNetSpectrogram: unknown wave_block {wave_block!r}; use one of "
                             f"{', '.join(WAVE_BLOCKS)}")
        filters = _as_tuple(base_filters)
        branch_in = 1 if separate_channel else in_chans
        branches = []
        for n_layers in wave_layers:
            chans = (branch_in,) + filters
            blocks = [make_wave_block(wave_block, n_layers, chans[j], chans[j + 1], kernel_size,
                                      downsample) for j in range(len(filters))]
            branches.append(blocks[0] if len(blocks) == 1 else nn.Sequential(*blocks))
        super().__init__(branches, output_size, sigmoid, separate_channel)
        if reinit:
            reinit_weights(self)


class CNNSpectrogram(_BranchFrontend):
    """One strided Conv1d per kernel size (one image channel each): ``(B, C, T)`` ->
    ``(B, len(kernel_sizes), base_filters, T / stride)``. A tuple of ``base_filters`` chains
    BN-ReLU-Conv layers, each striding again."""

    def __init__(self, in_chans: int = 3, base_filters: int | Sequence[int] = 128,
                 kernel_sizes: Sequence[int] = (32, 16, 4), stride: int = 4,
                 output_size: int | None = None, reinit: bool = True, sigmoid: bool = False):
        filters = _as_tuple(base_filters)
        branches = []
        for k in kernel_sizes:
            layers: list[nn.Module] = [nn.Conv1d(in_chans, filters[0], k, stride=stride,
                                                 padding=(k - 1) // 2)]
            for j in range(len(filters) - 1):
                layers += [nn.BatchNorm1d(filters[j]), nn.ReLU(),
                           nn.Conv1d(filters[j], filters[j + 1], k, stride=stride,
                                     padding=(k - 1) // 2)]
            branches.append(layers[0] if len(layers) == 1 else nn.Sequential(*layers))
        super().__init__(branches, output_size, sigmoid)
        if reinit:
            reinit_weights(self)


class ResNetSpectrogram(Frontend):
    """A 1D ResNeXt trunk (no pooling) whose ``(channels, time)`` feature map is a one-channel image.

    With the defaults (16 blocks, downsample every 8, widen every 6) a 4096-sample input becomes
    ``1 x 128 x 1024``; ``transpose`` swaps the image axes.
    """

    def __init__(self, in_chans: int = 3, base_filters: int = 32, kernel_size: int = 3,
                 stride: int = 2, groups: int = 32, n_block: int = 16, downsample_gap: int = 8,
                 increasefilter_gap: int = 6, transpose: bool = False, reinit: bool = False):
        super().__init__()
        self.trunk = ResNet1d(in_chans, base_filters, kernel_size, stride, groups, n_block,
                              num_classes=1, use_bn=True, dropout=0.0, downsample_gap=downsample_gap,
                              increasefilter_gap=increasefilter_gap, final_act=False, reinit=reinit)
        self.trunk.reset_classifier(0)
        self.transpose = transpose

    def image_channels(self, n_detectors: int = 3) -> int:
        return 1

    def forward(self, x: Strain) -> Image:
        image = self.trunk.forward_feature_map(x).unsqueeze(1)
        return image.transpose(2, 3) if self.transpose else image


class MultiSpectrogram(Frontend):
    """Several front-ends side by side, images concatenated along channels.

    ``configs``: ``[(front_end, params), ...]`` with ``front_end`` a class or registry name. The
    images must have the same height and width unless ``size=(H, W)`` resizes each (bilinear).
    """

    def __init__(self, configs: Sequence[tuple[Any, dict]], size: tuple[int, int] | None = None):
        super().__init__()
        if not configs:
            raise ValueError("MultiSpectrogram needs at least one (front_end, params) pair")
        self.frontends = nn.ModuleList(create_frontend(spec, **(params or {}))
                                       for spec, params in configs)
        self.size = tuple(size) if size is not None else None

    def image_channels(self, n_detectors: int = 3) -> int:
        return sum(f.image_channels(n_detectors) for f in self.frontends)

    def forward(self, x: Strain) -> Image:
        images = [frontend(x) for frontend in self.frontends]
        if self.size is not None:
            images = [F.interpolate(im, size=self.size, mode="bilinear", align_corners=False)
                      if im.shape[-2:] != self.size else im for im in images]
        shapes = {tuple(im.shape[-2:]) for im in images}
        if len(shapes) > 1:
            raise ValueError(f"MultiSpectrogram: the front-ends make images of different sizes "
                             f"{sorted(shapes)}; pass size=(H, W) to resize them to one")
        return torch.cat([im.to(images[0].dtype) for im in images], dim=1)


FRONTENDS: dict[str, type[nn.Module]] = {
    "cqt": CQT,
    "cwt": ComplexMorletCWT,
    "morlet": ComplexMorletCWT,
    "complex_morlet_cwt": ComplexMorletCWT,
    "ricker": RickerCWT,
    "ricker_cwt": RickerCWT,
    "wavenet": WaveNetSpectrogram,
    "cnn": CNNSpectrogram,
    "resnet": ResNetSpectrogram,
    "multi": MultiSpectrogram,
}


def register_frontend(name: str, cls: type[nn.Module]) -> None:
    """Make ``cls`` available to :func:`create_frontend` (and configs) as ``name``."""
    FRONTENDS[name.lower()] = cls


def _lookup(name: str) -> type[nn.Module]:
    by_name = {**FRONTENDS, **{c.__name__.lower(): c for c in FRONTENDS.values()}}
    key = name.lower()
    if key in by_name:
        return by_name[key]
    close = difflib.get_close_matches(key, by_name, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(f"unknown front-end {name!r}{hint}; known: {', '.join(sorted(FRONTENDS))}")


def create_frontend(name_or_class: str | type[nn.Module] | nn.Module, **params: Any) -> nn.Module:
    """Build a front-end from a registry name (``'cwt'``, ``'wavenet'``, ...), a class name
    (``'ComplexMorletCWT'``) or a class, with ``params`` as its constructor arguments.

    An already built module is returned as is (then ``params`` must be empty).
    """
    if isinstance(name_or_class, nn.Module):
        if params:
            raise TypeError("create_frontend got a built module and parameters; pass the class "
                             "or its name with the parameters instead")
        return name_or_class
    cls = _lookup(name_or_class) if isinstance(name_or_class, str) else name_or_class
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"front-end must be a registry name or an nn.Module class, got {cls!r}")
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as exc:
        raise TypeError(f"bad parameters for front-end {cls.__name__}: {exc}; its signature is "
                        f"{cls.__name__}{inspect.signature(cls)}") from exc
    return cls(**params)
