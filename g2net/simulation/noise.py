"""The calibrated detector noise: its table, the PSDs read from it, and noise drawn from it.

One table, ``data/g2net_asd.txt`` (frequency, ASD of H1, L1, V1 in strain/sqrt(Hz) on a 0.5 Hz
grid from 0 to 1024 Hz), written by ``scripts/calibrate_noise.py`` from the real G2Net negatives:
the average PSD of 2 s windows as the standard Tukey(0.1) estimator sees it, lightly smoothed.
The simulator draws noise whose estimate is that table, the matched filter and whitening read it,
so a signal's SNR means the same thing everywhere.

One scheme draws the noise: white Gaussian noise coloured in the frequency domain by
:func:`coloring_amplitude` over ``NOISE_OVERSAMPLING`` windows, first window kept. :func:`colored_noise`
(numpy, the PyCBC engine) and :func:`colored_noise_torch` (a batch, the ml4gw engine) apply it;
:class:`StreamingNoise` is the same PSD as a FIR filter, for continuous strain of any length.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from scipy.signal import fftconvolve
from scipy.signal.windows import tukey

from g2net.spectral import TukeyEstimateOperator, deconvolve_psd, hold_interpolation
from utils import DETECTORS, N_SAMPLES, SAMPLE_RATE, G2NetError

if TYPE_CHECKING:  # the torch backend imports torch when called: the numpy path stays without it
    import torch
    from torch import Tensor


ASD_FILE = Path(__file__).resolve().parents[2] / "data" / "g2net_asd.txt"


# Noise is drawn this many times longer than needed and cut, so that like the real data it is not
# periodic over the window (a periodic segment would leak differently into a tapered periodogram).
NOISE_OVERSAMPLING = 4


def load_asd(path: str | Path = ASD_FILE) -> tuple[np.ndarray, np.ndarray]:
    """``(freqs (n_freq,), asd (3, n_freq))`` from the ASD table; rows H1, L1, V1."""
    return tuple(a.copy() for a in _load_asd_cached(str(path)))  # type: ignore[return-value]


@functools.lru_cache(maxsize=4)
def _load_asd_cached(path: str) -> tuple[np.ndarray, np.ndarray]:
    if not Path(path).is_file():
        raise G2NetError(f"ASD table {path} is missing; run `python scripts/calibrate_noise.py` "
                         "or restore data/g2net_asd.txt from the repository")
    try:
        table = np.loadtxt(path, comments="#", ndmin=2)
    except ValueError as exc:
        raise G2NetError(f"ASD table {path} is not a numeric table ({exc}); "
                         "regenerate it with `python scripts/calibrate_noise.py`") from exc
    if table.shape[1] != 1 + len(DETECTORS) or table.shape[0] < 2:
        raise G2NetError(f"ASD table {path} has shape {table.shape}; expected columns "
                         "frequency asd_H1 asd_L1 asd_V1; regenerate it")
    freqs, asd = table[:, 0], table[:, 1:].T
    if not (np.all(np.diff(freqs) > 0) and np.all(np.isfinite(asd)) and np.all(asd >= 0)):
        raise G2NetError(f"ASD table {path} needs increasing frequencies and finite ASD >= 0; "
                         "regenerate it")
    return freqs, asd


def psd_on_grid(frequencies: np.ndarray, asd_table: tuple[np.ndarray, np.ndarray] | None = None
                ) -> np.ndarray:
    """PSD (3, len(frequencies)) interpolated linearly in power from the ASD table."""
    freqs, asd = load_asd() if asd_table is None else asd_table
    frequencies = np.asarray(frequencies, dtype=float)
    if frequencies.size and (frequencies.min() < freqs[0] - 1e-9 or frequencies.max() > freqs[-1] + 1e-9):
        raise G2NetError(f"the ASD table covers {freqs[0]:g}-{freqs[-1]:g} Hz but "
                         f"{frequencies.min():g}-{frequencies.max():g} Hz was asked for; "
                         f"use a sample rate of at most {2 * freqs[-1]:g} Hz")
    return np.stack([np.interp(frequencies, freqs, a ** 2) for a in asd])


def psd_array(n_samples: int = N_SAMPLES, sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """One-sided PSD (3, n_samples // 2 + 1) in strain^2/Hz at ``np.fft.rfftfreq(n_samples, 1/sample_rate)``."""
    return _psd_array_cached(int(n_samples), float(sample_rate)).copy()


@functools.lru_cache(maxsize=8)
def _psd_array_cached(n_samples: int, sample_rate: float) -> np.ndarray:
    return psd_on_grid(np.fft.rfftfreq(n_samples, 1.0 / sample_rate))


def detector_psd(detector: str | int, delta_f: float, flen: int,
                 low_frequency_cutoff: float | None = None):
    """The simulator's PSD of one detector as a PyCBC ``FrequencySeries`` (like ``pycbc.psd.from_string``).

    ``detector`` is ``'H1'``, ``'L1'``, ``'V1'`` or a row index; bins below ``low_frequency_cutoff``
    are zero, as in PyCBC's analytic PSDs.
    """
    from pycbc.types import FrequencySeries  # deferred: PyCBC is needed for this alone

    if isinstance(detector, str):
        if detector not in DETECTORS:
            raise G2NetError(f"unknown detector {detector!r}; use one of {', '.join(DETECTORS)}")
        row = DETECTORS.index(detector)
    else:
        row = int(detector)
        if not 0 <= row < len(DETECTORS):
            raise G2NetError(f"detector index {detector} out of range 0-{len(DETECTORS) - 1}")
    frequencies = np.arange(int(flen)) * float(delta_f)
    values = psd_on_grid(frequencies)[row]
    if low_frequency_cutoff is not None:
        values[frequencies < low_frequency_cutoff] = 0.0
    return FrequencySeries(values, delta_f=float(delta_f), dtype=np.float64)


def generation_psd(n_long: int, sample_rate: float = SAMPLE_RATE,
                   asd_table: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """PSD (3, n_long // 2 + 1) that :func:`colored_noise` draws its oversampled stretch from.

    The table is the PSD as the standard estimator sees it (taper leakage included), so the
    generating PSD is the table deconvolved through ``spectral.TukeyEstimateOperator``, then spread
    onto the fine grid.
    """
    freqs, asd = load_asd() if asd_table is None else asd_table
    freqs, asd = np.asarray(freqs, dtype=float), np.asarray(asd, dtype=float)
    fine = np.fft.rfftfreq(int(n_long), 1.0 / sample_rate)
    if fine[-1] > freqs[-1] + 1e-9:
        raise G2NetError(f"the ASD table stops at {freqs[-1]:g} Hz; use a sample rate of at most "
                         f"{2 * freqs[-1]:g} Hz")
    source = _deconvolved_table(freqs.tobytes(), asd.tobytes(), asd.shape)
    rows, cols, weights = hold_interpolation(fine, freqs)
    psd = np.zeros((asd.shape[0], len(fine)))
    for row in range(asd.shape[0]):
        np.add.at(psd[row], rows, weights * source[row, cols])
    return psd


@functools.lru_cache(maxsize=4)
def _deconvolved_table(freqs_bytes: bytes, asd_bytes: bytes, shape: tuple[int, int]) -> np.ndarray:
    freqs = np.frombuffer(freqs_bytes)
    asd = np.frombuffer(asd_bytes).reshape(shape)
    spacing = np.diff(freqs)
    if freqs[0] != 0 or not np.allclose(spacing, spacing[0]):
        raise G2NetError("the ASD table must start at 0 Hz on an even grid (0.5 Hz: 0, 0.5, ..., 1024)")
    n_table = 2 * (len(freqs) - 1)
    operator = TukeyEstimateOperator(n_table, n_table * spacing[0], oversampling=NOISE_OVERSAMPLING)
    return deconvolve_psd(asd ** 2, operator)


def colored_noise(rng: np.random.Generator, n_samples: int = N_SAMPLES,
                  sample_rate: float = SAMPLE_RATE,
                  asd_table: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Gaussian noise (3, n_samples) float64 whose estimated PSD is the calibrated table.

    White noise is coloured in the frequency domain, ``irfft(rfft(white) * sqrt(S * sample_rate / 2))``,
    over a stretch ``NOISE_OVERSAMPLING`` times longer than asked for, and the first
    ``n_samples`` are kept, so the window is not periodic (like the real data: no taper, no wrap).
    ``asd_table`` replaces the file (used by the calibration).
    """
    n_long = int(n_samples) * NOISE_OVERSAMPLING
    amplitude = coloring_amplitude(n_long, float(sample_rate)) if asd_table is None else \
        np.sqrt(generation_psd(n_long, sample_rate, asd_table) * sample_rate / 2.0)
    white = rng.standard_normal((len(DETECTORS), n_long))
    return np.fft.irfft(np.fft.rfft(white, axis=-1) * amplitude, n=n_long, axis=-1)[:, :n_samples]


@functools.lru_cache(maxsize=8)
def coloring_amplitude(n_long: int, sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """``sqrt(S * sample_rate / 2)`` (3, n_long // 2 + 1) of the generating PSD: the factor that
    colours the spectrum of unit white noise of ``n_long`` samples (read-only, cached)."""
    amplitude = np.sqrt(generation_psd(n_long, sample_rate) * sample_rate / 2.0)
    amplitude.flags.writeable = False
    return amplitude


def colored_noise_torch(g: torch.Generator, batch: int, amplitude: Tensor,
                        n_samples: int = N_SAMPLES) -> Tensor:
    """A batch ``(batch, 3, n_samples)`` float64 of :func:`colored_noise`, drawn from ``g`` on
    ``amplitude``'s device; ``amplitude`` is :func:`coloring_amplitude` of ``n_samples *
    NOISE_OVERSAMPLING`` as a tensor (built once by the caller)."""
    import torch  # deferred: the numpy simulator imports this module without torch

    n_long = 2 * (amplitude.shape[-1] - 1)
    white = torch.randn((batch, amplitude.shape[0], n_long), generator=g, dtype=torch.float64,
                        device=amplitude.device)
    return torch.fft.irfft(torch.fft.rfft(white) * amplitude, n=n_long)[..., :n_samples]


# the colouring filter spans the simulator's oversampled noise stretch, so its response on its
# 1/8 Hz grid is exactly the generating PSD of noise_model.colored_noise
FIR_SECONDS = NOISE_OVERSAMPLING * N_SAMPLES // SAMPLE_RATE


class StreamingNoise:
    """Continuous calibrated Gaussian noise for the chosen detectors, any number of samples at a time.

    The FIR kernel is ``irfft(sqrt(S * fs / 2))`` of the noise model's generating PSD ``S`` on a
    ``FIR_SECONDS`` grid, centred and Tukey-tapered (so that the response between grid frequencies
    stays close to ``S``); consecutive calls continue the same stream (the last kernel-length white
    samples are kept).
    """

    def __init__(self, detectors: Sequence[str], rng: np.random.Generator,
                 sample_rate: float = SAMPLE_RATE, fir_seconds: int = FIR_SECONDS):
        length = int(fir_seconds * sample_rate)
        rows = [DETECTORS.index(d) for d in detectors]
        amplitude = np.sqrt(generation_psd(length, sample_rate)[rows] * sample_rate / 2.0)
        kernel = np.roll(np.fft.irfft(amplitude, n=length, axis=-1), length // 2, axis=-1)
        self.kernel = kernel * tukey(length, 0.5)
        self.rng = rng
        self.memory = self._white(len(rows), length - 1)

    def _white(self, n_detectors: int, n_samples: int) -> np.ndarray:
        # drawn time-major, so that the stream does not depend on how it is cut into chunks
        return self.rng.standard_normal((n_samples, n_detectors)).T

    def __call__(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` of noise, (n_detectors, n_samples) float64."""
        white = np.concatenate([self.memory, self._white(self.memory.shape[0], n_samples)], axis=-1)
        self.memory = white[:, white.shape[-1] - self.memory.shape[-1]:]
        return fftconvolve(white, self.kernel, mode="valid", axes=-1)
