"""The ml4gw engine: batches of examples made in torch, on the training device (docs/online.md).

The physics is the PyCBC engine's, redone batched so that it runs on a GPU (or the CPU):

* priors: the torch backend of :mod:`g2net.simulation.priors` (same laws as the PyCBC engine);
  precessing approximants draw isotropic spins of magnitude up to ``max |spin_range|``;
* waveforms: ml4gw ``IMRPhenomD`` / ``IMRPhenomPv2`` through ``TimeDomainCBCWaveformGenerator``
  (the conditioning LALSimulation applies to frequency-domain approximants, hence PyCBC's
  ``get_td_waveform``), from ``F_LOWER`` with reference frequency ``F_REF`` (docs/online.md);
* projection onto H1/L1/V1: ml4gw antenna responses and detector geometry, GMST as PyCBC's
  ``Detector`` computes it, time delays applied exactly (a frequency-domain fractional shift);
* noise: :func:`g2net.simulation.noise.colored_noise_torch`, the PyCBC engine's scheme;
* SNR: ``ml4gw.gw.compute_ifo_snr`` against :func:`g2net.simulation.noise.psd_array` over
  ``SNR_BAND``, the convention of the PyCBC engine; each signal is rescaled to its drawn SNR.

A polarisation bank (:mod:`g2net.simulation.banks`) can supply h+/hx of any LALSimulation
approximant instead of ml4gw. :func:`simulate_files` writes the competition layout through
:meth:`OnlineSimulator.sample` (``simulate.py --engine ml4gw``); training draws from it through
:mod:`g2net.experiments.online`.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from jaxtyping import Float
from scipy import fft as sp_fft
from torch import Tensor
from tqdm import tqdm

from g2net.simulation import layout, noise
from g2net.simulation.banks import (BANK_PARAMS, EDGE_TAPER, PolarizationBank,
                                    load_polarization_bank, segment_geometry)
from g2net.simulation.physics import DEFAULT_APPROXIMANT, F_LOWER, F_REF, REFERENCE_DISTANCE, SNR_BAND
from g2net.simulation.priors import (Priors, check_positive_fraction, draw_extrinsic_torch,
                                     draw_parameters_torch)
from g2net.types import PerDetector, PerExample, Strain, Waveform
from utils import DETECTORS, N_SAMPLES, SAMPLE_RATE, G2NetError, example_path

ML4GW_APPROXIMANTS = ("IMRPhenomD", "IMRPhenomPv2")


PRECESSING = ("IMRPhenomPv2",)


SPEED_OF_LIGHT = 299792458.0  # m/s (ml4gw.constants.C)


GUARD = 0.25  # s of zeros between a wrapped segment start and the window in the shift buffer


HIGHPASS_LEAD = 1.0  # s of waveform before a segment, where the generator's high-pass settles


UNDRAWN_COLUMNS = ("id", "split", "target", "approximant", "f_ref")  # set per row, not drawn
PRECESSING_COLUMNS = ["spin1x", "spin1y", "spin2x", "spin2y"]


# ----------------------------------------------------------------------------- detector geometry
@functools.lru_cache(maxsize=None)
def _gmst_reference() -> tuple[float, float, float]:
    """``(reference GPS, GMST there, sidereal day)`` of PyCBC's ``Detector``: its antenna patterns
    and time delays advance GMST linearly from that reference, and so do ours."""
    from pycbc.detector import Detector

    det = Detector("H1")
    det.set_gmst_reference()
    return float(det.reference_time), float(det.gmst_reference), float(det.sday)


def gmst(gps: PerExample) -> PerExample:
    """Greenwich mean sidereal time (rad) at GPS times, as ``pycbc.detector.Detector`` estimates it."""
    reference, gmst0, sday = _gmst_reference()
    return torch.remainder(gmst0 + (gps.double() - reference) / sday * (2 * math.pi), 2 * math.pi)


class Projector(torch.nn.Module):
    """h+/hx segments -> strain in H1, L1, V1 (detector geometry from ml4gw).

    ``ml4gw.gw.compute_observed_strain`` is not used for the shift: it rounds each delay down to a
    whole sample (up to 0.49 ms off at 2048 Hz, a phase error of 0.3 rad at 100 Hz between
    detectors), while ``Detector.project_wave`` delays exactly; here the delay is a phase ramp in
    the frequency domain, exact for band-limited signals. Antenna responses are ml4gw's.
    """

    def __init__(self, segment_samples: int, merger_index: int, n_samples: int = N_SAMPLES,
                 sample_rate: float = SAMPLE_RATE):
        super().__init__()
        from ml4gw.gw import get_ifo_geometry

        tensors, vertices = get_ifo_geometry(*DETECTORS)
        self.register_buffer("tensors", tensors.double(), persistent=False)
        self.register_buffer("vertices", vertices.double(), persistent=False)
        self.n_samples, self.sample_rate = n_samples, float(sample_rate)
        self.segment_samples, self.merger_index = segment_samples, merger_index
        guard = int(round(GUARD * sample_rate))
        self.n_fft = sp_fft.next_fast_len(n_samples + segment_samples + guard, real=True)
        taper = int(round(EDGE_TAPER * sample_rate))
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(taper) / taper)
        window = np.ones(segment_samples)
        window[:taper] = ramp
        self.register_buffer("taper", torch.from_numpy(window), persistent=False)
        self.register_buffer("freqs", torch.from_numpy(np.fft.rfftfreq(self.n_fft, 1 / sample_rate)),
                             persistent=False)

    def responses(self, ra: Tensor, dec: Tensor, polarization: Tensor, gps: Tensor
                  ) -> tuple[Float[Tensor, "batch 2 ifo"], PerDetector]:
        """Antenna responses (F+, Fx per detector) and delays (s) from the geocentre."""
        from ml4gw.gw import compute_antenna_responses

        theta = math.pi / 2 - dec
        phi = ra - gmst(gps)
        antenna = compute_antenna_responses(theta, polarization, phi, self.tensors, ["plus", "cross"])
        omega = torch.stack([torch.sin(theta) * torch.cos(phi), torch.sin(theta) * torch.sin(phi),
                             torch.cos(theta)], dim=-1)
        delays = -(omega @ self.vertices.T) / SPEED_OF_LIGHT
        return antenna, delays

    def forward(self, hp: Waveform, hc: Waveform,
                ra: Tensor, dec: Tensor, polarization: Tensor, gps_start: Tensor, tc: Tensor
                ) -> Float[Tensor, "batch ifo window"]:
        """Strain windows whose first sample is at ``gps_start``, geocentric merger at ``+tc`` s.

        ``hp``/``hc`` are segments with the merger at sample ``merger_index``; their first
        ``EDGE_TAPER`` s are tapered so that the cut does not ring into the window.
        """
        antenna, delays = self.responses(ra, dec, polarization, gps_start + tc)
        spectra = torch.fft.rfft(torch.stack([hp, hc], dim=1) * self.taper, n=self.n_fft)
        strain = torch.einsum("bpi,bpf->bif", antenna.to(spectra.dtype), spectra)
        shift = (tc[:, None] + delays) - self.merger_index / self.sample_rate  # s, later in time
        strain = strain * torch.exp(-2j * math.pi * self.freqs * shift[..., None])
        return torch.fft.irfft(strain, n=self.n_fft)[..., :self.n_samples]


# ----------------------------------------------------------------------------- noise
class NoiseGenerator(torch.nn.Module):
    """Calibrated noise batches (:func:`g2net.simulation.noise.colored_noise_torch`) with the
    colouring amplitude kept as a buffer on the module's device."""

    def __init__(self, n_samples: int = N_SAMPLES, sample_rate: float = SAMPLE_RATE):
        super().__init__()
        self.n_samples = n_samples
        amplitude = noise.coloring_amplitude(n_samples * noise.NOISE_OVERSAMPLING, sample_rate)
        self.register_buffer("amplitude", torch.tensor(amplitude), persistent=False)

    def forward(self, g: torch.Generator, batch: int) -> Strain:
        return noise.colored_noise_torch(g, batch, self.amplitude, self.n_samples)


