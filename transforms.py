"""Augmentations and preprocessing of one example ``(3, T)``, plus batched torch versions.

The numpy transforms run per example inside the Dataset (DataLoader workers). Each draws its
randomness from the global ``np.random`` state so that ``utils.seed_everything`` (and the trainer's
per-worker seeding) makes an epoch reproducible. They never modify their input in place (it may be
a read-only memory map) and return an array of the same shape and dtype.

An augmentation that online training can use (``train_source = 'online'``: batches made on the
device, g2net.experiments.online) also has :meth:`Transform.batched`: the same augmentation on a
batch ``(B, 3, T)`` in torch, drawing from the batch's ``torch.Generator`` so that the stream stays a
function of its seed. One class owns both versions; :func:`batched` chains a config's pipeline.

The deterministic, costly preprocessing steps (``Normalize``, ``BandPass``, ``Whiten``) also exist as
``nn.Module`` versions (``TorchNormalize``, ``TorchBandPass``, ``TorchWhiten``) that act on a whole
batch ``(B, 3, T)`` on the GPU and equal the numpy versions within 1e-5 relative error, so the data
pipeline can be reduced to reading and cheap augmentation.
"""
from __future__ import annotations

import abc
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from jaxtyping import Float
from scipy import fft as sp_fft
from scipy import signal
from torch import Tensor, nn

from g2net.spectral import TUKEY_ALPHA
from g2net.types import Strain
from g2net.whitening import PsdSpec, whiten, whiten_torch, whitening_kernel
from utils import DETECTORS, N_SAMPLES, SAMPLE_RATE

BatchedStep = Callable[[Tensor, torch.Generator], Tensor]

COMPETITION_FACTORS = (4.61e-20, 4.23e-20, 1.11e-20)  # typical strain amplitude of H1, L1, V1


