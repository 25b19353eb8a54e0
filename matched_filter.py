"""Matched-filter baseline: the optimal detector for known signals, scored like an experiment.

``python matched_filter.py --input DIR --split test|train [--bank-size N] [--batch-size B]``

A template bank of aligned-spin ``IMRPhenomD`` waveforms over chirp mass, mass ratio and
effective spin (``spin1z = spin2z = chi_eff``) covers the simulator's default prior. Its templates
are chosen from the equal-spin twins of a pool of injections drawn like the simulator's by
farthest-point selection: each new template is the twin of the pool injection the bank matches
worst so far (match: maximised over time and phase, H1 PSD). Templates are cut to the inspiral an
example can hold.
The bank is cached under ``results/matched_filter/`` keyed by its parameters and the PSD.

Per example: whiten with the simulator PSD (``spectral.whiten_torch``, the training pipeline's
whitening), correlate every unit-norm whitened template with every detector in the frequency
domain (one batched complex inverse FFT gives the complex SNR, whose modulus maximises over
phase), and form the network statistic

    rho_net(t)^2 = rho_H(t)^2 + max_{|dt| <= 10 ms} rho_L(t + dt)^2 + max_{|dt| <= 27 ms} rho_V(t + dt)^2

maximised over merger times ``t`` in the simulator's window and over templates. The statistic is
written as a logit ``rho_net - SNR_OFFSET`` (sigmoid 0.5 at network SNR 8) in the experiment
layout: ``predictions.npy`` ``(1, N_test, 1)`` for the test split, ``outoffolds.npy``
``(N_train, 1)`` for the train split, rows in the order of ``test.csv`` / ``train.csv``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from tqdm import tqdm

from spectral import inverse_asd, whiten_torch, whitening_kernel
from utils import (DETECTORS, N_SAMPLES, SAMPLE_RATE, G2NetError, atomic_save_npy, atomic_write,
                   cli_errors, input_dir, results_dir)

APPROXIMANT = "IMRPhenomD"
OUT_NAME = "matched_filter"  # results/<OUT_NAME>/, read by evaluate.py and stacking
MAX_DT_HL = 0.010  # s, largest physical H1-L1 arrival-time difference allowed
MAX_DT_V = 0.027  # s, largest physical Virgo-to-LIGO arrival-time difference allowed
SNR_OFFSET = 8.0  # logit = rho_net - SNR_OFFSET
EARTH_LIGHT_TIME = 0.022  # s, largest geocentre-to-detector light travel time (6371 km / c)
TEMPLATE_TAPER = 0.1  # s, Hann taper at the start of a truncated template
TEMPLATE_POST_MERGER = 0.1  # s of ringdown kept after the merger
BANK_VERSION = 2  # bump when the way a bank is built changes, so old caches are not reused
DEFAULT_BANK_SIZE = 320
DEFAULT_CANDIDATES = 2000
MATCH_TARGET = 0.95  # a template "covers" an injection it matches at least this well
MATCH_MAX_SHIFT = 0.1  # s, time shifts searched when matching two templates


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
    if np.any(norm == 0):
        raise G2NetError("a template has no power above f_lower in the PSD's band; check the "
                         "bank's mass range and f_lower")
    return white / norm


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
# Bank
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BankSpec:
    """What a bank covers and how it is built; its hash keys the cache."""

    size: int = DEFAULT_BANK_SIZE
    mass_range: tuple[float, float] = (10.0, 50.0)  # component masses, solar masses, each uniform
    spin_range: tuple[float, float] = (-0.5, 0.5)  # aligned spins, each uniform
    f_lower: float = 20.0  # Hz
    duration: float = 1.7  # s of inspiral kept before merger
    n_candidates: int = DEFAULT_CANDIDATES
    seed: int = 0
    approximant: str = APPROXIMANT

    def key(self, psd: np.ndarray) -> str:
        """Cache key: the spec, the PSD it was built with, and the bank-building version."""
        blob = json.dumps({**asdict(self), "version": BANK_VERSION}, sort_keys=True).encode()
        digest = hashlib.sha1(blob)
        digest.update(np.ascontiguousarray(psd, dtype=np.float64).tobytes())
        return digest.hexdigest()[:16]


@dataclass
class TemplateBank:
    """Template parameters and their frequency-domain waveforms (``(T, N // 2 + 1)``, strain/Hz)."""

    spec: BankSpec
    mchirp: np.ndarray
    q: np.ndarray
    chi_eff: np.ndarray
    waveforms: np.ndarray
    pool_coverage: float  # fraction of the pool's injections with best match >= MATCH_TARGET

    def __len__(self) -> int:
        return len(self.mchirp)

    @property
    def masses(self) -> tuple[np.ndarray, np.ndarray]:
        from pycbc import conversions

        return (np.asarray(conversions.mass1_from_mchirp_q(self.mchirp, self.q)),
                np.asarray(conversions.mass2_from_mchirp_q(self.mchirp, self.q)))

    def neighbour_matches(self, psd: np.ndarray) -> np.ndarray:
        """Each template's match with its nearest other template (the bank's spacing), H1 PSD."""
        white = torch.from_numpy(whitened_unit_templates(self.waveforms, psd[0], self.spec.f_lower)
                                 .astype(np.complex64))
        result = np.empty(len(self))
        for i in range(len(self)):
            matches = max_match(white[i], white, max_shift=MATCH_MAX_SHIFT)
            matches[i] = -1.0
            result[i] = float(matches.max())
        return result


def candidate_pool(spec: BankSpec) -> dict[str, np.ndarray]:
    """Injections drawn like the simulator's (component masses and spins each uniform).

    Each one is both a point the bank must cover (its own two spins) and a candidate template
    (the equal-spin system with the same masses and effective spin).
    """
    from pycbc import conversions

    rng = np.random.default_rng(spec.seed)
    masses = np.sort(rng.uniform(*spec.mass_range, size=(spec.n_candidates, 2)), axis=1)[:, ::-1]
    spins = rng.uniform(*spec.spin_range, size=(spec.n_candidates, 2))
    mass1, mass2 = masses[:, 0].copy(), masses[:, 1].copy()
    return {"mass1": mass1, "mass2": mass2, "spin1z": spins[:, 0].copy(),
            "spin2z": spins[:, 1].copy(),
            "chi_eff": np.asarray(conversions.chi_eff(mass1, mass2, spins[:, 0], spins[:, 1])),
            "mchirp": np.asarray(conversions.mchirp_from_mass1_mass2(mass1, mass2)),
            "q": np.asarray(conversions.q_from_mass1_mass2(mass1, mass2))}


def generate_waveforms(spec: BankSpec, mass1: np.ndarray, mass2: np.ndarray,
                       spin1z: np.ndarray, spin2z: np.ndarray, progress: bool = False) -> np.ndarray:
    """Frequency-domain cut waveforms ``(T, N // 2 + 1)`` (see :func:`template_waveform`)."""
    rows = range(len(mass1))
    if progress:
        rows = tqdm(rows, desc="waveforms", leave=False)
    return np.stack([template_waveform(mass1[i], mass2[i], spin1z[i], spin2z[i],
                                       f_lower=spec.f_lower, duration=spec.duration,
                                       approximant=spec.approximant) for i in rows])


def template_waveforms(spec: BankSpec, mchirp: np.ndarray, q: np.ndarray,
                       chi_eff: np.ndarray, progress: bool = False) -> np.ndarray:
    """Waveforms of equal-spin templates ``(mchirp, q = m1 / m2 >= 1, chi_eff)``."""
    from pycbc import conversions

    mass1 = np.asarray(conversions.mass1_from_mchirp_q(mchirp, q))
    mass2 = np.asarray(conversions.mass2_from_mchirp_q(mchirp, q))
    return generate_waveforms(spec, mass1, mass2, chi_eff, chi_eff, progress)


def build_bank(spec: BankSpec, psd: np.ndarray, progress: bool = True) -> TemplateBank:
    """Farthest-point selection of ``spec.size`` templates over a pool of prior-drawn injections.

    Each new template is the equal-spin twin of the pool injection that the bank so far matches
    worst (match maximised over time and phase, H1 PSD), so templates spread over the whole prior,
    its thinly populated edges included. (A greedy maximum-coverage selection, which puts
    templates where the prior is dense, covered the pool better but new injections no better
    than 95% whatever the size; farthest point reached 97-98% with 320 templates.)
    """
    if spec.size < 1:
        raise G2NetError(f"bank size must be at least 1, got {spec.size}")
    if spec.size > spec.n_candidates:
        raise G2NetError(f"bank size {spec.size} exceeds the {spec.n_candidates} candidates; "
                         "raise --candidates or lower --bank-size")
    pool = candidate_pool(spec)
    points = torch.from_numpy(whitened_unit_templates(
        generate_waveforms(spec, pool["mass1"], pool["mass2"], pool["spin1z"], pool["spin2z"],
                           progress), psd[0], spec.f_lower).astype(np.complex64))
    twins = template_waveforms(spec, pool["mchirp"], pool["q"], pool["chi_eff"], progress)
    white_twins = whitened_unit_templates(twins, psd[0], spec.f_lower).astype(np.complex64)
    best = torch.full((spec.n_candidates,), -1.0)
    chosen: list[int] = []
    steps = tqdm(range(spec.size), desc="bank: farthest point", leave=False, disable=not progress)
    nxt = int(np.argmin(np.abs(pool["mchirp"] - np.median(pool["mchirp"]))))
    for _ in steps:
        chosen.append(nxt)
        # Both merge at sample 0, so the best shift is a few ms: a far-off maximum only occurs
        # for poorly matching pairs, which do not matter here.
        best = torch.maximum(best, max_match(torch.from_numpy(white_twins[nxt]), points,
                                             max_shift=MATCH_MAX_SHIFT))
        worst = best.clone()
        worst[chosen] = 2.0  # a point whose own twin is taken cannot be helped by taking it again
        nxt = int(torch.argmin(worst))
    order = np.array(chosen)
    return TemplateBank(spec=spec, mchirp=pool["mchirp"][order], q=pool["q"][order],
                        chi_eff=pool["chi_eff"][order], waveforms=twins[order],
                        pool_coverage=float((best >= MATCH_TARGET).double().mean()))


def bank_cache_path(spec: BankSpec, psd: np.ndarray) -> Path:
    return results_dir() / OUT_NAME / f"bank_{spec.key(psd)}.npz"


def load_or_build_bank(spec: BankSpec, psd: np.ndarray | None = None,
                       progress: bool = True) -> TemplateBank:
    """The bank of ``spec``, from its cache file when present, else built and cached."""
    import noise_model

    psd = noise_model.psd_array() if psd is None else psd
    path = bank_cache_path(spec, psd)
    if path.is_file():
        try:
            with np.load(path) as saved:
                mchirp, q, chi = saved["mchirp"], saved["q"], saved["chi_eff"]
                coverage = float(saved["pool_coverage"])
            return TemplateBank(spec, mchirp, q, chi, template_waveforms(spec, mchirp, q, chi),
                                coverage)
        except (OSError, KeyError, ValueError):
            print(f"bank cache {path} is unreadable; rebuilding it")
    bank = build_bank(spec, psd, progress=progress)

    def write(handle) -> None:
        np.savez(handle, mchirp=bank.mchirp, q=bank.q, chi_eff=bank.chi_eff,
                 pool_coverage=bank.pool_coverage,
                 spec=json.dumps(asdict(spec), sort_keys=True))

    atomic_write(path, write)
    return bank


# ---------------------------------------------------------------------------------------------
# Filtering
# ---------------------------------------------------------------------------------------------
def _sliding_max(x: Float[Tensor, "*batch time"], radius: int) -> Float[Tensor, "*batch window"]:
    """``out[..., i] = max(x[..., i : i + 2 * radius + 1])`` (``window = time - 2 * radius``)."""
    flat = x.reshape(-1, 1, x.shape[-1])
    pooled = F.max_pool1d(flat, kernel_size=2 * radius + 1, stride=1)
    return pooled.reshape(*x.shape[:-1], pooled.shape[-1])


class MatchedFilter:
    """Network matched-filter statistic of raw-strain batches ``(B, 3, N)`` against a bank.

    ``step`` 1 evaluates the complex SNR at every sample; ``step`` 2 at every other sample
    (0.98 ms), exactly, with a length ``N / 2`` inverse FFT of the bins below Nyquist: half the
    cost, at the price of a peak loss that grows with the whitened template's bandwidth.
    """

    def __init__(self, bank: TemplateBank, psd: np.ndarray | None = None,
                 window: tuple[float, float] = (0.1, 1.9), device: str | torch.device | None = None,
                 template_chunk: int | None = None, step: int = 1, sample_rate: float = SAMPLE_RATE,
                 n_samples: int = N_SAMPLES):
        import noise_model

        psd = noise_model.psd_array(n_samples, sample_rate) if psd is None else np.asarray(psd)
        self.device = torch.device(device if device is not None else
                                   ("cuda" if torch.cuda.is_available() else "cpu"))
        self.n_samples, self.sample_rate = n_samples, sample_rate
        if step not in (1, 2):
            raise G2NetError(f"step must be 1 or 2 samples, got {step}")
        self.n_bins = n_samples // 2  # bins 0 .. N/2 - 1; N/2 (Nyquist) carries nothing
        self.step = step  # samples between SNR series points
        self.n_times = n_samples // step
        white = whitened_unit_templates(bank.waveforms[None], psd[:, None, :], bank.spec.f_lower,
                                        n_samples, sample_rate)  # (3, T, n_freq)
        self.templates = torch.from_numpy(np.conj(white[..., :self.n_bins]).astype(np.complex64)
                                          ).to(self.device)
        taper, gain = whitening_kernel(psd, n_samples, sample_rate)  # the Whiten transform's
        self.taper = torch.from_numpy(taper).to(self.device)
        self.gain = torch.from_numpy(gain).to(torch.complex128).to(self.device)
        # Small chunks keep a CPU's working set in cache; a GPU wants large batched FFTs.
        self.template_chunk = template_chunk or (16 if self.device.type == "cpu" else 256)
        rate = sample_rate / self.step
        self.radius_l = int(math.floor(MAX_DT_HL * rate + 1e-9))
        self.radius_v = int(math.floor(MAX_DT_V * rate + 1e-9))
        margin = self.radius_v
        first = max(int(math.ceil(window[0] * rate)), margin)
        last = min(int(math.floor(window[1] * rate)), self.n_times - 1 - margin)
        if last < first:
            raise G2NetError(f"merger-time window {window} s is empty once the detectors' "
                             f"{MAX_DT_V * 1e3:.0f} ms margins are kept inside the example")
        self.first, self.last = first, last

    def __len__(self) -> int:
        return self.templates.shape[1]

    @torch.no_grad()
    def snr_series(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Squared SNR ``(B, 3, T, n_times)`` of every template in every detector (for tests)."""
        spectrum = self._spectrum(x)
        return torch.cat([self._chunk_snr2(spectrum, s, s + self.template_chunk)
                          for s in range(0, len(self), self.template_chunk)], dim=2)

    @torch.no_grad()
    def statistic(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Network SNR ``(B,)`` maximised over templates and merger times in the window."""
        spectrum = self._spectrum(x)
        best = torch.zeros(spectrum.shape[0], device=self.device)
        a, b = self.first, self.last + 1
        rl, rv = self.radius_l, self.radius_v
        for start in range(0, len(self), self.template_chunk):
            snr2 = self._chunk_snr2(spectrum, start, start + self.template_chunk,
                                    crop=(a - rv, b + rv))
            offset = rv  # index of time ``a`` inside the crop
            hanford = snr2[:, 0, :, offset:offset + b - a]
            livingston = _sliding_max(snr2[:, 1, :, offset - rl:offset + b - a + rl], rl)
            virgo = _sliding_max(snr2[:, 2], rv)
            network = hanford + livingston + virgo
            best = torch.maximum(best, network.flatten(1).amax(dim=1))
        return best.sqrt().cpu().numpy().astype(np.float64)

    def _spectrum(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (len(DETECTORS), self.n_samples):
            raise G2NetError(f"the matched filter takes (B, 3, {self.n_samples}) strain, got "
                             f"{tuple(x.shape)}")
        white = whiten_torch(x.to(self.device, torch.float64), self.taper, self.gain)
        return torch.fft.rfft(white, dim=-1)[..., :self.n_bins].to(torch.complex64)

    def _chunk_snr2(self, spectrum: torch.Tensor, start: int, stop: int,
                    crop: tuple[int, int] | None = None) -> torch.Tensor:
        product = spectrum[:, :, None, :] * self.templates[None, :, start:stop, :]
        # z_j = (2/N) sum_k W_k T_k* exp(2 pi i k j step / N) = (2 / step) * ifft(n = N / step)
        series = torch.fft.ifft(product, n=self.n_times, dim=-1)
        if crop is not None:
            series = series[..., crop[0]:crop[1]]
        return (series.real ** 2 + series.imag ** 2) * (2.0 / self.step) ** 2


# ---------------------------------------------------------------------------------------------
# Simulator defaults, data and command line
# ---------------------------------------------------------------------------------------------
def _simulator_prior() -> dict:
    """What the bank and the time window need from ``simulate.Priors()`` (the default prior)."""
    import simulate

    priors = simulate.Priors()
    return {"mass_range": tuple(float(m) for m in priors.mass_range),
            "spin_range": tuple(float(s) for s in priors.spin_range),
            "f_lower": float(simulate.F_LOWER),
            # inspiral kept in a template: the middle merger time. Shorter cuts lose the early
            # cycles of late mergers, longer ones wrap past the start of early mergers; over
            # light injections (10-20 Msun) 1.7 s matched best (mean match 0.992 against 0.988
            # for 1.5 s with exact parameters).
            "duration": 0.5 * float(priors.tc_range[0] + priors.tc_range[1]),
            # geocentric merger time, widened by the largest geocentre-to-detector delay
            "window": (float(priors.tc_range[0]) - EARTH_LIGHT_TIME,
                       float(priors.tc_range[1]) + EARTH_LIGHT_TIME)}


def default_bank_spec(size: int = DEFAULT_BANK_SIZE,
                      n_candidates: int = DEFAULT_CANDIDATES) -> BankSpec:
    """A bank covering the simulator's default prior (masses, spins, f_lower, merger times)."""
    prior = _simulator_prior()
    return BankSpec(size=size, mass_range=prior["mass_range"],
                    spin_range=prior["spin_range"], f_lower=prior["f_lower"],
                    duration=prior["duration"], n_candidates=n_candidates)


def default_window() -> tuple[float, float]:
    """Hanford merger times (s from the example start) the simulator's default prior produces."""
    return _simulator_prior()["window"]


def injection_matches(bank: TemplateBank, n_injections: int, seed: int = 0,
                      priors=None, detector: str = "H1", shortlist: int = 5,
                      progress: bool = True) -> np.ndarray:
    """Best match of each of ``n_injections`` simulator injections with the bank.

    Injections are drawn by ``simulate.draw_parameters`` (default prior unless ``priors``) and
    built by ``simulate.injection_signal`` (the detector's clean signal as it is written to the
    data, cut by the window). The bank is ranked by this module's whitened match, and the
    ``shortlist`` best templates are scored with ``pycbc.filter.match`` against the simulator's
    PSD (``noise_model.detector_psd``); the figure reported is PyCBC's.
    """
    import noise_model
    import simulate
    from pycbc.filter import match
    from pycbc.types import FrequencySeries, TimeSeries

    priors = simulate.Priors() if priors is None else priors
    row = DETECTORS.index(detector)
    f_lower = bank.spec.f_lower
    delta_f = SAMPLE_RATE / N_SAMPLES
    psd_series = noise_model.detector_psd(detector, delta_f, N_SAMPLES // 2 + 1,
                                          low_frequency_cutoff=f_lower)
    psd = noise_model.psd_array()[row]
    white_bank = torch.from_numpy(whitened_unit_templates(bank.waveforms, psd, f_lower))
    rng = np.random.default_rng(seed)
    result = np.empty(n_injections)
    draws = range(n_injections)
    if progress:
        draws = tqdm(draws, desc="injection matches", leave=False)
    for i in draws:
        signal = simulate.injection_signal(simulate.draw_parameters(rng, priors, bank.spec.approximant))[row]
        white = whitened_unit_templates(np.fft.rfft(signal) / SAMPLE_RATE, psd, f_lower)
        ranked = torch.topk(max_match(torch.from_numpy(white), white_bank),
                            min(shortlist, len(bank))).indices
        series = TimeSeries(signal, delta_t=1.0 / SAMPLE_RATE)
        result[i] = max(match(series, FrequencySeries(bank.waveforms[j], delta_f=delta_f),
                              psd=psd_series, low_frequency_cutoff=f_lower)[0]
                        for j in ranked.tolist())
    return result


def iter_batches(table: pd.DataFrame, cache: np.ndarray | None, batch_size: int,
                 threads: int = 8) -> Iterator[np.ndarray]:
    """Batches ``(b, 3, N)`` float64 in table order, from the cache or the example files."""
    from prep_data import load_example

    def read(path: str) -> np.ndarray:
        array, problem = load_example(Path(path))
        if problem is not None:
            raise G2NetError(f"example {path} is {problem[0]} ({problem[1]}); rerun prep_data.py "
                             "to check the input folder")
        return array

    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(table), batch_size):
            if cache is not None:
                yield np.asarray(cache[start:start + batch_size], dtype=np.float64)
            else:
                yield np.stack(list(pool.map(read, table["path"].iloc[start:start + batch_size])))


def split_table(root: Path, split: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    """``train.csv`` / ``test.csv`` of ``root`` (paths resolved) and its cache when there is one."""
    from datasets import load_cache, read_prepared

    table = read_prepared(root / f"{split}.csv", "training" if split == "train" else "test")
    cache_path = root / f"{split}_cache.npy"
    cache = load_cache(cache_path, table) if cache_path.is_file() else None
    return table, cache


def run_split(root: Path, split: str, bank_size: int = DEFAULT_BANK_SIZE, batch_size: int = 8,
              device: str | None = None, n_candidates: int = DEFAULT_CANDIDATES,
              step: int = 1) -> dict:
    """Score every example of a split and write it in the experiment layout; returns a summary."""
    import noise_model

    table, cache = split_table(root, split)
    psd = noise_model.psd_array()
    bank = load_or_build_bank(default_bank_spec(bank_size, n_candidates), psd)
    filt = MatchedFilter(bank, psd, window=default_window(), device=device, step=step)
    scores = np.empty(len(table), dtype=np.float64)
    start_time, start_cpu = time.perf_counter(), time.process_time()
    done = 0
    with tqdm(total=len(table), desc=f"matched filter ({split})", unit="ex") as bar:
        for batch in iter_batches(table, cache, batch_size):
            scores[done:done + len(batch)] = filt.statistic(batch)
            done += len(batch)
            bar.update(len(batch))
    elapsed = time.perf_counter() - start_time
    cpu = time.process_time() - start_cpu
    rate = len(table) / max(elapsed, 1e-9)
    print(f"matched filter: {len(table)} examples in {elapsed:.1f} s = {rate:.1f} examples/s "
          f"({len(table) / max(cpu, 1e-9):.1f} per CPU-second; {len(bank)} templates, step "
          f"{step}, device {filt.device}, {torch.get_num_threads()} threads)")
    logits = (scores - SNR_OFFSET).astype(np.float32)
    out = results_dir() / OUT_NAME
    if split == "test":
        atomic_save_npy(out / "predictions.npy", logits[None, :, None])
    else:
        atomic_save_npy(out / "outoffolds.npy", logits[:, None])
    summary = {"split": split, "n_examples": len(table), "seconds": elapsed,
               "examples_per_second": rate, "cpu_seconds": cpu, "n_templates": len(bank),
               "step": step,
               "pool_coverage": bank.pool_coverage, "bank": asdict(bank.spec),
               "bank_file": bank_cache_path(bank.spec, psd).name, "window_s": default_window(),
               "device": str(filt.device), "threads": torch.get_num_threads(),
               "snr_offset": SNR_OFFSET}
    atomic_write(out / f"summary_{split}.json",
                 lambda handle: handle.write(json.dumps(summary, indent=2)), mode="w")
    return summary


@cli_errors
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=None,
                        help="folder with train.csv / test.csv from prep_data.py "
                             "(default: G2NET_INPUT_DIR or input/)")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--bank-size", type=int, default=DEFAULT_BANK_SIZE)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--step", type=int, choices=(1, 2), default=1,
                        help="SNR time series every sample (1) or every other sample (2: twice "
                             "as fast, peaks about 1%% lower)")
    parser.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES,
                        help="candidate pool the bank is selected from")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch CPU threads; one is the robust choice: on cores shared with "
                             "other jobs two intra-op threads stall each other")
    parser.add_argument("--check-bank", type=int, default=0, metavar="N",
                        help="only measure the bank: best match of N default-prior injections")
    parser.add_argument("--check-seed", type=int, default=1,
                        help="seed of the --check-bank injections")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise G2NetError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads < 1:
        raise G2NetError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    if args.check_bank:
        import noise_model

        bank = load_or_build_bank(default_bank_spec(args.bank_size, args.candidates))
        spacing = bank.neighbour_matches(noise_model.psd_array())
        print(f"spacing: match with the nearest other template, median {np.median(spacing):.3f}"
              f" (5%-95%: {np.percentile(spacing, 5):.3f}-{np.percentile(spacing, 95):.3f})")
        matches = injection_matches(bank, args.check_bank, seed=args.check_seed)
        print(f"bank of {len(bank)} templates (covers {bank.pool_coverage:.1%} of its "
              f"{bank.spec.n_candidates}-injection pool at match {MATCH_TARGET}): "
              f"{np.mean(matches >= MATCH_TARGET):.1%} of "
              f"{len(matches)} injections have match >= {MATCH_TARGET} (5th percentile "
              f"{np.percentile(matches, 5):.3f}, median {np.median(matches):.3f})")
        return
    root = args.input if args.input is not None else input_dir()
    if not root.is_dir():
        raise G2NetError(f"input folder {root} does not exist; pass --input or set G2NET_INPUT_DIR")
    run_split(root, args.split, args.bank_size, args.batch_size, args.device, args.candidates,
              args.step)


if __name__ == "__main__":
    main()
