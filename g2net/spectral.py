"""The PSD-estimate convention: one owner for everything that estimates a PSD.

Conventions (docs/DESIGN.md, "Whitening convention"): one-sided PSD ``S(f)`` in strain^2/Hz, so
that noise of PSD ``S`` has variance ``sum(S) * delta_f``; every estimate is a Tukey(``TUKEY_ALPHA``)
windowed periodogram divided by the window power, every bin doubled. :func:`expected_estimate_psd`
is what such an estimate expects to see of a known PSD, taper leakage included, and
:class:`TukeyEstimateOperator` / :func:`deconvolve_psd` invert it (the calibrated noise is drawn
from the deconvolved table). numpy only: the PyCBC simulator imports this module.

What whitening divides by (and whitening itself, numpy and torch) is :mod:`g2net.whitening`.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.signal.windows import tukey

from utils import N_SAMPLES, SAMPLE_RATE, G2NetError

TUKEY_ALPHA = 0.1  # the taper of every PSD estimate and of whitening


def tukey_window(n_samples: int, tukey_alpha: float = TUKEY_ALPHA) -> np.ndarray:
    """The Tukey window (n_samples,) of every estimate and of whitening."""
    return tukey(n_samples, tukey_alpha)


# ---------------------------------------------------------------------------------------------
# Estimating a PSD, and what an estimate expects to see
# ---------------------------------------------------------------------------------------------
def estimate_psd(x: np.ndarray, sample_rate: float = SAMPLE_RATE,
                 tukey_alpha: float = TUKEY_ALPHA) -> np.ndarray:
    """Average one-sided PSD (3, T // 2 + 1) of examples (N, 3, T) or (3, T).

    Tukey-windowed periodogram divided by the window power, every bin doubled (DC and Nyquist
    included), so that it is unbiased for noise drawn by ``noise_model.colored_noise`` and
    consistent with the whitening convention.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] == 0:
        raise G2NetError(f"estimate_psd needs an array (N, 3, T) or (3, T), got shape {x.shape}")
    window = tukey_window(x.shape[-1], tukey_alpha)
    total = np.zeros(x.shape[1:-1] + (x.shape[-1] // 2 + 1,))
    for chunk in range(0, x.shape[0], 256):  # bounded memory for large N
        spectrum = np.fft.rfft(x[chunk:chunk + 256] * window, axis=-1)
        total += (spectrum.real ** 2 + spectrum.imag ** 2).sum(axis=0)
    return total * 2.0 / (sample_rate * np.sum(window ** 2) * x.shape[0])


def expected_estimate_psd(fine_psd: np.ndarray, n_samples: int = N_SAMPLES,
                          sample_rate: float = SAMPLE_RATE,
                          tukey_alpha: float = TUKEY_ALPHA) -> np.ndarray:
    """What :func:`estimate_psd` of ``n_samples`` expects to see of noise with PSD ``fine_psd``.

    ``fine_psd`` is the one-sided PSD (..., M // 2 + 1) on the frequency grid of M >= 2 n_samples
    samples (the grid the noise is drawn on). Returns the expectation (..., n_samples // 2 + 1):
    the windowed DFT's expected power, from the noise autocovariance times the window's
    autocorrelation, divided by the window power. It equals the PSD where the PSD is smooth, and
    it fills the near-empty bins of a PSD with steep walls or deep notches (below 10 Hz and beside
    lines in the calibrated table) with the power that leaks into them through the window, which
    is what whitening must divide those bins by. :class:`TukeyEstimateOperator` is the same map
    written as a linear operator with an adjoint, for deconvolution.
    """
    fine_psd = np.asarray(fine_psd, dtype=np.float64)
    n_fine = 2 * (fine_psd.shape[-1] - 1)
    if n_fine < 2 * n_samples:
        raise ValueError(f"expected_estimate_psd: the PSD grid ({n_fine} samples) must be at least "
                         f"twice as fine as the examples ({n_samples} samples)")
    autocovariance = np.fft.irfft(fine_psd * sample_rate / 2, n=n_fine, axis=-1)[..., :n_samples]
    window = tukey_window(n_samples, tukey_alpha)
    window_acf = np.fft.irfft(np.abs(np.fft.rfft(window, 2 * n_samples)) ** 2,
                              n=2 * n_samples)[:n_samples]
    lagged = autocovariance * window_acf  # lags 0..n-1; negative lags by symmetry
    folded = lagged.copy()
    folded[..., 1:] += lagged[..., :0:-1]  # lag -m lands on m modulo n_samples
    power = np.fft.rfft(folded, axis=-1).real
    return power * 2.0 / (sample_rate * np.sum(window ** 2))


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
    noise drawn from it over ``oversampling`` times the window (exact, taper leakage included),
    and its adjoint.

    Such noise has its power on a grid ``oversampling`` times finer (filled by
    :func:`hold_interpolation`); a window of it, tapered, sees that power through the kernel
    ``|FFT(tukey)|^2``. ``forward(psd)`` equals :func:`expected_estimate_psd` of the spread PSD;
    the adjoint is what :func:`deconvolve_psd` needs.
    """

    def __init__(self, n_samples: int = N_SAMPLES, sample_rate: float = SAMPLE_RATE, *,
                 oversampling: int, tukey_alpha: float = TUKEY_ALPHA):
        self.oversampling = oversampling
        self.n_long = n_samples * oversampling
        coarse = np.fft.rfftfreq(n_samples, 1.0 / sample_rate)
        fine = np.fft.rfftfreq(self.n_long, 1.0 / sample_rate)
        rows, cols, weights = hold_interpolation(fine, coarse)
        self.interp = sparse.csr_matrix((weights, (rows, cols)), shape=(len(fine), len(coarse)))
        full = np.arange(self.n_long)
        self.fold_index = np.minimum(full, self.n_long - full)  # two-sided bin -> one-sided bin
        window = tukey_window(n_samples, tukey_alpha)
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


# ---------------------------------------------------------------------------------------------
# Whitening
# ---------------------------------------------------------------------------------------------
def inverse_asd(psd: np.ndarray, sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """``1 / sqrt(psd * sample_rate / 2)``, the whitening gain; zero where the PSD is zero or not
    finite."""
    valid = np.isfinite(psd) & (psd > 0)
    gain = np.zeros_like(psd, dtype=np.float64)
    gain[valid] = 1.0 / np.sqrt(psd[valid] * sample_rate / 2)
    return gain


def welch_psd(data: np.ndarray, window: int, sample_rate: float) -> np.ndarray:
    """PSD (detectors, window // 2 + 1) of a stretch: Tukey-windowed periodograms of ``window``
    samples overlapping by half, averaged (``spectral.estimate_psd``'s convention: for
    ``window`` = 2 s it is what ``transforms.Whiten`` divides by)."""
    starts = range(0, data.shape[-1] - window + 1, window // 2)
    pieces = np.stack([data[:, s:s + window] for s in starts])
    return estimate_psd(pieces, sample_rate)
