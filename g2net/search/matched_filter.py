"""The matched filter as a search of continuous strain: the reference the ML searches are judged by.

``python matched_filter.py --strain FILE --output FILE [--slides K] [--bank-file FILE | --bank-size N]``.
The templates are a bank's ``(mass1, mass2, spin1z, spin2z)`` of one approximant from its
``f_lower``: the reference bank (:mod:`g2net.filtering.reference_bank`, ``--bank-file``) or the
matched-filter baseline's farthest-point bank (:mod:`g2net.filtering.bank`, ``--bank-size``).
Each template keeps its whole inspiral from ``f_lower`` (PyCBC's chirp time of the longest
template), and the data is filtered in windows long enough that most of each is usable (16, 32, ...
s: :func:`window_seconds`), so the filter is the full matched filter a long stretch allows.
Per window: whiten data and templates by the PSD estimated from the data around it (the engine's
Welch estimate over ``--psd-duration`` s, interpolated to the window's grid), complex SNR of every
template in every detector, network statistic

    rho_net(t)^2 = rho_1(t)^2 + sum_d max_{|dt| <= light travel 1-d} rho_d(t + dt)^2

maximised over templates, at merger times ``t`` in the window's middle (consecutive windows cover
each time once), then clustered like the network search: ``stat`` is ``rho_net``, ``time`` its
merger time in the first detector. With time slides, templates are filtered a pass at a time (as
many as fit the memory the slides need: each detector's series are kept and re-paired in every
slide) and every output keeps the loudest pass; at zero lag each chunk of templates is added over
detectors and maximised as soon as it is filtered, so all templates go in one pass and nothing is
held. The search saves its progress beside ``--output`` and a rerun of the same command resumes
(g2net.search.checkpoint).

With ``--threshold`` the combination is exact only where it can matter: at each merger sample the
sum over detectors of each detector's loudest template bounds the network statistic from above,
so samples whose bound stays below the threshold are dropped without adding the templates' series.
The triggers are those of the full combination with the same threshold; a month of time slides then
costs what filtering the data once costs, not templates x slides additions.
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from g2net.filtering.bank import DEFAULT_BANK_SIZE, default_bank_spec, load_or_build_bank
from g2net.filtering.templates import (TEMPLATE_POST_MERGER, TEMPLATE_TAPER, check_template_norms, sliding_max,
                                       template_waveform)
from g2net.search.checkpoint import SearchCheckpoint, checkpoint_path, recorded_fingerprint, strain_identity
from g2net.search.engine import search_strain
from g2net.search.options import SearchOptions, check_output, trigger_attrs
from g2net.search.strain_io import StrainFile
from g2net.search.timeslides import TimeSlides, light_travel_time
from g2net.search.triggers import write_triggers
from g2net.spectral import inverse_asd
from g2net.whitening import whiten_with_psd
from utils import SAMPLE_RATE, G2NetError

MIN_WINDOW_SECONDS = 16


MIN_USABLE = 0.6  # windows grow (powers of two) until this share of each holds merger times


PSD_WINDOWS = 4  # default --psd-duration: this many windows


MEMORY_BUDGET = 1 << 30  # the least memory of filtered windows one pass of templates may hold
MEMORY_SHARE = 0.25  # of the memory available when a search starts, for one pass's filtered windows


def available_memory() -> int | None:
    """Bytes the system can still give (``MemAvailable`` of /proc/meminfo, else free pages); None
    where neither can be read."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _checkpointed_templates_per_pass(path: Path) -> int | None:
    """The pass size a search's checkpoint was made with, so that resuming it is not turned into
    starting over by memory that is freer or fuller than when it was killed."""
    value = ((recorded_fingerprint(path) or {}).get("filter") or {}).get("templates_per_pass")
    return value if isinstance(value, int) and value >= 1 else None


def memory_budget() -> int:
    """Bytes of filtered windows one pass of templates may hold: ``MEMORY_SHARE`` of the memory
    available, at least ``MEMORY_BUDGET``. Every pass pays the time slides' combination and the
    data's preparation again, so a long slid background in passes of few templates is several
    times slower (470 slides of 21.4 s in 1 GiB passes: 11 templates a pass, 175 passes)."""
    available = available_memory()
    return MEMORY_BUDGET if available is None else max(MEMORY_BUDGET, int(MEMORY_SHARE * available))


