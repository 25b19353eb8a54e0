"""Templates of the matched filters: waveforms laid out for correlation, whitened, and matched.

A template is the frequency-domain plus polarisation of an aligned-spin waveform, laid out
circularly with the merger at sample 0, so that a correlation peak at sample ``j`` means a merger at
sample ``j`` of the data. Whitened templates have unit norm ``(h|h) = 1`` under the whitening gain
of :mod:`g2net.whitening`, so that a template and whitened data meet on the same scale.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from g2net.spectral import inverse_asd
from utils import N_SAMPLES, SAMPLE_RATE, G2NetError

APPROXIMANT = "IMRPhenomD"


TEMPLATE_TAPER = 0.1  # s, Hann taper at the start of a truncated template


TEMPLATE_POST_MERGER = 0.1  # s of ringdown kept after the merger


# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------
def template_waveform(mass1: float, mass2: float, spin1z: float, spin2z: float, *,
                      f_lower: float, duration: float, n_samples: int = N_SAMPLES,
                      sample_rate: float = SAMPLE_RATE,
                      approximant: str = APPROXIMANT) -> np.ndarray:
    """Frequency-domain plus polarisation ``(n_samples // 2 + 1,)`` complex, strain/Hz.

    The waveform is cut to the last ``duration`` seconds before merger (Hann-tapered start) plus
    ``TEMPLATE_POST_MERGER`` s of ringdown, and laid out circularly with the merger at sample 0: a
    correlation peak at sample ``j`` means a merger at sample ``j`` of the data. A 2 s example
    only holds the last part of a long inspiral, so an uncut template would spend its norm on
    cycles that are not in the data.
    """
    from pycbc import conversions
    from pycbc.waveform import get_fd_waveform

    if duration + TEMPLATE_POST_MERGER > n_samples / sample_rate:
        raise G2NetError(f"template duration {duration} s plus {TEMPLATE_POST_MERGER} s ringdown "
                         f"does not fit in {n_samples / sample_rate} s examples; shorten it")
    chirp_time = float(conversions.tau0_from_mass1_mass2(mass1, mass2, f_lower))
    seglen = 2 ** math.ceil(math.log2(1.5 * chirp_time + 4.0))  # long enough not to wrap
    hp, _ = get_fd_waveform(approximant=approximant, mass1=mass1, mass2=mass2, spin1z=spin1z,
                            spin2z=spin2z, delta_f=1.0 / seglen, f_lower=f_lower,
                            f_final=sample_rate / 2)
    n_long = int(seglen * sample_rate)
    spectrum = np.zeros(n_long // 2 + 1, dtype=np.complex128)
    size = min(len(hp), len(spectrum))
    spectrum[:size] = hp.numpy()[:size]
    series = np.fft.irfft(spectrum, n=n_long) * sample_rate  # merger at sample 0, circular
    n_before = int(round(duration * sample_rate))
    n_after = int(round(TEMPLATE_POST_MERGER * sample_rate))
    n_taper = int(round(TEMPLATE_TAPER * sample_rate))
    before = series[n_long - n_before:].copy()
    before[:n_taper] *= 0.5 * (1.0 - np.cos(np.pi * np.arange(n_taper) / n_taper))
    circular = np.zeros(n_samples)
    circular[:n_after] = series[:n_after]
    circular[n_samples - n_before:] = before
    return np.fft.rfft(circular) / sample_rate


def whitened_unit_templates(waveforms: np.ndarray, psd: np.ndarray, f_lower: float,
                            n_samples: int = N_SAMPLES,
                            sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """Whitened templates ``(..., n_freq)`` scaled to unit norm ``(h|h) = 1``.

    Whitening uses ``spectral.inverse_asd`` (the gain of the whitening transform), so a template
    and whitened data meet on the same scale: with ``W = rfft(x) * gain`` the inner product is
    ``(a|b) = 2 / N * sum_k W_a W_b*``. Bins below ``f_lower`` and the Nyquist bin are dropped.
    """
    gain = inverse_asd(np.asarray(psd, dtype=np.float64), sample_rate)
    white = np.asarray(waveforms) * sample_rate * gain  # rfft of the sampled series, whitened
    freqs = np.fft.rfftfreq(n_samples, 1.0 / sample_rate)
    white[..., freqs < f_lower] = 0.0
    white[..., -1] = 0.0
    norm = np.sqrt(2.0 / n_samples * np.sum(np.abs(white) ** 2, axis=-1, keepdims=True))
    check_template_norms(norm)
    return white / norm


def check_template_norms(norm: np.ndarray) -> None:
    """Refuse templates whose whitened norm is zero (no power where the PSD is finite above
    ``f_lower``): they would divide by zero and match nothing."""
    if np.any(norm == 0):
        raise G2NetError("a template has no power above f_lower in the PSD's band; check the "
                         "bank's mass range and f_lower")


def max_match(one: torch.Tensor, many: torch.Tensor,
              max_shift: float | None = None) -> torch.Tensor:
    """Match (maximised over time shift and phase) of unit-norm whitened ``one`` with each row.

    ``one`` ``(n_freq,)`` and ``many`` ``(T, n_freq)`` complex, ``n_freq = N // 2 + 1``; shifts
    up to ``max_shift`` seconds either way (every shift when None).
    """
    n_samples = 2 * (many.shape[-1] - 1)
    product = many * one.conj()
    series = torch.fft.ifft(product, n=n_samples, dim=-1)  # (2/N) sum_k ... = 2 * ifft
    if max_shift is not None:
        reach = int(max_shift * SAMPLE_RATE)
        series = torch.cat([series[..., :reach + 1], series[..., -reach:]], dim=-1)
    return 2.0 * (series.real ** 2 + series.imag ** 2).amax(dim=-1).sqrt()


# ---------------------------------------------------------------------------------------------
# Filtering
# ---------------------------------------------------------------------------------------------
def sliding_max(x: Float[Tensor, "*batch time"], radius: int,
                out: Float[Tensor, "*batch window"] | None = None) -> Float[Tensor, "*batch window"]:
    """``out[..., i] = max(x[..., i : i + 2 * radius + 1])`` (``window = time - 2 * radius``), by
    doubling: about log2(2 radius + 1) whole-array maxima instead of F.max_pool1d's 2 radius + 1
    comparisons per sample (5x faster at the strain filter's radius of 20 samples, the same values)."""
    width = 2 * radius + 1
    length = x.shape[-1] - width + 1
    span, level = 1, x
    while 2 * span <= width:  # level[..., i] = max(x[..., i : i + span])
        level = torch.maximum(level[..., :-span], level[..., span:])
        span *= 2
    return torch.maximum(level[..., :length], level[..., width - span:width - span + length], out=out)
