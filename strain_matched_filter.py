"""The matched filter as a search of continuous strain: the reference the ML searches are judged by.

``python matched_filter.py --strain FILE --output FILE [--slides K] [--bank-size N]`` (also
``python strain_matched_filter.py ...``). The template parameters are the matched-filter baseline's
bank (matched_filter.py: aligned-spin IMRPhenomD covering the simulator's prior), but each template
keeps its whole inspiral from 20 Hz (up to the lightest template's chirp time) and the data is
filtered in 16 s windows, so the filter is the full matched filter a long stretch allows, not the
2 s cut of the example-level baseline. Per window: whiten data and templates by the PSD estimated
from the data around it (search.py's Welch estimate, interpolated to the window's grid), complex
SNR of every template in every detector, network statistic

    rho_net(t)^2 = rho_1(t)^2 + sum_d max_{|dt| <= light travel 1-d} rho_d(t + dt)^2

maximised over templates, at merger times ``t`` in the window's middle (consecutive windows cover
each time once), then clustered like search.py: ``stat`` is ``rho_net``, ``time`` its merger time
in the first detector.
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Sequence

import numpy as np
import torch

import matched_filter as mf
from search import SearchOptions, add_search_options, check_output, options_from_args, search_strain
from search import trigger_attrs, whiten
from strain_io import StrainFile, write_triggers
from timeslides import light_travel_time
from utils import SAMPLE_RATE, G2NetError, cli_errors

WINDOW_SECONDS = 16  # filtered at a time
TAPER_GUARD = 0.1 * WINDOW_SECONDS / 2 + 0.1  # s at each end under the Tukey(0.1) whitening taper


class StrainMatchedFilter:
    """Scorer for :func:`search.search_strain`: ``(stat, merger offset in s)`` of raw windows."""

    def __init__(self, bank: mf.TemplateBank, detectors: Sequence[str], template_seconds: float,
                 sample_rate: float = SAMPLE_RATE, window_seconds: int = WINDOW_SECONDS,
                 device: str | None = None, template_chunk: int = 16, bin_seconds: float = 1.0):
        self.rate = float(sample_rate)
        self.n = int(window_seconds * sample_rate)
        self.n_bins = self.n // 2
        self.f_lower = bank.spec.f_lower
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        mass1, mass2 = bank.masses
        self.waveforms = np.stack([
            mf.template_waveform(m1, m2, chi, chi, f_lower=self.f_lower, duration=template_seconds,
                                 n_samples=self.n, sample_rate=self.rate, approximant=bank.spec.approximant)
            for m1, m2, chi in zip(mass1, mass2, bank.chi_eff)])
        self.radius = [int(math.floor(light_travel_time((detectors[0], d)) * self.rate + 1e-9))
                       for d in detectors[1:]]
        margin = max(self.radius, default=0)
        first = int(math.ceil((template_seconds + TAPER_GUARD) * self.rate)) + margin
        last = self.n - int(math.ceil((mf.TEMPLATE_POST_MERGER + TAPER_GUARD) * self.rate)) - margin
        if last <= first:
            raise G2NetError(f"templates of {template_seconds:g} s do not fit {window_seconds} s windows")
        self.first, self.last = first, last  # merger samples [first, last) of each window
        self.template_chunk = template_chunk
        self.bin_seconds = bin_seconds
        self._psd_key: bytes | None = None

    @property
    def stride(self) -> float:
        """Seconds between windows so that consecutive windows' merger ranges tile time."""
        return (self.last - self.first) / self.rate

    def _templates(self, psd: np.ndarray) -> torch.Tensor:
        key = psd.tobytes()
        if key != self._psd_key:
            freqs = np.fft.rfftfreq(self.n, 1.0 / self.rate)
            piece = np.fft.rfftfreq(2 * (psd.shape[-1] - 1), 1.0 / self.rate)
            self._psd = np.stack([np.interp(freqs, piece, row) for row in psd])
            white = mf.whitened_unit_templates(self.waveforms[None], self._psd[:, None, :], self.f_lower,
                                               self.n, self.rate)
            self._white = torch.from_numpy(np.conj(white[..., :self.n_bins]).astype(np.complex64)
                                           ).to(self.device)
            self._psd_key = key
        return self._white

    @torch.no_grad()
    def __call__(self, batch: np.ndarray, psd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(stat, offset)`` of shape (B, bins): the loudest network SNR and its merger time (s
        from the window start) in each ``bin_seconds`` of the window's merger range, so that a
        quiet signal is not hidden by a louder noise peak seconds away in the same window."""
        templates = self._templates(psd)
        spectrum = torch.from_numpy(np.fft.rfft(whiten(batch, self._psd, self.rate), axis=-1)
                                    [..., :self.n_bins].astype(np.complex64)).to(self.device)
        best = torch.zeros((batch.shape[0], self.last - self.first), device=self.device)
        for start in range(0, templates.shape[1], self.template_chunk):
            product = spectrum[:, :, None, :] * templates[None, :, start:start + self.template_chunk]
            series = torch.fft.ifft(product, n=self.n, dim=-1)
            snr2 = (series.real ** 2 + series.imag ** 2) * 4.0  # z = 2 ifft(...) (matched_filter.py)
            network = snr2[:, 0, :, self.first:self.last]
            for d, radius in enumerate(self.radius, start=1):
                part = snr2[:, d, :, self.first - radius:self.last + radius]
                network = network + mf._sliding_max(part, radius)
            best = torch.maximum(best, network.amax(dim=1))
        width = int(round(self.bin_seconds * self.rate))
        n_bins = -(-best.shape[1] // width)
        padded = torch.nn.functional.pad(best, (0, n_bins * width - best.shape[1]), value=-1.0)
        value, index = padded.reshape(best.shape[0], n_bins, width).max(dim=2)
        offset = (self.first + np.arange(n_bins) * width + index.cpu().numpy()) / self.rate
        return value.clamp(min=0).sqrt().cpu().numpy().astype(np.float64), offset


def template_seconds(bank: mf.TemplateBank) -> float:
    """Whole inspiral from f_lower of the bank's lightest (longest) template, plus 0.2 s."""
    from pycbc.conversions import tau0_from_mass1_mass2

    mass1, mass2 = bank.masses
    return float(np.max(tau0_from_mass1_mass2(mass1, mass2, bank.spec.f_lower))) + 0.2


def run(strain_path: str, output: str, options: SearchOptions, bank_size: int = mf.DEFAULT_BANK_SIZE,
        progress: bool = True) -> dict[str, Any]:
    output_path = check_output(output)
    with StrainFile(strain_path, sample_rate=SAMPLE_RATE) as strain:
        bank = mf.load_or_build_bank(mf.default_bank_spec(bank_size), progress=progress)
        scorer = StrainMatchedFilter(bank, strain.detectors, template_seconds(bank))
        options = SearchOptions(**{**options.__dict__, "window": scorer.n, "stride": scorer.stride,
                                   "psd_duration": max(options.psd_duration, 4.0 * WINDOW_SECONDS)})
        result = search_strain(strain, scorer, options, progress)
        write_triggers(output_path, result["time"], result["stat"], result["var"],
                       trigger_attrs(strain, options, result, search="matched_filter",
                                     bank_size=len(bank)))
    print(f"{len(result['time'])} triggers over {result['duration']:g} s of "
          f"{'slid ' if options.slides.n_slides else ''}strain ({len(bank)} templates) -> {output_path}")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strain", required=True, help="strain file in the MLGWSC-1 layout")
    add_search_options(parser)
    parser.add_argument("--bank-size", type=int, default=mf.DEFAULT_BANK_SIZE, help="templates")
    return parser


@cli_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    return run(args.strain, args.output, options_from_args(args), args.bank_size, not args.no_progress)


if __name__ == "__main__":
    main()