FFT_ROWS = 8  # inverse transforms per torch.fft call: larger batches (20-80 MB of complex64) made
# the FFT allocate fresh memory each call, a third of the filter's CPU time in page faults


CHECKPOINT_EVERY = 60.0  # s between checkpoints (and at the end of every pass of templates)


COARSE = 64  # samples per cell of the coarse bound a time slide tests first (see _combine_above)


class Bank(Protocol):
    """What the filter needs of a bank (TemplateBank and ReferenceBank both have it)."""

    @property
    def masses(self) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    def spins(self) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    def approximant(self) -> str: ...

    @property
    def f_lower(self) -> float: ...

    def __len__(self) -> int: ...


def taper_guard(window_seconds: float) -> float:
    """s at each end of a window under the Tukey(0.1) whitening taper, plus 0.1 s."""
    return 0.1 * window_seconds / 2 + 0.1


def template_seconds(bank: Bank) -> float:
    """Whole inspiral from ``f_lower`` of the bank's longest template (PyCBC's IMR chirp time for
    the approximants it knows, spins included; else 1.2 x the Newtonian one), plus its taper."""
    from pycbc import pnutils
    from pycbc.conversions import tau0_from_mass1_mass2

    (mass1, mass2), (spin1, spin2) = bank.masses, bank.spins
    try:
        durations = pnutils.get_imr_duration(np.asarray(mass1), np.asarray(mass2), np.asarray(spin1),
                                             np.asarray(spin2), bank.f_lower, bank.approximant)
    except Exception:  # an approximant without a chirp-time function: a generous Newtonian bound
        durations = 1.2 * tau0_from_mass1_mass2(mass1, mass2, bank.f_lower)
    return float(np.max(durations)) + TEMPLATE_TAPER + 0.1


def window_seconds(template_s: float) -> int:
    """The shortest window (a power of two, >= 16 s) whose usable share for merger times, after
    the template before it and the tapers, is at least ``MIN_USABLE``: the filtering cost per
    second of strain is about log(window) / usable share."""
    seconds = MIN_WINDOW_SECONDS
    while (seconds - template_s - TEMPLATE_POST_MERGER - 2 * taper_guard(seconds)) < MIN_USABLE * seconds:
        seconds *= 2
    return seconds


_longest_template, _window_for = template_seconds, window_seconds  # the filter's arguments shadow them


def bank_digest(bank: Bank) -> str:
    """Identity of a bank's templates (what a checkpoint is validated against)."""
    digest = hashlib.sha256(f"{bank.approximant}|{bank.f_lower!r}".encode())
    for values in (*bank.masses, *bank.spins):
        digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


