"""The matched filter as a search of continuous strain: the reference the ML searches are judged by.

``python matched_filter.py --strain FILE --output FILE [--slides K] [--bank-size N]``. The template
parameters are the matched-filter baseline's bank (:mod:`g2net.filtering.bank`: aligned-spin
IMRPhenomD covering the simulator's prior), but each template keeps its whole inspiral from 20 Hz
(up to the lightest template's chirp time) and the data is filtered in 16 s windows, so the filter
is the full matched filter a long stretch allows, not the 2 s cut of the example-level baseline.
Per window: whiten data and templates by the PSD estimated from the data around it (the engine's
Welch estimate, interpolated to the window's grid), complex SNR of every template in every
detector, network statistic

    rho_net(t)^2 = rho_1(t)^2 + sum_d max_{|dt| <= light travel 1-d} rho_d(t + dt)^2

maximised over templates, at merger times ``t`` in the window's middle (consecutive windows cover
each time once), then clustered like the network search: ``stat`` is ``rho_net``, ``time`` its
merger time in the first detector.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from g2net.filtering.bank import DEFAULT_BANK_SIZE, TemplateBank, default_bank_spec, load_or_build_bank
from g2net.filtering.templates import (TEMPLATE_POST_MERGER, sliding_max, template_waveform,
                                       whitened_unit_templates)
from g2net.search.engine import search_strain
from g2net.search.options import SearchOptions, check_output, trigger_attrs
from g2net.search.strain_io import StrainFile
from g2net.search.timeslides import TimeSlides, light_travel_time
from g2net.search.triggers import write_triggers
from g2net.whitening import whiten_with_psd
from utils import SAMPLE_RATE, G2NetError

WINDOW_SECONDS = 16  # filtered at a time


TAPER_GUARD = 0.1 * WINDOW_SECONDS / 2 + 0.1  # s at each end under the Tukey(0.1) whitening taper


class StrainMatchedFilter:
    """Scorer for :func:`search.search_strain`: ``(stat, merger offset in s)`` of raw windows."""

    def __init__(self, bank: TemplateBank, detectors: Sequence[str], template_seconds: float,
                 sample_rate: float = SAMPLE_RATE, window_seconds: int = WINDOW_SECONDS,
                 device: str | None = None, template_chunk: int = 16, bin_seconds: float = 1.0):
        self.rate = float(sample_rate)
        self.n = int(window_seconds * sample_rate)
        self.n_bins = self.n // 2
        self.f_lower = bank.spec.f_lower
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        mass1, mass2 = bank.masses
        self.waveforms = np.stack([
            template_waveform(m1, m2, chi, chi, f_lower=self.f_lower, duration=template_seconds,
                                 n_samples=self.n, sample_rate=self.rate, approximant=bank.spec.approximant)
            for m1, m2, chi in zip(mass1, mass2, bank.chi_eff)])
        self.radius = [int(math.floor(light_travel_time((detectors[0], d)) * self.rate + 1e-9))
                       for d in detectors[1:]]
        margin = max(self.radius, default=0)
        first = int(math.ceil((template_seconds + TAPER_GUARD) * self.rate)) + margin
        last = self.n - int(math.ceil((TEMPLATE_POST_MERGER + TAPER_GUARD) * self.rate)) - margin
        if last <= first:
            raise G2NetError(f"templates of {template_seconds:g} s do not fit {window_seconds} s windows")
        self.first, self.last = first, last  # merger samples [first, last) of each window
        self.template_chunk = template_chunk
        self.bin_seconds = bin_seconds
        self._cached: dict[int, tuple] = {}
        self._sum: torch.Tensor | None = None  # network SNR^2 buffer of combine

    @property
    def stride(self) -> float:
        """Seconds between windows so that consecutive windows' merger ranges tile time."""
        return (self.last - self.first) / self.rate

    def _detector_templates(self, psd: np.ndarray, detector: int) -> tuple[np.ndarray, torch.Tensor]:
        """``(psd on the window's grid, conjugate whitened unit templates (T, bins))`` of one
        detector's PSD (the last one is kept: consecutive windows share their block's PSD)."""
        key = (detector, psd.tobytes())
        if self._cached.get(detector, (None,))[0] != key:
            freqs = np.fft.rfftfreq(self.n, 1.0 / self.rate)
            piece = np.fft.rfftfreq(2 * (psd.shape[-1] - 1), 1.0 / self.rate)
            fine = np.interp(freqs, piece, psd)
            white = whitened_unit_templates(self.waveforms, fine[None, :], self.f_lower, self.n, self.rate)
            templates = torch.from_numpy(np.conj(white[..., :self.n_bins]).astype(np.complex64)).to(self.device)
            self._cached[detector] = (key, fine, templates)
        return self._cached[detector][1], self._cached[detector][2]

    @torch.no_grad()
    def prepare(self, windows: np.ndarray, psd: np.ndarray, detector: int) -> torch.Tensor:
        """``(B, templates, merger samples)`` SNR^2 of one detector's raw windows ``(B, n)``: at
        each merger sample for the first detector; for the others the largest within the light
        travel time to the first (what the network statistic adds)."""
        fine, templates = self._detector_templates(psd, detector)
        spectrum = torch.from_numpy(np.fft.rfft(whiten_with_psd(windows[:, None, :], fine[None], self.rate),
                                                axis=-1)[:, 0, :self.n_bins].astype(np.complex64)
                                    ).to(self.device)
        radius = self.radius[detector - 1] if detector else 0
        out = torch.empty((windows.shape[0], templates.shape[0], self.last - self.first), device=self.device)
        for start in range(0, templates.shape[0], self.template_chunk):
            product = spectrum[:, None, :] * templates[None, start:start + self.template_chunk]
            series = torch.fft.ifft(product, n=self.n, dim=-1)
            snr2 = (series.real ** 2 + series.imag ** 2) * 4.0  # z = 2 ifft(...) (matched_filter.py)
            part = snr2[..., self.first - radius:self.last + radius]
            out[:, start:start + self.template_chunk] = sliding_max(part, radius) if radius else part
        return out

    @torch.no_grad()
    def combine(self, prepared: Sequence[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """``(stat, offset)`` of shape (B, bins): the loudest network SNR and its merger time (s
        from the window start) in each ``bin_seconds`` of the window's merger range, so that a
        quiet signal is not hidden by a louder noise peak seconds away in the same window."""
        first, *others = prepared
        if self._sum is None or self._sum.shape != first.shape:  # reused: no page faults per call
            self._sum = torch.empty_like(first)
        network = self._sum.copy_(first)
        for part in others:
            network.add_(part)
        best = network.amax(dim=1)
        width = int(round(self.bin_seconds * self.rate))
        n_bins = -(-best.shape[1] // width)
        padded = torch.nn.functional.pad(best, (0, n_bins * width - best.shape[1]), value=-1.0)
        value, index = padded.reshape(best.shape[0], n_bins, width).max(dim=2)
        offset = (self.first + np.arange(n_bins) * width + index.cpu().numpy()) / self.rate
        return value.clamp(min=0).sqrt().cpu().numpy().astype(np.float64), offset

    def __call__(self, batch: np.ndarray, psd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(stat, offset)`` of raw windows ``(B, detectors, n)`` (see :meth:`combine`)."""
        return self.combine([self.prepare(batch[:, j], psd[j], j) for j in range(batch.shape[1])])

    def slide_step(self, detectors: Sequence[str]) -> float:
        """The shortest slide step (s) that is a whole number of strides and exceeds the window
        plus the light travel time, so that time slides reuse each detector's filtered windows."""
        least = self.n / self.rate + light_travel_time(tuple(detectors))
        return (math.floor(least / self.stride) + 1) * self.stride


def template_seconds(bank: TemplateBank) -> float:
    """Whole inspiral from f_lower of the bank's lightest (longest) template, plus 0.2 s."""
    from pycbc.conversions import tau0_from_mass1_mass2

    mass1, mass2 = bank.masses
    return float(np.max(tau0_from_mass1_mass2(mass1, mass2, bank.spec.f_lower))) + 0.2


def run(strain_path: str, output: str, options: SearchOptions, bank_size: int = DEFAULT_BANK_SIZE,
        progress: bool = True, slide_step: float | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Search ``strain_path``; ``slide_step`` None: :meth:`StrainMatchedFilter.slide_step`."""
    output_path = check_output(output, strain_path, overwrite)
    with StrainFile(strain_path, sample_rate=SAMPLE_RATE) as strain:
        bank = load_or_build_bank(default_bank_spec(bank_size), progress=progress)
        scorer = StrainMatchedFilter(bank, strain.detectors, template_seconds(bank))
        step = scorer.slide_step(strain.detectors) if slide_step is None else slide_step
        options = SearchOptions(**{**options.__dict__, "window": scorer.n, "stride": scorer.stride,
                                   "psd_duration": max(options.psd_duration, 4.0 * WINDOW_SECONDS),
                                   "slides": TimeSlides(options.slides.n_slides, step)})
        result = search_strain(strain, scorer, options, progress)
        write_triggers(output_path, result["time"], result["stat"], result["var"],
                       trigger_attrs(strain, options, result, search="matched_filter",
                                     bank_size=len(bank)))
    print(f"{len(result['time'])} triggers over {result['duration']:g} s of "
          f"{'slid ' if options.slides.n_slides else ''}strain ({len(bank)} templates) -> {output_path}")
    return result