# ---------------------------------------------------------------------------------------------
# Base classes
# ---------------------------------------------------------------------------------------------
class Transform(abc.ABC):
    """Applied with probability ``p`` (always when ``always_apply``); ``apply`` does the work."""

    def __init__(self, p: float = 0.5, always_apply: bool = False):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must lie in [0, 1], got {p}")
        self.p = p
        self.always_apply = always_apply

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.always_apply or np.random.random() < self.p:
            return self.apply(x)
        return x

    @abc.abstractmethod
    def apply(self, x: np.ndarray) -> np.ndarray:
        """Transform ``x`` (..., T) unconditionally; same shape and dtype, input untouched."""

    def has_batched(self) -> bool:
        """Whether :meth:`batched` exists for this transform (online training needs it)."""
        return type(self).batched is not Transform.batched

    def batched(self, x: Strain, g: torch.Generator) -> Strain:
        """This transform on a batch, each example chosen with probability ``p`` (as ``__call__``),
        randomness from ``g``."""
        raise self._no_batched_version()

    def _no_batched_version(self) -> ValueError:
        return ValueError(f"{self!r} has no batched version for online training; drop it from the "
                          "config's train transforms or train from files (train_source = 'files')")

    def _chosen(self, x: Tensor, g: torch.Generator) -> Tensor:
        """(B, 1, 1) mask of the examples of a batch this transform applies to."""
        if self.always_apply or self.p >= 1.0:
            return torch.ones((x.shape[0], 1, 1), dtype=torch.bool, device=x.device)
        return torch.rand((x.shape[0], 1, 1), generator=g, device=x.device, dtype=torch.float64) < self.p

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` in order, each with its own probability."""

    def __init__(self, transforms: Sequence[Transform], p: float = 1.0, always_apply: bool = False):
        super().__init__(p, always_apply)
        self.transforms = list(transforms)

    def apply(self, x: np.ndarray) -> np.ndarray:
        for transform in self.transforms:
            x = transform(x)
        return x


class OneOf(Transform):
    """Apply exactly one of ``transforms``, chosen with probability proportional to its ``p``."""

    def __init__(self, transforms: Sequence[Transform], p: float = 0.5, always_apply: bool = False):
        super().__init__(p, always_apply)
        self.transforms = list(transforms)
        weights = np.array([t.p for t in self.transforms], dtype=np.float64)
        if len(self.transforms) == 0 or weights.sum() <= 0:
            raise ValueError("OneOf needs at least one transform with p > 0")
        self._weights = weights / weights.sum()

    def apply(self, x: np.ndarray) -> np.ndarray:
        index = np.random.choice(len(self.transforms), p=self._weights)
        return self.transforms[index].apply(x)


class _BatchedPreprocessing:
    """Batched version of exact preprocessing (Normalize, BandPass, Whiten): its torch module
    (:func:`torch_equivalent`), built on the batch's device when first used. Only for steps that
    always apply: a random preprocessing step has no batched version."""

    def has_batched(self) -> bool:
        return self.always_apply or self.p >= 1.0

    def batched(self, x: Strain, g: torch.Generator) -> Strain:
        if not self.has_batched():
            raise self._no_batched_version()
        module = self.__dict__.get("_batched_module")
        if module is None or module[0] != (x.device, x.shape[-1]):
            module = ((x.device, x.shape[-1]), torch_equivalent(self, x.shape[-1]).to(x.device))
            self._batched_module = module
        return module[1](x)


def batched(transform: Transform | None) -> BatchedStep:
    """A config's ``train`` pipeline as one function of a batch ``(B, 3, T)`` and a generator.

    A ``Compose`` that always applies runs its steps' :meth:`Transform.batched` in order; a step
    without one raises ``ValueError`` here, when the pipeline is built, not in the first batch.
    """
    if transform is None:
        return lambda x, g: x
    steps = list(transform.transforms) if type(transform) is Compose and transform.p >= 1.0 \
        else [transform]
    for step in steps:
        if not step.has_batched():
            raise step._no_batched_version()

    def apply(x: Tensor, g: torch.Generator) -> Tensor:
        for step in steps:
            x = step.batched(x, g)
        return x

    return apply


def _like(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``y`` with the dtype of ``x`` (computations run in float64)."""
    return np.asarray(y).astype(x.dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# Deterministic preprocessing
# ---------------------------------------------------------------------------------------------
def _check_factors(factors: Sequence[float]) -> np.ndarray:
    factors = np.asarray(factors, dtype=np.float64)
    if factors.ndim != 1 or np.any(factors == 0) or not np.all(np.isfinite(factors)):
        raise ValueError(f"Normalize: factors must be one finite non-zero number per detector, "
                         f"got {factors.tolist()}")
    return factors


def detector_rows(detectors: Sequence[str]) -> list[int]:
    """Rows of ``detectors`` in the competition layout (H1, L1, V1), in that order."""
    unknown = [d for d in detectors if d not in DETECTORS]
    if unknown or not detectors or len(set(detectors)) != len(detectors):
        raise ValueError(f"detectors {tuple(detectors)}: give distinct detectors among {DETECTORS}")
    return sorted(DETECTORS.index(d) for d in detectors)


class SelectDetectors(Transform):
    """Keep the rows of a detector set (e.g. H1, L1 as in MLGWSC-1) from (..., 3, T) examples: the
    first step of a model that sees fewer detectors than the competition layout holds."""

    def __init__(self, detectors: Sequence[str] = DETECTORS, p: float = 1.0, always_apply: bool = True):
        super().__init__(p, always_apply)
        self.detectors = tuple(detectors)
        self._rows = detector_rows(self.detectors)

    def apply(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-2] != len(DETECTORS):
            raise ValueError(f"SelectDetectors takes (..., {len(DETECTORS)}, T) examples with rows "
                             f"{', '.join(DETECTORS)}, got {x.shape}")
        return x[..., self._rows, :]

    def batched(self, x: Strain, g: torch.Generator) -> Strain:
        return x[:, self._rows]


class Normalize(_BatchedPreprocessing, Transform):
    """Divide each detector's strain by its typical amplitude, bringing all rows to order one."""

    def __init__(self, factors: Sequence[float] = COMPETITION_FACTORS, p: float = 1.0,
                 always_apply: bool = False):
        super().__init__(p, always_apply)
        self.factors = tuple(float(f) for f in factors)
        self._factors = _check_factors(self.factors)[:, None]

    def apply(self, x: np.ndarray) -> np.ndarray:
        return _like(x / self._factors, x)


def butter_bandpass_sos(lower: float, upper: float, order: int = 8,
                        sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """Butterworth band-pass between ``lower`` and ``upper`` Hz as second-order sections."""
    if not 0 < lower < upper < sample_rate / 2:
        raise ValueError(f"BandPass: need 0 < lower < upper < {sample_rate / 2} Hz (Nyquist), "
                         f"got lower={lower}, upper={upper}")
    if order < 1:
        raise ValueError(f"BandPass: order must be a positive integer, got {order}")
    return signal.butter(order, [lower, upper], btype="bandpass", fs=sample_rate, output="sos")


def sosfiltfilt_padlen(sos: np.ndarray) -> int:
    """The odd-extension length scipy's ``sosfiltfilt`` uses by default (3 x its tap count)."""
    ntaps = 2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * ntaps


class BandPass(_BatchedPreprocessing, Transform):
    """Zero-phase Butterworth band-pass (``sosfiltfilt``, odd padding): keeps the chirp's band.

    Second-order sections rather than a ``(b, a)`` filtfilt (torchaudio's ``filtfilt``, as ml4gw
    uses): an order-8 Butterworth band-pass in ``(b, a)`` form is numerically unstable (its poles
    crowd near z = 1; torchaudio's float32 filtfilt of it returns NaN), and that filtfilt starts
    from rest without scipy's odd padding, so its edges ring.
    """

    def __init__(self, lower: float = 20.0, upper: float = 500.0, order: int = 8,
                 sample_rate: float = SAMPLE_RATE, p: float = 1.0, always_apply: bool = False):
        super().__init__(p, always_apply)
        self.lower, self.upper, self.order = lower, upper, order
        self.sample_rate = sample_rate
        self._sos = butter_bandpass_sos(lower, upper, order, sample_rate)
        self._padlen = sosfiltfilt_padlen(self._sos)

    def apply(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] <= self._padlen:
            raise ValueError(f"BandPass: examples must be longer than {self._padlen} samples, "
                             f"got {x.shape[-1]}")
        y = signal.sosfiltfilt(self._sos, x, axis=-1, padtype="odd", padlen=self._padlen)
        return _like(y, x)


class Whiten(_BatchedPreprocessing, Transform):
    """Divide by the detector ASD in the frequency domain: ``spectral.whiten`` (docs/DESIGN.md).

    Noise drawn from ``psd`` comes out with unit variance per sample, so every frequency weighs
    by its signal-to-noise ratio. The PSD is loaded on first use (config classes build transforms
    at import time, before the input folder exists), once per example length.
    """

    def __init__(self, psd: PsdSpec = "simulator", sample_rate: float = SAMPLE_RATE,
                 tukey_alpha: float = TUKEY_ALPHA, p: float = 1.0, always_apply: bool = False,
                 detectors: Sequence[str] = DETECTORS):
        super().__init__(p, always_apply)
        self.psd = psd if isinstance(psd, (str, os.PathLike)) else "<array>"
        self.sample_rate, self.tukey_alpha = sample_rate, tukey_alpha
        self.detectors = tuple(detectors)  # the rows of the examples it whitens
        self._rows = detector_rows(self.detectors)
        self._psd_spec = psd
        self._kernels: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _kernel(self, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        if n_samples not in self._kernels:
            window, gain = whitening_kernel(self._psd_spec, n_samples, self.sample_rate,
                                            self.tukey_alpha)
            self._kernels[n_samples] = (window, gain[self._rows] if len(gain) == len(DETECTORS)
                                        else gain)
        return self._kernels[n_samples]

    def apply(self, x: np.ndarray) -> np.ndarray:
        return _like(whiten(x, *self._kernel(x.shape[-1])), x)


# ---------------------------------------------------------------------------------------------
# Noise at a signal-to-noise ratio
# ---------------------------------------------------------------------------------------------
def _rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True))


def power_law_noise(shape: tuple[int, ...], exponent: float) -> np.ndarray:
    """Gaussian noise with PSD proportional to ``f ** -exponent`` (0 white, 1 pink, 2 brown)."""
    n = shape[-1]
    freqs = np.fft.rfftfreq(n)
    amplitude = np.zeros_like(freqs)
    amplitude[1:] = freqs[1:] ** (-exponent / 2)  # no DC: the noise has zero mean
    spectrum = (np.random.standard_normal(shape[:-1] + (len(freqs),))
                + 1j * np.random.standard_normal(shape[:-1] + (len(freqs),))) * amplitude
    return np.fft.irfft(spectrum, n=n, axis=-1)


class _NoiseSNR(Transform):
    """Add noise scaled so that each detector row has an SNR (dB, RMS ratio) in [min, max]."""

    exponent = 0.0

    def __init__(self, min_snr: float = 5.0, max_snr: float = 20.0, p: float = 0.5,
                 always_apply: bool = False):
        super().__init__(p, always_apply)
        if min_snr > max_snr:
            raise ValueError(f"{type(self).__name__}: min_snr ({min_snr}) exceeds max_snr "
                             f"({max_snr})")
        self.min_snr, self.max_snr = min_snr, max_snr

    def _noise(self, shape: tuple[int, ...]) -> np.ndarray:
        return power_law_noise(shape, self.exponent)

    def apply(self, x: np.ndarray) -> np.ndarray:
        snr_db = np.random.uniform(self.min_snr, self.max_snr)
        noise = self._noise(x.shape)
        noise_rms = _rms(x) / 10 ** (snr_db / 20)
        return _like(x + noise * (noise_rms / np.maximum(_rms(noise), 1e-300)), x)


class GaussianNoiseSNR(_NoiseSNR):
    """White Gaussian noise at a random SNR."""

    def _noise(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.random.standard_normal(shape)

    def batched(self, x: Strain, g: torch.Generator) -> Strain:
        mask = self._chosen(x, g)
        snr_db = self.min_snr + (self.max_snr - self.min_snr) * torch.rand(
            (x.shape[0], 1, 1), generator=g, device=x.device, dtype=torch.float64)
        noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)

        def rms(v: Tensor) -> Tensor:
            return torch.sqrt(torch.mean(v.double() ** 2, dim=-1, keepdim=True))

        scaled = noise * (rms(x) / 10 ** (snr_db / 20) / rms(noise).clamp_min(1e-300)).to(x.dtype)
        return torch.where(mask, x + scaled, x)


class PinkNoiseSNR(_NoiseSNR):
    """1/f noise at a random SNR."""

    exponent = 1.0


class BrownNoiseSNR(_NoiseSNR):
    """1/f^2 (random-walk-like) noise at a random SNR."""

    exponent = 2.0


# ---------------------------------------------------------------------------------------------
# Sign, channel order, time shifts
# ---------------------------------------------------------------------------------------------
class FlipWave(Transform):
    """Multiply all rows by -1 (a wave's sign depends on the unknown polarisation angle)."""

    def apply(self, x: np.ndarray) -> np.ndarray:
        return -x

    def batched(self, x: Strain, g: torch.Generator) -> Strain:
        return torch.where(self._chosen(x, g), -x, x)


class FlipWavePerChannel(Transform):
    """Multiply each detector row by an independent random sign."""

    def apply(self, x: np.ndarray) -> np.ndarray:
        signs = np.random.choice(np.array([-1.0, 1.0]), size=x.shape[:-1] + (1,))
        return _like(x * signs, x)

    def batched(self, x: Strain, g: torch.Generator) -> Strain:
        mask = self._chosen(x, g)
        signs = torch.where(torch.rand(x.shape[:-1] + (1,), generator=g, device=x.device) < 0.5, -1.0, 1.0)
        return torch.where(mask, x * signs.to(x.dtype), x)


class SwapChannel(Transform):
    """Swap the two LIGO detectors (rows H1 and L1); Virgo stays."""

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x[..., [1, 0, 2], :]

    def batched(self, x: Strain, g: torch.Generator) -> Strain:
        return torch.where(self._chosen(x, g), x[:, [1, 0, 2]], x)


def _roll_rows(x: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Circularly shift each row of ``x`` (..., T) later in time by its own number of samples."""
    n = x.shape[-1]
    index = (np.arange(n) - shifts[..., None]) % n
    return np.take_along_axis(x, index, axis=-1)


class _TimeShift(Transform):
    """Circular shifts of up to ``max_shift`` seconds either way (default: the subclass's)."""
    default_max_shift: float

    def __init__(self, max_shift: float | None = None, sample_rate: float = SAMPLE_RATE,
                 p: float = 0.5, always_apply: bool = False):
        super().__init__(p, always_apply)
        self.max_shift = self.default_max_shift if max_shift is None else max_shift
        self.sample_rate = sample_rate

    def _draw(self, size: tuple[int, ...] | None = None) -> Any:
        limit = int(round(self.max_shift * self.sample_rate))
        return np.random.randint(-limit, limit + 1, size=size)

    def _batched_roll(self, x: Tensor, g: torch.Generator, rows: tuple[int, ...]) -> Tensor:
        """Rows rolled by shifts of shape ``rows`` (broadcast over the batch's rows)."""
        mask = self._chosen(x, g)
        limit = int(round(self.max_shift * self.sample_rate))
        shifts = torch.randint(-limit, limit + 1, rows, generator=g, device=x.device)
        index = (torch.arange(x.shape[-1], device=x.device) - shifts[..., None]) % x.shape[-1]
        return torch.where(mask, torch.gather(x, -1, index.expand(x.shape)), x)


class GlobalTimeShift(_TimeShift):
    """Roll all rows together by up to ``max_shift`` seconds either way (the merger time is free)."""
    default_max_shift = 1.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.roll(x, self._draw(), axis=-1)

    def batched(self, x: Strain, g: torch.Generator) -> Strain:
        return self._batched_roll(x, g, (x.shape[0], 1))


class IndependentTimeShift(_TimeShift):
    """Roll each row by its own shift of up to ``max_shift`` seconds (arrival-time jitter)."""
    default_max_shift = 0.01

    def apply(self, x: np.ndarray) -> np.ndarray:
        return _roll_rows(x, self._draw(x.shape[:-1]))

    def batched(self, x: Strain, g: torch.Generator) -> Strain:
        return self._batched_roll(x, g, x.shape[:-1])


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------
class TimeMask(Transform):
    """Zero ``num_masks`` random intervals of up to ``max_width`` seconds in every row."""

    def __init__(self, max_width: float = 0.2, num_masks: int = 1, sample_rate: float = SAMPLE_RATE,
                 p: float = 0.5, always_apply: bool = False):
        super().__init__(p, always_apply)
        self.max_width, self.num_masks, self.sample_rate = max_width, num_masks, sample_rate

    def apply(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[-1]
        limit = min(int(round(self.max_width * self.sample_rate)), n)
        widths = np.random.randint(0, limit + 1, size=self.num_masks)
        starts = np.random.randint(0, n - widths + 1)
        t = np.arange(n)
        masked = ((t >= starts[:, None]) & (t < (starts + widths)[:, None])).any(axis=0)
        return np.where(masked, np.zeros((), dtype=x.dtype), x)


class FrequencyMask(Transform):
    """Remove ``num_masks`` random bands of up to ``max_width`` Hz from every row (FFT domain)."""

    def __init__(self, max_width: float = 64.0, num_masks: int = 1,
                 sample_rate: float = SAMPLE_RATE, p: float = 0.5, always_apply: bool = False):
        super().__init__(p, always_apply)
        self.max_width, self.num_masks, self.sample_rate = max_width, num_masks, sample_rate

    def apply(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[-1]
        n_freq = n // 2 + 1
        bin_width = self.sample_rate / n
        limit = min(int(round(self.max_width / bin_width)), n_freq)
        widths = np.random.randint(0, limit + 1, size=self.num_masks)
        starts = np.random.randint(0, n_freq - widths + 1)
        k = np.arange(n_freq)
        masked = ((k >= starts[:, None]) & (k < (starts + widths)[:, None])).any(axis=0)
        spectrum = np.fft.rfft(x.astype(np.float64), axis=-1)
        spectrum[..., masked] = 0
        return _like(np.fft.irfft(spectrum, n=n, axis=-1), x)


# ---------------------------------------------------------------------------------------------
# Time stretching and amplitude
# ---------------------------------------------------------------------------------------------
def resample_linear(x: np.ndarray, n_out: int) -> np.ndarray:
    """Linear interpolation of ``x`` (..., n_in) onto ``n_out`` samples spanning the same interval."""
    n_in = x.shape[-1]
    positions = np.linspace(0.0, n_in - 1, n_out)
    left = np.minimum(np.floor(positions).astype(np.int64), n_in - 2)
    frac = positions - left
    return x[..., left] * (1 - frac) + x[..., left + 1] * frac


class RandomResizedCrop(Transform):
    """Crop a random window of ``scale`` x T samples and stretch it back to T (lowers frequencies)."""

    def __init__(self, min_scale: float = 0.8, max_scale: float = 1.0, p: float = 0.5,
                 always_apply: bool = False):
        super().__init__(p, always_apply)
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError(f"RandomResizedCrop: need 0 < min_scale <= max_scale <= 1, got "
                             f"{min_scale}, {max_scale}")
        self.min_scale, self.max_scale = min_scale, max_scale

    def apply(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[-1]
        length = max(2, int(round(n * np.random.uniform(self.min_scale, self.max_scale))))
        start = np.random.randint(0, n - length + 1)
        return _like(resample_linear(x[..., start:start + length], n), x)


class TimeResize(Transform):
    """Stretch time by a random ``scale`` (frequencies divide by it), then crop or zero-pad to T.

    A longer result is cropped at a random offset; a shorter one is zero-padded at the end.
    """

    def __init__(self, min_scale: float = 0.9, max_scale: float = 1.1, p: float = 0.5,
                 always_apply: bool = False):
        super().__init__(p, always_apply)
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"TimeResize: need 0 < min_scale <= max_scale, got {min_scale}, "
                             f"{max_scale}")
        self.min_scale, self.max_scale = min_scale, max_scale

    def apply(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[-1]
        length = max(2, int(round(n * np.random.uniform(self.min_scale, self.max_scale))))
        stretched = resample_linear(x, length)
        if length >= n:
            start = np.random.randint(0, length - n + 1)
            return _like(stretched[..., start:start + n], x)
        out = np.zeros_like(x)
        out[..., :length] = stretched
        return out


class Scale(Transform):
    """Multiply the example by a random factor in [min_scale, max_scale] (amplitude invariance)."""

    def __init__(self, min_scale: float = 0.8, max_scale: float = 1.25, p: float = 0.5,
                 always_apply: bool = False):
        super().__init__(p, always_apply)
        if min_scale > max_scale:
            raise ValueError(f"Scale: min_scale ({min_scale}) exceeds max_scale ({max_scale})")
        self.min_scale, self.max_scale = min_scale, max_scale

    def apply(self, x: np.ndarray) -> np.ndarray:
        return _like(x * np.random.uniform(self.min_scale, self.max_scale), x)

    def batched(self, x: Strain, g: torch.Generator) -> Strain:
        factor = self.min_scale + (self.max_scale - self.min_scale) * torch.rand(
            (x.shape[0], 1, 1), generator=g, device=x.device, dtype=x.dtype)
        return torch.where(self._chosen(x, g), x * factor, x)


# ---------------------------------------------------------------------------------------------
# Batched torch versions for the GPU
# ---------------------------------------------------------------------------------------------
class _TorchPreprocess(nn.Module, abc.ABC):
    """Runs ``_forward`` in ``compute_dtype`` outside autocast and returns the input's dtype.

    Spectral kernels are complex128 buffers: ``Module.half()``/``.float()`` leave complex tensors
    alone, so they stay exact wherever the module sits; ``.to(device)`` moves them as usual.
    """

    def __init__(self, compute_dtype: torch.dtype = torch.float64):
        super().__init__()
        if compute_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{type(self).__name__}: compute_dtype must be torch.float32 or "
                             f"torch.float64, got {compute_dtype}")
        self.compute_dtype = compute_dtype

    def _complex(self, kernel: torch.Tensor) -> torch.Tensor:
        return kernel.to(torch.complex128 if self.compute_dtype == torch.float64
                         else torch.complex64)

    def forward(self, x: Strain) -> Strain:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._forward(x.to(self.compute_dtype)).to(x.dtype)

    @abc.abstractmethod
    def _forward(self, x: Strain) -> Strain:
        """The transform on ``x`` already in ``compute_dtype``."""


class TorchNormalize(nn.Module):
    """Batched ``Normalize``: ``x / factors`` on ``(B, 3, T)`` tensors on any device."""

    def __init__(self, factors: Sequence[float] = COMPETITION_FACTORS):
        super().__init__()
        self.register_buffer("inverse_factors", torch.from_numpy(
            1.0 / _check_factors(factors)).to(torch.complex128)[:, None], persistent=False)

    def forward(self, x: Strain) -> Strain:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return (x.to(torch.float64) * self.inverse_factors.real).to(x.dtype)


class TorchBandPass(_TorchPreprocess):
    """Batched ``BandPass``: the same zero-phase filter as ``scipy.signal.sosfiltfilt``, exactly.

    ``sosfiltfilt`` odd-extends the signal, runs the IIR cascade forwards starting from the steady
    state of the first sample (``sosfilt_zi * u[0]``), then backwards likewise. Each pass is linear:
    output = (input convolved with the causal impulse response h) + u[0] * (the cascade's free
    response g from state ``sosfilt_zi``). Both h and g are computed once with scipy over the
    padded length L, and the causal convolution is done with FFTs long enough (>= 2L - 1) to be
    linear, so no truncation or edge approximation is involved. Acts on the last axis. It is kept
    instead of torchaudio's / ml4gw's ``(b, a)`` filtfilt for the reasons :class:`BandPass` gives.
    """

    def __init__(self, lower: float = 20.0, upper: float = 500.0, order: int = 8,
                 sample_rate: float = SAMPLE_RATE, n_samples: int = N_SAMPLES,
                 compute_dtype: torch.dtype = torch.float64):
        super().__init__(compute_dtype)
        sos = butter_bandpass_sos(lower, upper, order, sample_rate)
        self.padlen = sosfiltfilt_padlen(sos)
        if n_samples <= self.padlen:
            raise ValueError(f"TorchBandPass: n_samples must exceed {self.padlen}, got {n_samples}")
        self.n_samples = n_samples
        self.padded = n_samples + 2 * self.padlen
        self.n_fft = sp_fft.next_fast_len(2 * self.padded - 1, real=True)
        impulse = np.zeros(self.padded)
        impulse[0] = 1.0
        h = signal.sosfilt(sos, impulse)
        g, _ = signal.sosfilt(sos, np.zeros(self.padded), zi=signal.sosfilt_zi(sos))
        self.register_buffer("h_spectrum", torch.from_numpy(np.fft.rfft(h, self.n_fft)),
                             persistent=False)
        self.register_buffer("g_spectrum", torch.from_numpy(np.fft.rfft(g, self.n_fft)),
                             persistent=False)

    def _causal_pass(self, u: Float[Tensor, "batch ifo padded"]) -> Float[Tensor, "batch ifo padded"]:
        spectrum = (torch.fft.rfft(u, n=self.n_fft) * self._complex(self.h_spectrum)
                    + u[..., :1] * self._complex(self.g_spectrum))
        return torch.fft.irfft(spectrum, n=self.n_fft)[..., :self.padded]

    def _forward(self, x: Strain) -> Strain:
        if x.shape[-1] != self.n_samples:
            raise ValueError(f"TorchBandPass was built for {self.n_samples} samples, got "
                             f"{x.shape[-1]}; build it with n_samples={x.shape[-1]}")
        edge = self.padlen
        first, last = x[..., :1], x[..., -1:]
        padded = torch.cat([2 * first - x[..., 1:edge + 1].flip(-1), x,
                            2 * last - x[..., -edge - 1:-1].flip(-1)], dim=-1)
        forward = self._causal_pass(padded)
        both = self._causal_pass(forward.flip(-1)).flip(-1)
        return both[..., edge:edge + self.n_samples]


class TorchWhiten(_TorchPreprocess):
    """Batched ``Whiten`` (``spectral.whiten_torch``) on ``(B, 3, T)`` tensors; the PSD (see
    ``spectral.load_psd``) is loaded when the module is built, so build it when a run starts, not
    in a config class body.

    Kept instead of ``ml4gw.transforms.Whiten``/``FixedWhiten``: those truncate the inverse-ASD
    filter to ``fduration`` and crop ``fduration / 2`` from each edge (a shorter window), with a
    Hann-windowed filter; this applies the project's convention (Tukey(0.1) window, full-length
    gain, ``spectral.whitening_kernel``), equal to the numpy ``Whiten`` the models were built on."""

    def __init__(self, psd: PsdSpec = "simulator", sample_rate: float = SAMPLE_RATE,
                 n_samples: int = N_SAMPLES, tukey_alpha: float = TUKEY_ALPHA,
                 compute_dtype: torch.dtype = torch.float64, detectors: Sequence[str] = DETECTORS):
        super().__init__(compute_dtype)
        self.n_samples = n_samples
        self.detectors = tuple(detectors)
        window, gain = whitening_kernel(psd, n_samples, sample_rate, tukey_alpha)
        if len(gain) == len(DETECTORS):
            gain = gain[detector_rows(self.detectors)]
        self.register_buffer("gain", torch.from_numpy(gain).to(torch.complex128), persistent=False)
        self.register_buffer("window", torch.from_numpy(window).to(torch.complex128),
                             persistent=False)

    def _forward(self, x: Strain) -> Strain:
        if x.dim() < 2 or x.shape[-2] != len(self.detectors):
            raise ValueError(f"TorchWhiten needs batches (B, {len(self.detectors)}, T) with rows "
                             f"{', '.join(self.detectors)}, got {tuple(x.shape)}")
        if x.shape[-1] != self.n_samples:
            raise ValueError(f"TorchWhiten was built for {self.n_samples} samples, got "
                             f"{x.shape[-1]}; build it with n_samples={x.shape[-1]}")
        return whiten_torch(x, self.window.real.to(self.compute_dtype), self._complex(self.gain))


# =============================================================================================
# Moving the deterministic preprocessing to the GPU
# =============================================================================================
# Normalize divides each row by a constant: it commutes with every augmentation that is
# row-wise homogeneous, aug(D x) = D aug(x) for a diagonal D, with the same random draws (the noise
# transforms scale their noise by the row's RMS). BandPass applies one linear filter to every row,
# Whiten one per detector (and a window): they commute only with multiplying rows by numbers, and
# BandPass also with swapping rows. Anything not listed blocks a move, so the result is exact.
_COMMUTES_WITH: dict[type, tuple[type, ...]] = {
    Normalize: (FlipWave, FlipWavePerChannel, Scale, GaussianNoiseSNR, PinkNoiseSNR, BrownNoiseSNR,
                GlobalTimeShift, IndependentTimeShift, TimeMask, FrequencyMask, RandomResizedCrop,
                TimeResize, Normalize, BandPass, Whiten),
    BandPass: (FlipWave, FlipWavePerChannel, Scale, SwapChannel),
    Whiten: (FlipWave, FlipWavePerChannel, Scale),
}


def _is_preprocessing(transform: Transform) -> bool:
    return type(transform) in _COMMUTES_WITH and (transform.always_apply or transform.p >= 1.0)


def _commutes(step: Transform, other: Transform) -> bool:
    """Whether applying ``step`` after ``other`` gives exactly what applying it before does."""
    if type(other) in (Compose, OneOf):  # random choice among commuting transforms commutes too
        return all(_commutes(step, inner) for inner in other.transforms)
    return isinstance(other, _COMMUTES_WITH[type(step)])


def split_for_gpu(transform: Transform | None, allowed: set[str] | None = None
                  ) -> tuple[Transform | None, list[Transform]]:
    """Split a numpy pipeline into ``(cpu_part, gpu_steps)`` with ``gpu_steps(cpu_part(x))`` equal
    to ``transform(x)``.

    A Normalize / BandPass / Whiten step (always applied) moves to the GPU when it commutes with
    every transform that stays on the CPU after it; ``allowed`` (reprs) restricts which may move.
    ``cpu_part`` is None when nothing is left for the CPU.
    """
    if transform is None:
        return None, []
    whole = type(transform) is Compose and (transform.always_apply or transform.p >= 1.0)
    steps = list(transform.transforms) if whole else [transform]
    cpu: list[Transform] = []
    gpu: list[Transform] = []
    for step in reversed(steps):
        movable = _is_preprocessing(step) and (allowed is None or repr(step) in allowed)
        if movable and all(_commutes(step, later) for later in cpu):
            gpu.insert(0, step)
        else:
            cpu.insert(0, step)
    return (Compose(cpu) if cpu else None), gpu


def torch_equivalent(step: Transform, n_samples: int) -> nn.Module:
    """The batched torch module computing ``step`` on ``(B, 3, n_samples)`` tensors."""
    if isinstance(step, Normalize):
        return TorchNormalize(step.factors)
    if isinstance(step, BandPass):
        return TorchBandPass(step.lower, step.upper, step.order, step.sample_rate, n_samples=n_samples)
    if isinstance(step, Whiten):
        return TorchWhiten(step._psd_spec, step.sample_rate, n_samples=n_samples,
                           tukey_alpha=step.tukey_alpha, detectors=step.detectors)
    raise TypeError(f"{type(step).__name__} has no batched torch version; keep it in the "
                     "per-example transforms")


class GpuPreprocess(nn.Module):
    """Numpy preprocessing steps run batched on the device (``transforms['gpu']`` of a config).

    The torch modules are built on the first batch, for its length and device, so that a config
    class can hold one without loading a PSD file at import time.
    """

    def __init__(self, steps: Sequence[Transform]):
        super().__init__()
        self.steps = list(steps)
        self.chain: nn.Module | None = None
        self._built_for: tuple[int, torch.device] | None = None

    def forward(self, x: Strain) -> Strain:
        key = (x.shape[-1], x.device)
        if self._built_for != key:
            self.chain = nn.Sequential(*[torch_equivalent(s, x.shape[-1]) for s in self.steps]).to(x.device)
            self._built_for = key
        return self.chain(x)

    def extra_repr(self) -> str:
        return ", ".join(repr(s) for s in self.steps)


def cpu_transforms(transforms: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`gpu_transforms`: the ``gpu`` steps appended to every numpy pipeline."""
    gpu = transforms.get("gpu")
    if gpu is None:
        return dict(transforms)
    if not isinstance(gpu, GpuPreprocess):
        raise TypeError(f"the 'gpu' transform {type(gpu).__name__} has no numpy version; only "
                         "transforms made by gpu_transforms can run on the CPU")
    out = {k: v for k, v in transforms.items() if k != "gpu"}
    for key, value in out.items():
        if value is not None:
            cpu_steps = value.transforms if type(value) is Compose and value.p >= 1.0 else [value]
            out[key] = Compose([*cpu_steps, *gpu.steps])
    return out


def gpu_transforms(transforms: dict[str, Any]) -> dict[str, Any]:
    """A config's ``transforms`` dict with its preprocessing moved to ``'gpu'`` where exact.

    Every key (train, test, tta, ...) must leave the same steps to the GPU, because the trainer
    applies one ``gpu`` module to training and evaluation batches alike; steps that cannot move in
    every key stay on the CPU everywhere. Use it in a config: ``transforms = gpu_transforms(dict(
    train=..., test=..., tta=...))``.
    """
    if transforms.get("gpu") is not None:
        raise ValueError("these transforms already have a 'gpu' entry; apply gpu_transforms to the "
                         "numpy transforms only")
    keys = [k for k, v in transforms.items() if k != "gpu" and v is not None]
    allowed: set[str] | None = None
    while True:
        splits = {k: split_for_gpu(transforms[k], allowed) for k in keys}
        moved = {k: [repr(s) for s in gpu] for k, (_, gpu) in splits.items()}
        if len({tuple(m) for m in moved.values()}) <= 1:
            break
        common = set.intersection(*(set(m) for m in moved.values()))
        allowed = set() if common == allowed else common
    out = dict(transforms)
    steps = splits[keys[0]][1] if keys else []
    if not steps:
        return out
    for key, (cpu, _) in splits.items():  # an empty pipeline, not None: cpu_transforms inverts it
        out[key] = cpu if cpu is not None else Compose([], always_apply=True)
    out["gpu"] = GpuPreprocess(steps)
    return out
