"""The calibrated detector noise of the simulator, and the PSD everything else whitens with.

One table, ``data/g2net_asd.txt`` (frequency, ASD of H1, L1, V1 in strain/sqrt(Hz) on a 0.5 Hz
grid from 0 to 1024 Hz), written by ``scripts/calibrate_noise.py`` from the real G2Net negatives:
the average PSD of 2 s windows as the standard Tukey(0.1) estimator sees it, lightly smoothed.
The simulator draws noise whose estimate is that table, the matched filter and whitening read it,
so a signal's SNR means the same thing everywhere.

Conventions (also in docs/DESIGN.md): one-sided PSD ``S(f)`` in strain^2/Hz, so that noise of PSD
``S`` has variance ``sum(S) * delta_f`` and ``irfft(rfft(x) / sqrt(S * sample_rate / 2))`` is white
with unit variance per sample.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from scipy.signal.windows import tukey

from utils import DETECTORS, N_SAMPLES, SAMPLE_RATE, G2NetError

ASD_FILE = Path(__file__).resolve().parent / "data" / "g2net_asd.txt"
TUKEY_ALPHA = 0.1  # the taper of every PSD estimate and of the whitening transform
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
    from pycbc.types import FrequencySeries

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


def estimate_psd(x: np.ndarray, sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """Average one-sided PSD (3, T // 2 + 1) of examples (N, 3, T) or (3, T).

    Tukey(alpha=0.1)-windowed periodogram divided by the window power, every bin doubled (DC and
    Nyquist included), so that it is unbiased for noise drawn by :func:`colored_noise` and
    consistent with the whitening convention.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] == 0:
        raise G2NetError(f"estimate_psd needs an array (N, 3, T) or (3, T), got shape {x.shape}")
    window = tukey(x.shape[-1], TUKEY_ALPHA)
    total = np.zeros(x.shape[1:-1] + (x.shape[-1] // 2 + 1,))
    for chunk in range(0, x.shape[0], 256):  # bounded memory for large N
        spectrum = np.fft.rfft(x[chunk:chunk + 256] * window, axis=-1)
        total += (spectrum.real ** 2 + spectrum.imag ** 2).sum(axis=0)
    return total * 2.0 / (sample_rate * np.sum(window ** 2) * x.shape[0])


def hold_interpolation(frequencies: np.ndarray, table_freqs: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse weights ``(rows, cols, weights)`` spreading table bins onto a finer grid: each fine
    bin takes its nearest table bin; bins exactly half-way take a quarter of each neighbour.

    Used to draw noise on the oversampled grid. Power stays within about +-0.125 Hz of its table
    bin, so a line that sits in one or two 0.5 Hz bins (60 Hz, 306 Hz) keeps shoulders as low as
    the real data's; with linear interpolation (or full half-way bins) it leaks into the next bin.
    """
    position = np.interp(np.asarray(frequencies, dtype=float), table_freqs, np.arange(len(table_freqs)))
    lower = np.minimum(np.floor(position).astype(int), len(table_freqs) - 2)
    frac = position - lower
    halfway = np.abs(frac - 0.5) < 1e-9
    nearest = np.where(frac < 0.5, lower, lower + 1)
    rows = np.arange(len(position))
    return (np.concatenate([rows[~halfway], rows[halfway], rows[halfway]]),
            np.concatenate([nearest[~halfway], lower[halfway], lower[halfway] + 1]),
            np.concatenate([np.ones((~halfway).sum()), np.full(2 * halfway.sum(), 0.25)]))


class TukeyEstimateOperator:
    """Linear map from a generating PSD on the table grid to the expected :func:`estimate_psd` of
    noise that :func:`colored_noise` draws from it (exact, taper leakage included), and its adjoint.

    Noise drawn over ``oversampling`` times the window has its power on a grid ``oversampling``
    times finer (filled by :func:`hold_interpolation`); a window of it, tapered, sees that power
    through the kernel ``|FFT(tukey)|^2``.
    """

    def __init__(self, n_samples: int = N_SAMPLES, sample_rate: float = SAMPLE_RATE,
                 oversampling: int = NOISE_OVERSAMPLING):
        from scipy import sparse

        self.oversampling = oversampling
        self.n_long = n_samples * oversampling
        coarse = np.fft.rfftfreq(n_samples, 1.0 / sample_rate)
        fine = np.fft.rfftfreq(self.n_long, 1.0 / sample_rate)
        rows, cols, weights = hold_interpolation(fine, coarse)
        self.interp = sparse.csr_matrix((weights, (rows, cols)), shape=(len(fine), len(coarse)))
        full = np.arange(self.n_long)
        self.fold_index = np.minimum(full, self.n_long - full)  # two-sided bin -> one-sided bin
        window = tukey(n_samples, TUKEY_ALPHA)
        self.kernel_fft = np.fft.fft(np.abs(np.fft.fft(window, n=self.n_long)) ** 2)
        self.scale = 1.0 / (self.n_long * np.sum(window ** 2))
        self.n_coarse, self.n_fine = len(coarse), len(fine)

    def _convolve(self, values: np.ndarray) -> np.ndarray:
        return np.fft.ifft(np.fft.fft(values, axis=-1) * self.kernel_fft, axis=-1).real

    def forward(self, psd: np.ndarray) -> np.ndarray:
        """(rows, n_coarse) generating PSD -> (rows, n_coarse) expected estimate."""
        fine = (self.interp @ np.atleast_2d(psd).T).T
        sampled = self._convolve(fine[..., self.fold_index])[..., ::self.oversampling]
        return sampled[..., :self.n_coarse] * self.scale

    def adjoint(self, values: np.ndarray) -> np.ndarray:
        values = np.atleast_2d(values)
        full = np.zeros(values.shape[:-1] + (self.n_long,))
        full[..., ::self.oversampling][..., :self.n_coarse] = values
        conv = self._convolve(full)  # the kernel is symmetric: the convolution is self-adjoint
        folded = np.stack([np.bincount(self.fold_index, weights=row, minlength=self.n_fine)
                           for row in conv])
        return (self.interp.T @ folded.T).T * self.scale


def deconvolve_psd(target: np.ndarray, operator: TukeyEstimateOperator,
                   iterations: int = 50) -> np.ndarray:
    """Non-negative generating PSD whose expected estimate matches ``target`` (Richardson-Lucy).

    A few tens of iterations fit the target to < 1 % except where no PSD can (line shoulders);
    more only chase estimation scatter into spiky solutions.
    """
    norm = operator.adjoint(np.ones_like(target))
    psd = target.copy()
    for _ in range(iterations):
        psd = psd * operator.adjoint(target / np.maximum(operator.forward(psd), 1e-300)) / norm
    return psd


def generation_psd(n_long: int, sample_rate: float = SAMPLE_RATE,
                   asd_table: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """PSD (3, n_long // 2 + 1) that :func:`colored_noise` draws its oversampled stretch from.

    The table is the PSD as the standard estimator sees it (taper leakage included), so the
    generating PSD is the table deconvolved through :class:`TukeyEstimateOperator`, then spread
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
    operator = TukeyEstimateOperator(n_table, n_table * spacing[0])
    return deconvolve_psd(asd ** 2, operator)


def colored_noise(rng: np.random.Generator, n_samples: int = N_SAMPLES,
                  sample_rate: float = SAMPLE_RATE,
                  asd_table: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Gaussian noise (3, n_samples) float64 whose estimated PSD is the calibrated table.

    White noise is coloured in the frequency domain, ``irfft(rfft(white) * sqrt(S * fs / 2))``,
    over a stretch ``NOISE_OVERSAMPLING`` times longer than asked for, and the first
    ``n_samples`` are kept, so the window is not periodic (like the real data: no taper, no wrap).
    ``asd_table`` replaces the file (used by the calibration).
    """
    n_long = int(n_samples) * NOISE_OVERSAMPLING
    amplitude = _coloring_amplitude(n_long, float(sample_rate)) if asd_table is None else \
        np.sqrt(generation_psd(n_long, sample_rate, asd_table) * sample_rate / 2.0)
    white = rng.standard_normal((len(DETECTORS), n_long))
    return np.fft.irfft(np.fft.rfft(white, axis=-1) * amplitude, n=n_long, axis=-1)[:, :n_samples]


@functools.lru_cache(maxsize=8)
def _coloring_amplitude(n_long: int, sample_rate: float) -> np.ndarray:
    return np.sqrt(generation_psd(n_long, sample_rate) * sample_rate / 2.0)