class StrainMatchedFilter:
    """Scorer for :func:`engine.search_strain`: ``(stat, merger offset in s)`` of raw windows, with
    every template of ``bank`` (or those of ``templates``, indices into it); a
    :class:`engine.MultiPassScorer` of ``templates_per_pass`` templates a pass."""

    def __init__(self, bank: Bank, detectors: Sequence[str], template_seconds: float | None = None,
                 sample_rate: float = SAMPLE_RATE, window_seconds: int | None = None,
                 device: str | None = None, template_chunk: int = 8, bin_seconds: float = 1.0,
                 templates_per_pass: int | None = None, templates: np.ndarray | None = None,
                 threshold: float | None = None):
        self.bank, self.detectors = bank, tuple(detectors)
        self.threshold = threshold  # network SNR below which no output is needed (None: all are)
        self.template_seconds = _longest_template(bank) if template_seconds is None \
            else float(template_seconds)
        self.window_seconds = _window_for(self.template_seconds) if window_seconds is None \
            else int(window_seconds)
        self.rate = float(sample_rate)
        self.n = int(self.window_seconds * sample_rate)
        self.n_bins = self.n // 2
        self.f_lower = float(bank.f_lower)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.templates = np.arange(len(bank)) if templates is None else np.asarray(templates)
        self.templates_per_pass = len(self.templates) if templates_per_pass is None \
            else max(1, int(templates_per_pass))
        self.radius = [int(math.floor(light_travel_time((detectors[0], d)) * self.rate + 1e-9))
                       for d in detectors[1:]]
        margin = max(self.radius, default=0)
        guard = taper_guard(self.window_seconds)
        first = int(math.ceil((self.template_seconds + guard) * self.rate)) + margin
        last = self.n - int(math.ceil((TEMPLATE_POST_MERGER + guard) * self.rate)) - margin
        if last <= first:
            raise G2NetError(f"templates of {self.template_seconds:g} s do not fit "
                             f"{self.window_seconds} s windows")
        self.first, self.last = first, last  # merger samples [first, last) of each window
        self.template_chunk = template_chunk
        self.bin_seconds = bin_seconds
        self.bin_width = max(1, int(round(bin_seconds * sample_rate)))
        self.n_out_bins = -(-(last - first) // self.bin_width)
        self.n_coarse = -(-(last - first) // COARSE)
        self._waveforms: np.ndarray | None = None  # made when first filtered (one pass at a time)
        self._spectra: tuple[torch.Tensor, np.ndarray] | None = None  # see _template_spectra
        self._cached: dict[int, tuple] = {}
        self._sum: torch.Tensor | None = None  # network SNR^2 buffer of combine
        self._work: tuple | None = None  # prepare's reused arrays (see _buffers)

    # ------------------------------------------------------------------ passes of templates
    @property
    def n_passes(self) -> int:
        return -(-len(self.templates) // self.templates_per_pass)

    def for_pass(self, index: int) -> "StrainMatchedFilter":
        """The filter of pass ``index``'s templates (itself when there is one pass)."""
        if self.n_passes == 1:
            return self
        chosen = self.templates[index * self.templates_per_pass:(index + 1) * self.templates_per_pass]
        return StrainMatchedFilter(self.bank, self.detectors, self.template_seconds, self.rate,
                                   self.window_seconds, str(self.device), self.template_chunk,
                                   self.bin_seconds, templates=chosen, threshold=self.threshold)

    @property
    def waveforms(self) -> np.ndarray:
        """Frequency-domain templates ``(T, n // 2 + 1)``, whole inspirals from ``f_lower``."""
        if self._waveforms is None:
            (mass1, mass2), (spin1, spin2) = self.bank.masses, self.bank.spins
            self._waveforms = np.stack([
                template_waveform(mass1[i], mass2[i], spin1[i], spin2[i], f_lower=self.f_lower,
                                  duration=self.template_seconds, n_samples=self.n,
                                  sample_rate=self.rate, approximant=self.bank.approximant)
                for i in self.templates])
        return self._waveforms

    def describe(self) -> dict[str, Any]:
        """What makes this filter's triggers what they are (a checkpoint is validated against it)."""
        return {"bank": bank_digest(self.bank), "templates": len(self.templates),
                "templates_per_pass": self.templates_per_pass, "window": self.n, "rate": self.rate,
                "template_seconds": self.template_seconds, "bin_seconds": self.bin_seconds,
                "f_lower": self.f_lower, "approximant": self.bank.approximant}

    @staticmethod
    def bytes_per_template(options: SearchOptions, n_detectors: int, sample_rate: float) -> float:
        """Bytes of filtered windows one template holds during a search (float32 SNR^2 series):
        every detector's current blocks, and the later detectors' windows ahead for the slides."""
        block = max(options.psd_duration - options.window / sample_rate, options.stride)
        ahead = (n_detectors - 1) * options.slides.n_slides * options.slides.step
        return 4.0 * sample_rate * (ahead + 2 * block * n_detectors)

    # ------------------------------------------------------------------ filtering
    @property
    def stride(self) -> float:
        """Seconds between windows so that consecutive windows' merger ranges tile time."""
        return (self.last - self.first) / self.rate

    @property
    def conj_templates(self) -> torch.Tensor:
        """``conj(h~) x sample rate`` of every template ``(T, bins)`` (complex64, on the device), bins
        below ``f_lower`` zero: made once a pass. Whitening by a block's PSD is then a gain on the
        data's spectrum and a norm per template (:meth:`_whitening`), not T x bins new templates."""
        return self._template_spectra()[0]

    def _template_spectra(self) -> tuple[torch.Tensor, np.ndarray]:
        """``(conj_templates, |h~ x sample rate|^2 (T, bins) float64, what the norms sum)``."""
        if self._spectra is None:
            freqs = np.fft.rfftfreq(self.n, 1.0 / self.rate)[:self.n_bins]
            wave = self.waveforms[:, :self.n_bins] * self.rate  # the rfft of the sampled template
            wave[:, freqs < self.f_lower] = 0.0
            self._spectra = (torch.from_numpy(np.conj(wave).astype(np.complex64)).to(self.device),
                             np.abs(wave) ** 2)
        return self._spectra

    def _whitening(self, psd: np.ndarray, detector: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """``(psd on the window's grid, its whitening gain (bins,), 4 / (h|h) of every template
        (T,))`` for one detector's PSD (the last one is kept: consecutive windows share their
        block's PSD). The filter's SNR^2 is ``4 |ifft(D~ gain conj(h~) rate)|^2 / (h|h)``, the
        whitened unit templates of ``whitened_unit_templates`` met by the whitened data."""
        key = (detector, psd.tobytes())
        if self._cached.get(detector, (None,))[0] != key:
            freqs = np.fft.rfftfreq(self.n, 1.0 / self.rate)
            piece = np.fft.rfftfreq(2 * (psd.shape[-1] - 1), 1.0 / self.rate)
            fine = np.interp(freqs, piece, psd)
            gain = inverse_asd(fine, self.rate)[:self.n_bins]  # the Nyquist bin is not filtered
            norm2 = 2.0 / self.n * (self._template_spectra()[1] @ gain ** 2)
            check_template_norms(norm2)
            self._cached[detector] = (key, fine, torch.from_numpy(gain.astype(np.float32)).to(self.device),
                                      torch.from_numpy((4.0 / norm2).astype(np.float32)).to(self.device))
        return self._cached[detector][1:]

    def _spectrum(self, windows: np.ndarray, fine: np.ndarray, gain: torch.Tensor) -> torch.Tensor:
        """One detector's raw windows ``(B, n)`` whitened by ``fine``, transformed and multiplied by
        the templates' whitening gain, ``(B, bins)``."""
        white = whiten_with_psd(windows[:, None, :], fine[None], self.rate)
        spectrum = torch.from_numpy(np.fft.rfft(white, axis=-1)[:, 0, :self.n_bins].astype(np.complex64))
        return spectrum.to(self.device).mul_(gain)

    def _radius(self, detector: int) -> int:
        """Samples within the light travel time from the first detector (0 for the first)."""
        return self.radius[detector - 1] if detector else 0

    def _filter_chunk(self, spectrum: torch.Tensor, chunk: torch.Tensor, scale: torch.Tensor, radius: int,
                      target: torch.Tensor) -> None:
        """SNR^2 of a chunk of templates (``conj_templates`` rows ``(c, bins)``, ``scale`` their 4 /
        (h|h)) in windows ``spectrum`` written into ``target`` ``(B, c, merger samples)``, maximised
        within ``radius`` samples (the light travel time)."""
        padded, series, power, other = self._buffers(spectrum.shape[0])
        size = chunk.shape[0]
        samples = self.last - self.first + 2 * radius
        torch.mul(spectrum[:, None, :], chunk[None], out=padded[:, :size, :self.n_bins])
        for b in range(spectrum.shape[0]):  # small transforms, no page faults (see FFT_ROWS)
            for i in range(0, size, FFT_ROWS):
                j = min(i + FFT_ROWS, size)
                torch.fft.ifft(padded[b, i:j], dim=-1, out=series[b, i:j])
        parts = torch.view_as_real(series[:, :size, self.first - radius:self.last + radius])
        # SNR^2 = 4 (re^2 + im^2) / (h|h) (z = 2 ifft(...), matched_filter.py), into reused buffers
        # (square().sum(-1), a two-element reduction, was several times slower)
        snr2 = torch.mul(parts[..., 0], parts[..., 0], out=power[:, :size, :samples])
        snr2.add_(torch.mul(parts[..., 1], parts[..., 1], out=other[:, :size, :samples]))
        snr2.mul_(scale[None, :, None])
        if radius:
            sliding_max(snr2, radius, out=target)
        else:
            target.copy_(snr2)

    @torch.no_grad()
    def prepare(self, windows: np.ndarray, psd: np.ndarray, detector: int) -> torch.Tensor:
        """``(B, templates + 2, merger samples)``: rows ``:-2`` the SNR^2 of every template in one
        detector's raw windows ``(B, n)``, at each merger sample for the first detector and for the
        others the largest within the light travel time to the first (what the network statistic
        adds); row ``-2`` the loudest template's SNR^2 at each sample (what :meth:`combine` bounds
        the network statistic with); row ``-1`` in its first ``n_coarse`` places the largest of row
        ``-2`` in each ``COARSE`` samples (the bound a time slide tests first; made once here,
        where every slide reuses it), zero after them."""
        fine, gain, scale = self._whitening(psd, detector)
        spectrum = self._spectrum(windows, fine, gain)
        radius = self._radius(detector)
        templates = self.conj_templates
        n_templates = templates.shape[0]
        samples = self.last - self.first
        out = torch.empty((windows.shape[0], n_templates + 2, samples), device=self.device)
        for start in range(0, n_templates, self.template_chunk):
            end = min(start + self.template_chunk, n_templates)
            self._filter_chunk(spectrum, templates[start:end], scale[start:end], radius, out[:, start:end])
        out[:, n_templates] = out[:, :n_templates].amax(dim=1)
        cells = torch.nn.functional.pad(out[:, n_templates], (0, self.n_coarse * COARSE - samples))  # >= 0
        out[:, -1].zero_()[:, :self.n_coarse] = cells.view(-1, self.n_coarse, COARSE).amax(dim=2)
        return out

    def _buffers(self, batch: int) -> tuple[torch.Tensor, ...]:
        """Reused work arrays of :meth:`_filter_chunk` (allocated per chunk of templates, they made a
        third of the filter's CPU time system time, page faults): the zero-padded spectra (upper half
        zero: negative frequencies), their inverse transforms, two SNR^2 series long enough for any
        detector."""
        chunk = min(self.template_chunk, len(self.templates))
        key = (batch, chunk)
        samples = self.last - self.first + 2 * max(self.radius, default=0)
        if self._work is None or self._work[0] != key:
            self._work = (key, (
                torch.zeros((batch, chunk, self.n), dtype=torch.complex64, device=self.device),
                torch.empty((batch, chunk, self.n), dtype=torch.complex64, device=self.device),
                torch.empty((batch, chunk, samples), device=self.device),
                torch.empty((batch, chunk, samples), device=self.device)))
        return self._work[1]

    def _binned_max(self, series: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(value, index in bin)`` of the largest of each ``bin_seconds`` of ``(B, merger
        samples)``; the last bin may be shorter."""
        pad = self.n_out_bins * self.bin_width - series.shape[1]
        padded = torch.nn.functional.pad(series, (0, pad), value=-1.0)
        return padded.reshape(series.shape[0], self.n_out_bins, self.bin_width).max(dim=2)

    @torch.no_grad()
    def combine(self, prepared: Sequence[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """``(stat, offset)`` of shape (B, bins): the loudest network SNR and its merger time (s
        from the window start) in each ``bin_seconds`` of the window's merger range, so that a
        quiet signal is not hidden by a louder noise peak seconds away in the same window. With a
        ``threshold``, bins that cannot reach it are 0 (see :meth:`_combine_above`)."""
        if self.threshold is not None and self.threshold > 0 and len(prepared) > 1:
            value, index = self._combine_above(prepared)
        else:
            first, *others = [p[:, :-2] for p in prepared]
            if others:
                if self._sum is None or self._sum.numel() < first.numel():  # reused: no page faults per call
                    self._sum = torch.empty(first.numel(), dtype=first.dtype, device=first.device)
                network = torch.add(first, others[0], out=self._sum[:first.numel()].view(first.shape))
                for part in others[1:]:
                    network.add_(part)
            else:
                network = first
            value, index = self._binned_max(network.amax(dim=1))
        return self._output(value, index)

    def _output(self, value: torch.Tensor, index: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(stat, offset)`` from the binned network SNR^2 and each bin's index of its largest."""
        offset = (self.first + np.arange(self.n_out_bins) * self.bin_width + index.cpu().numpy()) / self.rate
        return value.clamp(min=0).sqrt().cpu().numpy().astype(np.float64), offset

    def _combine_above(self, prepared: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Binned network SNR^2 and its index (as :meth:`_binned_max` gives them), with the
        templates' series added only at samples whose bound (the sum of each detector's loudest
        template, never below the loudest sum of one template's: float sums are monotonic) reaches
        the threshold; 0 elsewhere. The bound is first tested per ``COARSE`` samples (the sum of
        each detector's largest there, again never below it), so that a slide of quiet windows
        reads ``COARSE`` times fewer values than testing every sample; bins without a sample reaching it
        are 0 at index 0, the others the largest sum and the first sample holding it."""
        floor = (self.threshold * (1 - 1e-6)) ** 2  # a hair low: sqrt and the float64 compare round
        batch, samples, width = prepared[0].shape[0], self.last - self.first, self.bin_width
        value = torch.zeros((batch, self.n_out_bins), dtype=prepared[0].dtype, device=self.device)
        index = torch.zeros((batch, self.n_out_bins), dtype=torch.long, device=self.device)
        coarse = prepared[0][:, -1, :self.n_coarse] + prepared[1][:, -1, :self.n_coarse]
        for part in prepared[2:]:
            coarse.add_(part[:, -1, :self.n_coarse])
        rows, cells = torch.nonzero(coarse >= floor, as_tuple=True)
        sample = cells[:, None] * COARSE + torch.arange(COARSE, device=self.device)
        inside = sample < samples  # the last cell may be short
        rows, sample = rows[:, None].expand_as(sample)[inside], sample[inside]
        bound = prepared[0][rows, -2, sample] + prepared[1][rows, -2, sample]  # as the full sum adds
        for part in prepared[2:]:
            bound.add_(part[rows, -2, sample])
        hit = bound >= floor
        rows, sample = rows[hit], sample[hit]
        if rows.numel():
            network = prepared[0][rows, :-2, sample] + prepared[1][rows, :-2, sample]
            for part in prepared[2:]:
                network.add_(part[rows, :-2, sample])
            best = network.amax(dim=1)  # > 0: at least one detector's loudest template
            cell = rows * self.n_out_bins + torch.div(sample, width, rounding_mode="floor")
            flat = value.view(-1).scatter_reduce_(0, cell, best, reduce="amax")
            top = best == flat[cell]
            first = torch.full_like(index.view(-1), width)
            first.scatter_reduce_(0, cell[top], sample[top] % width, reduce="amin")
            index.view(-1).copy_(torch.where(first == width, 0, first))
        return value, index

    @torch.no_grad()
    def __call__(self, batch: np.ndarray, psd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(stat, offset)`` of raw windows ``(B, detectors, n)``: :meth:`combine` of every
        detector's :meth:`prepare` without the threshold, the same values, but each chunk of
        templates is added over detectors and maximised as soon as it is filtered, so that no
        template's series is held (the zero-lag search: its cost is the filtering alone)."""
        whitening = [self._whitening(psd[j], j) for j in range(batch.shape[1])]
        spectra = [self._spectrum(batch[:, j], fine, gain) for j, (fine, gain, _) in enumerate(whitening)]
        templates = self.conj_templates
        shape = (batch.shape[0], min(self.template_chunk, len(self.templates)), self.last - self.first)
        total, part = (torch.empty(shape, device=self.device) for _ in range(2))
        best: torch.Tensor | None = None
        for start in range(0, len(self.templates), self.template_chunk):
            size = min(self.template_chunk, len(self.templates) - start)
            for j, (_, _, scale) in enumerate(whitening):
                target = (part if j else total)[:, :size]
                self._filter_chunk(spectra[j], templates[start:start + size], scale[start:start + size],
                                   self._radius(j), target)
                if j:  # first + second + ...: the order of combine's sum, so the same floats
                    total[:, :size].add_(target)
            loudest = total[:, :size].amax(dim=1)
            best = loudest if best is None else torch.maximum(best, loudest, out=best)
        return self._output(*self._binned_max(best))

    @property
    def slide_span(self) -> float:
        """Seconds of data one output depends on in each detector: the longest template (the SNR
        at a merger sample correlates the template with the data before it)."""
        return self.template_seconds

    def slide_step(self, detectors: Sequence[str]) -> float:
        """The shortest slide step (s) that is a whole number of strides and exceeds the longest
        template plus the light travel time, so that time slides reuse each detector's filtered
        windows and never pair a signal with itself."""
        least = self.slide_span + light_travel_time(tuple(detectors))
        return (math.floor(least / self.stride) + 1) * self.stride


def load_bank(bank_file: str | Path | None, bank_size: int | None, progress: bool = True) -> Bank:
    """The reference bank in ``bank_file``, or the baseline's farthest-point bank of ``bank_size``."""
    if bank_file is not None:
        from g2net.filtering import reference_bank

        return reference_bank.load(bank_file)
    return load_or_build_bank(default_bank_spec(DEFAULT_BANK_SIZE if bank_size is None else bank_size),
                              progress=progress)


def run(strain_path: str, output: str, options: SearchOptions, bank_size: int | None = DEFAULT_BANK_SIZE,
        progress: bool = True, slide_step: float | None = None, overwrite: bool = False,
        bank_file: str | Path | None = None, psd_duration: float | None = None,
        templates_per_pass: int | None = None, resume: bool = True,
        checkpoint_every: float | None = None) -> dict[str, Any]:
    """Search ``strain_path``. The filter sets the window and the stride (``options``' are not
    used); ``psd_duration`` None: ``PSD_WINDOWS`` windows; ``slide_step`` None:
    :meth:`StrainMatchedFilter.slide_step`; ``templates_per_pass`` None: what :func:`memory_budget`
    holds. Progress is saved beside ``output`` and resumed unless ``resume`` is False."""
    output_path = check_output(output, strain_path, overwrite)
    with StrainFile(strain_path, sample_rate=SAMPLE_RATE) as strain:
        bank = load_bank(bank_file, bank_size, progress)
        scorer = StrainMatchedFilter(bank, strain.detectors, threshold=options.threshold)
        step = scorer.slide_step(strain.detectors) if slide_step is None else slide_step
        zero_lag = options.slides.n_slides == 0
        options = SearchOptions(**{**options.__dict__, "window": scorer.n, "stride": scorer.stride,
                                   "slide_span": scorer.slide_span,
                                   "psd_duration": PSD_WINDOWS * scorer.window_seconds
                                   if psd_duration is None else psd_duration,
                                   "slides": TimeSlides(options.slides.n_slides, step),
                                   # no slides to re-pair: every chunk of templates is combined as
                                   # soon as it is filtered (the scorer's __call__), nothing is held
                                   "reuse_detectors": options.reuse_detectors and not zero_lag})
        options.validate(strain.detectors, strain.sample_rate)
        if templates_per_pass is None and resume:  # the killed run's passes, whatever memory is free now
            templates_per_pass = _checkpointed_templates_per_pass(checkpoint_path(output_path))
        if templates_per_pass is None:
            templates_per_pass = len(bank) if zero_lag else max(1, int(memory_budget() // (
                scorer.bytes_per_template(options, len(strain.detectors), strain.sample_rate))) - 1)
        if templates_per_pass < 1:
            raise G2NetError(f"--templates-per-pass {templates_per_pass}: must be >= 1")
        scorer.templates_per_pass = min(templates_per_pass, len(bank))
        if progress:
            per_pass = scorer.templates_per_pass * scorer.bytes_per_template(
                options, len(strain.detectors), strain.sample_rate)
            held = "zero lag: none held" if zero_lag else f"each holds {per_pass / 2**30:.1f} GiB"
            print(f"{len(bank)} templates in {scorer.n_passes} pass(es) of {scorer.templates_per_pass} "
                  f"({held} of SNR series; --templates-per-pass sets it)", file=sys.stderr)
        checkpoint = SearchCheckpoint(checkpoint_path(output_path), {
            "search": "matched_filter", "strain": strain_identity(strain_path),
            "strain_run_id": strain.run_id, "options": options.fingerprint(), "filter": scorer.describe()},
            every=CHECKPOINT_EVERY if checkpoint_every is None else checkpoint_every)
        if not resume:
            checkpoint.remove()
        result = search_strain(strain, scorer, options, progress, checkpoint)
        write_triggers(output_path, result["time"], result["stat"], result["var"],
                       trigger_attrs(strain, options, result, search="matched_filter",
                                     bank_size=len(bank), bank=str(bank_file or f"farthest-point {len(bank)}"),
                                     window_seconds=scorer.window_seconds,
                                     template_seconds=scorer.template_seconds),
                       slide=result["slide"])
        checkpoint.remove()
    print(f"{len(result['time'])} triggers over {result['duration']:g} s of "
          f"{'slid ' if options.slides.n_slides else ''}strain ({len(bank)} templates in "
          f"{result['passes']} pass{'es' if result['passes'] > 1 else ''}, {scorer.window_seconds} s "
          f"windows) -> {output_path}")
    return result