# ----------------------------------------------------------------------------- waveforms
class Ml4gwWaveforms(torch.nn.Module):
    """h+/hx segments (merger at the projector's index) of ml4gw IMRPhenomD / IMRPhenomPv2 at
    ``REFERENCE_DISTANCE``, conditioned as LALSimulation conditions them."""

    def __init__(self, approximant: str, priors: Priors, segment_samples: int, merger_index: int,
                 sample_rate: float = SAMPLE_RATE):
        super().__init__()
        from ml4gw.waveforms import IMRPhenomD, IMRPhenomPv2
        from ml4gw.waveforms.generator import TimeDomainCBCWaveformGenerator

        check_ml4gw_approximant(approximant)
        self.precessing = approximant in PRECESSING
        model = IMRPhenomPv2() if self.precessing else IMRPhenomD()
        post = (segment_samples - merger_index) / sample_rate
        duration = _waveform_duration(segment_samples / sample_rate)
        self.generator = TimeDomainCBCWaveformGenerator(
            model, sample_rate, duration=duration, f_min=F_LOWER, f_ref=F_REF,
            right_pad=post)
        self.segment_samples = segment_samples

    def forward(self, params: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        m1, m2 = params["mass1"], params["mass2"]
        distance = torch.full_like(m1, REFERENCE_DISTANCE)
        args = dict(mass_1=m1, mass_2=m2, chirp_mass=(m1 * m2) ** 0.6 / (m1 + m2) ** 0.2,
                    mass_ratio=m2 / m1, s1z=params["spin1z"], s2z=params["spin2z"],
                    chi1=params["spin1z"], chi2=params["spin2z"], distance=distance,
                    phic=params["coa_phase"], inclination=params["inclination"])
        if self.precessing:
            args.update(s1x=params["spin1x"], s1y=params["spin1y"], s2x=params["spin2x"],
                        s2y=params["spin2y"])
        hc, hp = self.generator(**args)
        return hp[..., -self.segment_samples:], hc[..., -self.segment_samples:]


def _waveform_duration(segment_seconds: float) -> float:
    """Seconds of waveform the generator returns (whole seconds): the segment plus ``HIGHPASS_LEAD``.

    The generator cuts longer chirps at the start before its high-pass (LAL filters the whole
    waveform); the filter's start transient (order 8 at ~15 Hz, time constant < 0.1 s) has died
    out ``HIGHPASS_LEAD`` later, before the segment begins. Longer only costs filtering time.
    """
    return float(math.ceil(segment_seconds + HIGHPASS_LEAD))


def check_ml4gw_approximant(approximant: str) -> None:
    if approximant not in ML4GW_APPROXIMANTS:
        raise G2NetError(f"approximant {approximant!r} has no ml4gw waveform; use one of "
                         f"{', '.join(ML4GW_APPROXIMANTS)}, or a polarisation bank (source 'bank') "
                         "for any LALSimulation approximant")


# ----------------------------------------------------------------------------- the simulator
@dataclass
class Batch:
    """One generated batch: data (B, 3, T) float64, targets (B,), clean signals (B, 3, T) and the
    ``injections.csv`` columns of every example (NaN for negatives) as float64 tensors."""
    data: Tensor
    target: Tensor
    signal: Tensor
    params: dict[str, Tensor]


class OnlineSimulator(torch.nn.Module):
    """Batches of noise plus, for positives, projected signals rescaled to a drawn network SNR.

    ``approximant`` is an ml4gw waveform (``IMRPhenomD``, ``IMRPhenomPv2``) unless ``bank`` (a
    :class:`PolarizationBank` or its path) supplies h+/hx; the bank then fixes the intrinsic
    parameters and its rows are drawn uniformly with replacement.
    """

    def __init__(self, priors: Priors = Priors(), approximant: str = "IMRPhenomD",
                 bank: PolarizationBank | str | Path | None = None,
                 device: torch.device | str = "cpu", detectors: tuple[str, ...] = DETECTORS):
        super().__init__()
        self.priors = priors
        unknown = [d for d in detectors if d not in DETECTORS]
        if unknown or not detectors:
            raise G2NetError(f"detectors {detectors}: give a subset of {', '.join(DETECTORS)}")
        # the network: rows of other detectors stay zero (no noise, no signal) and the SNR prior
        # is over the network, as simulate.py --detectors writes them
        self.absent = [i for i, name in enumerate(DETECTORS) if name not in detectors]
        self.bank = load_polarization_bank(bank) if isinstance(bank, (str, Path)) else bank
        if self.bank is None:
            priors.validate(DEFAULT_APPROXIMANT)
            check_ml4gw_approximant(approximant)
            self.approximant = approximant
            length, merger = segment_geometry(priors)
            self.waveforms: Ml4gwWaveforms | None = Ml4gwWaveforms(approximant, priors, length, merger)
        else:
            check_positive_fraction(priors.positive_fraction)
            self.approximant = str(self.bank.metadata["approximant"])
            length, merger = self.bank.metadata["segment_samples"], self.bank.metadata["merger_index"]
            if merger < segment_geometry(priors)[1]:
                raise G2NetError(f"the bank {self.bank.path} keeps {merger / SAMPLE_RATE:.2f} s before "
                                 f"the merger; tc_range {priors.tc_range} needs more: rebuild it "
                                 "with this tc_range")
            self.waveforms = None
            self.register_buffer("bank_waveforms", torch.from_numpy(self.bank.polarizations),
                                 persistent=False)
            self.register_buffer("bank_params", torch.from_numpy(np.array(
                self.bank.table[BANK_PARAMS[1:]].values, dtype=np.float64)), persistent=False)
        self.precessing = self.approximant in PRECESSING or (
            self.bank is not None and bool(np.any(self.bank.table[["spin1x", "spin1y", "spin2x", "spin2y"]].values)))
        self.projector = Projector(length, merger)
        self.noise = NoiseGenerator()
        psd = torch.from_numpy(noise.psd_array(N_SAMPLES, SAMPLE_RATE))
        self.register_buffer("snr_psd", psd, persistent=False)
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.snr_psd.device

    @property
    def present(self) -> list[int]:
        """Rows (of H1, L1, V1) of the detectors this simulator fills."""
        return [i for i in range(len(DETECTORS)) if i not in self.absent]

    @property
    def n_detectors(self) -> int:
        return len(self.present)

    def targets(self, g: torch.Generator, batch: int) -> Tensor:
        """``round(positive_fraction * batch)`` positives in a random order (as simulate's splits)."""
        labels = torch.zeros(batch, dtype=torch.float64, device=self.device)
        labels[:int(round(self.priors.positive_fraction * batch))] = 1.0
        return labels[torch.randperm(batch, generator=g, device=self.device)]

    @torch.no_grad()
    def sample(self, g: torch.Generator, batch: int, target: Tensor | None = None) -> Batch:
        """One batch from generator ``g`` (on this module's device); ``target`` fixes the labels."""
        target = self.targets(g, batch) if target is None else target.to(self.device, torch.float64)
        data = self.noise(g, batch)
        data[:, self.absent] = 0.0
        positives = torch.nonzero(target > 0.5).flatten()
        signal = torch.zeros_like(data)
        params = {c: torch.full((batch,), math.nan, dtype=torch.float64, device=self.device)
                  for c in self.columns() if c not in UNDRAWN_COLUMNS}
        if len(positives):
            clean, drawn = self.signals(g, len(positives))
            signal[positives] = clean
            data[positives] += clean
            for name, value in drawn.items():
                if name in params:
                    params[name][positives] = value.double()
        return Batch(data, target, signal, params)

    def columns(self) -> list[str]:
        """``injections.csv`` columns: simulate's, the spin x/y components for precessing sources
        and the bank row for bank sources."""
        extra = PRECESSING_COLUMNS if self.precessing else []
        return [*layout.INJECTION_COLUMNS, *extra] + (["bank_row"] if self.bank is not None else [])

    def signals(self, g: torch.Generator, n: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``n`` clean projected signals at their drawn network SNRs, and their parameters."""
        if self.bank is None:
            params = draw_parameters_torch(g, n, self.priors, self.precessing, self.device)
            hp, hc = self.waveforms(params)
        else:
            rows = torch.randint(len(self.bank), (n,), generator=g, device=self.device)
            params = draw_extrinsic_torch(g, n, self.priors, self.device)
            for k, column in enumerate(BANK_PARAMS[1:]):
                params[column] = self.bank_params[rows, k]
            params["bank_row"] = rows.double()
            hp, hc = self.bank_waveforms[rows, 0], self.bank_waveforms[rows, 1]
        strain = self.projector(hp.double(), hc.double(), params["ra"], params["dec"],
                                params["polarization"], params["gps_start"].double(), params["tc"])
        strain[:, self.absent] = 0.0
        snrs = self.optimal_snr(strain)
        snrs[:, self.absent] = math.nan
        network = torch.sqrt(torch.nansum(snrs ** 2, dim=-1))
        if not bool(torch.all(network > 0)):
            raise G2NetError("a signal misses the window (its merger time is outside it); narrow "
                             "tc_range")
        scale = params.pop("snr_wanted") / network
        params["distance"] = REFERENCE_DISTANCE / scale
        for k, name in enumerate(DETECTORS):
            params[f"snr_{name}"] = snrs[:, k] * scale
        params["snr_network"] = network * scale
        return strain * scale[:, None, None], params

    def optimal_snr(self, strain: Strain) -> PerDetector:
        """Per-detector optimal SNR over ``SNR_BAND`` against the simulator PSD: the
        convention of :func:`simulate.optimal_snr`, computed by ``ml4gw.gw.compute_ifo_snr``."""
        from ml4gw.gw import compute_ifo_snr

        return compute_ifo_snr(strain, self.snr_psd, SAMPLE_RATE, highpass=SNR_BAND[0],
                               lowpass=SNR_BAND[1]).double()


def make_generator(device: torch.device | str, seed: int) -> torch.Generator:
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


# ----------------------------------------------------------------------------- files
def _batch_generator(seed: int, first: int, device: torch.device) -> torch.Generator:
    """Generator of the file batch starting at example ``first`` of ``simulate --engine ml4gw``."""
    state = np.random.SeedSequence(seed, spawn_key=(2 ** 32 - 6, first)).generate_state(2, np.uint32)
    return make_generator(device, int(state[0]) << 31 ^ int(state[1]))


def simulate_files(out: str | Path, n_train: int, n_test: int, seed: int, priors: Priors = Priors(),
                   approximant: str = "IMRPhenomD", bank: str | Path | None = None,
                   device: str | torch.device = "cpu", batch_size: int = 256, overwrite: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """The competition layout and ``injections.csv`` (simulate's columns) from :class:`OnlineSimulator`.

    Ids and labels are :func:`layout.make_ids` / :func:`layout.make_targets` of the seed; the
    examples of each batch of ``batch_size`` come from a generator of ``(seed, first index)``.
    The same seed gives the same bytes on the same device and ``batch_size``.
    """
    record = layout.run_record(n_train, n_test, seed, priors, approximant, bank)
    record.update(engine="ml4gw", device=str(device), batch_size=int(batch_size))
    layout.validate_run(out, n_train, n_test, seed, 1, overwrite, record)
    device = torch.device(device)
    simulator = OnlineSimulator(priors, approximant, bank, device)
    out = Path(out)
    total = n_train + n_test
    ids = layout.make_ids(seed, total)
    targets = layout.make_targets(seed, n_train, n_test, priors.positive_fraction)
    splits = ["train"] * n_train + ["test"] * n_test
    layout.begin_run(out, overwrite, record)
    columns = simulator.columns()
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tqdm(total=total, desc="simulate (ml4gw)", unit="ex", disable=not progress) as bar:
        for first in range(0, total, batch_size):
            last = min(first + batch_size, total)
            g = _batch_generator(seed, first, device)
            batch = simulator.sample(g, last - first, torch.from_numpy(targets[first:last]))
            data = batch.data.cpu().numpy()
            params = {k: v.cpu().numpy() for k, v in batch.params.items()}
            for k in range(last - first):
                index = first + k
                layout.save_example(example_path(out, splits[index], ids[index]), data[k])
                row: dict[str, Any] = {"id": ids[index], "split": splits[index],
                                       "target": int(targets[index])}
                if targets[index]:
                    row["approximant"], row["f_ref"] = simulator.approximant, F_REF
                    row.update({c: float(params[c][k]) for c in params})
                    row["gps_start"] = int(round(row["gps_start"]))
                    if "bank_row" in row:
                        row["bank_row"] = int(row["bank_row"])
                rows.append(row)
            bar.update(last - first)
    elapsed = time.perf_counter() - started
    layout.end_run(out, rows, columns, record)
    return {"n_train": n_train, "n_test": n_test, "positives": int(targets.sum()), "seconds": elapsed,
            "rate": total / elapsed if elapsed > 0 else float("inf"), "device": str(device)}
