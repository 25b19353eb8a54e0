"""Online simulation: a fresh training batch every step, made on the training device with ml4gw.

The physics is the simulator's (``simulate.py``, docs/simulator.md), redone in torch so that it runs
batched on a GPU (or the CPU):

* priors: :class:`simulate.Priors` (masses, aligned spins, sky, polarisation, inclination, phase,
  merger time in the window, GPS second, network SNR and its distribution, positive fraction);
  precessing approximants draw isotropic spins of magnitude up to ``max |spin_range|``;
* waveforms: ml4gw ``IMRPhenomD`` / ``IMRPhenomPv2`` through ``TimeDomainCBCWaveformGenerator``
  (the conditioning LALSimulation applies to frequency-domain approximants, hence PyCBC's
  ``get_td_waveform``), reference frequency ``simulate.F_LOWER`` (docs/online.md says why);
* projection onto H1/L1/V1: ml4gw antenna responses and detector geometry, GMST as PyCBC's
  ``Detector`` computes it, time delays applied exactly (a frequency-domain fractional shift);
* noise: :func:`noise_model.colored_noise`'s scheme in torch (white noise over
  ``NOISE_OVERSAMPLING`` windows, coloured by :func:`noise_model.generation_psd`, first window kept);
* SNR: ``ml4gw.gw.compute_ifo_snr`` against :func:`noise_model.psd_array` over ``simulate.SNR_BAND``,
  the band and PSD of :func:`simulate.optimal_snr`; each signal is rescaled to its drawn network SNR.

A *polarisation bank* (:func:`write_polarization_bank`) holds h+/hx of any LALSimulation approximant
made once with PyCBC; the ``bank`` source draws sky, polarisation, merger time, SNR and noise fresh
every step, so one stored waveform gives endless distinct examples.

:class:`OnlineSource` is what training iterates instead of a DataLoader; :func:`simulate_files`
writes the competition layout through the same :meth:`OnlineSimulator.sample` (``simulate.py
--engine ml4gw``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

import noise_model
import signal_bank
import simulate
from simulate import Priors
from utils import DETECTORS, N_SAMPLES, SAMPLE_RATE, G2NetError
from utils import cli_errors as utils_cli_errors

ML4GW_APPROXIMANTS = ("IMRPhenomD", "IMRPhenomPv2")
PRECESSING = ("IMRPhenomPv2",)
SOURCES = ("files", "online", "bank")
SPEED_OF_LIGHT = 299792458.0  # m/s (ml4gw.constants.C)
MAX_DELAY = 0.03  # s, more than the light travel time from the geocentre to any detector (21 ms)
EDGE_TAPER = 0.05  # s of cosine taper at the start of a stored/cropped waveform segment
GUARD = 0.25  # s of zeros between a wrapped segment start and the window in the shift buffer
HIGHPASS_LEAD = 1.0  # s of waveform before a segment, where the generator's high-pass settles
POST_MERGER = 0.5  # s kept after the merger (ringdowns of these masses last < 50 ms)
BANK_FORMAT = "g2net-polarization-bank"
BANK_FORMAT_VERSION = 1
PRECESSING_COLUMNS = ["spin1x", "spin1y", "spin2x", "spin2y"]


# ----------------------------------------------------------------------------- sampling the priors
def _uniform(g: torch.Generator, n: int, bounds: Sequence[float], device: torch.device) -> Tensor:
    u = torch.rand(n, generator=g, dtype=torch.float64, device=device)
    return bounds[0] + u * (bounds[1] - bounds[0])


def draw_parameters(g: torch.Generator, n: int, priors: Priors, precessing: bool,
                    device: torch.device) -> dict[str, Tensor]:
    """``n`` sources from the priors, as :func:`simulate.draw_parameters` and
    :func:`simulate.draw_snr` draw them (same distributions; a torch stream instead of numpy's).

    Aligned spins are uniform in ``spin_range``; a precessing approximant takes isotropic spin
    directions with magnitudes uniform in ``[0, max |spin_range|]``.
    """
    a, b = _uniform(g, n, priors.mass_range, device), _uniform(g, n, priors.mass_range, device)
    params = {"mass1": torch.maximum(a, b), "mass2": torch.minimum(a, b)}
    if precessing:
        top = max(abs(priors.spin_range[0]), abs(priors.spin_range[1]))
        for k in (1, 2):
            magnitude = _uniform(g, n, (0.0, top), device)
            cos_tilt = _uniform(g, n, (-1.0, 1.0), device)
            azimuth = _uniform(g, n, (0.0, 2 * math.pi), device)
            sin_tilt = torch.sqrt(1 - cos_tilt ** 2)
            params[f"spin{k}x"] = magnitude * sin_tilt * torch.cos(azimuth)
            params[f"spin{k}y"] = magnitude * sin_tilt * torch.sin(azimuth)
            params[f"spin{k}z"] = magnitude * cos_tilt
    else:
        params["spin1z"] = _uniform(g, n, priors.spin_range, device)
        params["spin2z"] = _uniform(g, n, priors.spin_range, device)
    params.update(_extrinsic(g, n, priors, device))
    return params


def _extrinsic(g: torch.Generator, n: int, priors: Priors, device: torch.device) -> dict[str, Tensor]:
    """Sky, orientation, phase, times and network SNR: what a bank source draws every step."""
    sin_dec = _uniform(g, n, (math.sin(priors.dec_range[0]), math.sin(priors.dec_range[1])), device)
    cos_inc = _uniform(g, n, (math.cos(priors.inclination_range[1]),
                              math.cos(priors.inclination_range[0])), device)
    out = {"ra": _uniform(g, n, priors.ra_range, device), "dec": torch.asin(sin_dec),
           "polarization": _uniform(g, n, priors.polarization_range, device),
           "inclination": torch.acos(cos_inc),
           "coa_phase": _uniform(g, n, priors.coa_phase_range, device),
           "gps_start": torch.randint(int(priors.gps_range[0]), int(priors.gps_range[1]) + 1, (n,),
                                      generator=g, device=device),
           "tc": _uniform(g, n, priors.tc_range, device)}
    out["snr_wanted"] = draw_snr(g, n, priors, device)
    return out


def draw_snr(g: torch.Generator, n: int, priors: Priors, device: torch.device) -> Tensor:
    """Network SNR as :func:`simulate.draw_snr`: uniform, log-uniform or p(snr) ~ snr^-4."""
    low, high = priors.snr_range
    u = torch.rand(n, generator=g, dtype=torch.float64, device=device)
    if priors.snr_distribution == "uniform":
        return low + u * (high - low)
    if priors.snr_distribution == "loguniform":
        return low * (high / low) ** u
    return (low ** -3 + u * (high ** -3 - low ** -3)) ** (-1.0 / 3.0)


# ----------------------------------------------------------------------------- detector geometry
@functools.lru_cache(maxsize=None)
def _gmst_reference() -> tuple[float, float, float]:
    """``(reference GPS, GMST there, sidereal day)`` of PyCBC's ``Detector``: its antenna patterns
    and time delays advance GMST linearly from that reference, and so do ours."""
    from pycbc.detector import Detector

    det = Detector("H1")
    det.set_gmst_reference()
    return float(det.reference_time), float(det.gmst_reference), float(det.sday)


def gmst(gps: Float[Tensor, " batch"]) -> Float[Tensor, " batch"]:
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
        from scipy import fft as sp_fft

        self.n_fft = sp_fft.next_fast_len(n_samples + segment_samples + guard, real=True)
        taper = int(round(EDGE_TAPER * sample_rate))
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(taper) / taper)
        window = np.ones(segment_samples)
        window[:taper] = ramp
        self.register_buffer("taper", torch.from_numpy(window), persistent=False)
        self.register_buffer("freqs", torch.from_numpy(np.fft.rfftfreq(self.n_fft, 1 / sample_rate)),
                             persistent=False)

    def responses(self, ra: Tensor, dec: Tensor, polarization: Tensor, gps: Tensor
                  ) -> tuple[Float[Tensor, "batch 2 ifo"], Float[Tensor, "batch ifo"]]:
        """Antenna responses (F+, Fx per detector) and delays (s) from the geocentre."""
        from ml4gw.gw import compute_antenna_responses

        theta = math.pi / 2 - dec
        phi = ra - gmst(gps)
        antenna = compute_antenna_responses(theta, polarization, phi, self.tensors, ["plus", "cross"])
        omega = torch.stack([torch.sin(theta) * torch.cos(phi), torch.sin(theta) * torch.sin(phi),
                             torch.cos(theta)], dim=-1)
        delays = -(omega @ self.vertices.T) / SPEED_OF_LIGHT
        return antenna, delays

    def forward(self, hp: Float[Tensor, "batch time"], hc: Float[Tensor, "batch time"],
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


def segment_geometry(priors: Priors, sample_rate: float = SAMPLE_RATE) -> tuple[int, int]:
    """``(segment length, merger index)`` in samples of the h+/hx segments the projector takes:
    enough before the merger for the latest merger time plus delays and taper, ``POST_MERGER`` after."""
    before = priors.tc_range[1] + MAX_DELAY + simulate.CROP_MARGIN + EDGE_TAPER
    merger = int(math.ceil(before * sample_rate))
    return merger + int(round(POST_MERGER * sample_rate)), merger


# ----------------------------------------------------------------------------- noise
class NoiseGenerator(torch.nn.Module):
    """Coloured Gaussian noise (B, 3, T) as :func:`noise_model.colored_noise` draws it, in torch."""

    def __init__(self, n_samples: int = N_SAMPLES, sample_rate: float = SAMPLE_RATE):
        super().__init__()
        self.n_samples = n_samples
        self.n_long = n_samples * noise_model.NOISE_OVERSAMPLING
        amplitude = np.sqrt(noise_model.generation_psd(self.n_long, sample_rate) * sample_rate / 2.0)
        self.register_buffer("amplitude", torch.from_numpy(amplitude), persistent=False)

    def forward(self, g: torch.Generator, batch: int) -> Float[Tensor, "batch ifo time"]:
        white = torch.randn((batch, len(DETECTORS), self.n_long), generator=g, dtype=torch.float64,
                            device=self.amplitude.device)
        coloured = torch.fft.irfft(torch.fft.rfft(white) * self.amplitude, n=self.n_long)
        return coloured[..., :self.n_samples]


# ----------------------------------------------------------------------------- waveforms
class Ml4gwWaveforms(torch.nn.Module):
    """h+/hx segments (merger at the projector's index) of ml4gw IMRPhenomD / IMRPhenomPv2 at
    ``simulate.REFERENCE_DISTANCE``, conditioned as LALSimulation conditions them."""

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
            model, sample_rate, duration=duration, f_min=simulate.F_LOWER, f_ref=simulate.F_LOWER,
            right_pad=post)
        self.segment_samples = segment_samples

    def forward(self, params: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        m1, m2 = params["mass1"], params["mass2"]
        distance = torch.full_like(m1, simulate.REFERENCE_DISTANCE)
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


# ----------------------------------------------------------------------------- polarisation banks
@dataclass(frozen=True, eq=False)
class PolarizationBank:
    """h+/hx segments (K, 2, L) at ``simulate.REFERENCE_DISTANCE`` with the merger at ``merger_index``."""
    path: Path
    polarizations: np.ndarray  # float64 (K, 2, L)
    table: Any  # pandas DataFrame of the intrinsic parameters, row k describes polarizations[k]
    metadata: dict[str, Any]

    def __len__(self) -> int:
        return len(self.polarizations)


BANK_PARAMS = ["approximant", "mass1", "mass2", "spin1x", "spin1y", "spin1z", "spin2x", "spin2y",
               "spin2z", "inclination", "coa_phase"]


def _bank_row(args: tuple) -> tuple[np.ndarray, dict[str, Any]]:
    """One bank waveform: intrinsic parameters from ``(seed, row)``, h+/hx with PyCBC."""
    from pycbc.waveform import get_td_waveform

    seed, row, priors, approximant, length, merger = args
    rng = signal_bank.bank_generator(seed, row)
    params = simulate.draw_parameters(rng, priors, approximant)
    precessing = bool(_lal_precessing(approximant))
    if precessing:  # isotropic spins, magnitudes up to max |spin_range| (as the online source)
        top = max(abs(s) for s in priors.spin_range)
        for k in (1, 2):
            magnitude, cos_tilt, azimuth = rng.uniform(0, top), rng.uniform(-1, 1), rng.uniform(0, 2 * math.pi)
            sin_tilt = math.sqrt(1 - cos_tilt ** 2)
            params.update({f"spin{k}x": magnitude * sin_tilt * math.cos(azimuth),
                           f"spin{k}y": magnitude * sin_tilt * math.sin(azimuth),
                           f"spin{k}z": magnitude * cos_tilt})
    else:
        params.update({f"spin{k}{c}": 0.0 for k in (1, 2) for c in "xy"})
    hp, hc = get_td_waveform(
        approximant=approximant, mass1=params["mass1"], mass2=params["mass2"],
        spin1x=params["spin1x"], spin1y=params["spin1y"], spin1z=params["spin1z"],
        spin2x=params["spin2x"], spin2y=params["spin2y"], spin2z=params["spin2z"],
        distance=simulate.REFERENCE_DISTANCE, inclination=params["inclination"],
        coa_phase=params["coa_phase"], delta_t=1.0 / SAMPLE_RATE, f_lower=simulate.F_LOWER,
        f_ref=simulate.F_LOWER)
    out = np.zeros((2, length))
    start = int(round(float(hp.start_time) * SAMPLE_RATE)) + merger  # segment index of sample 0
    lo, hi = max(start, 0), min(start + len(hp), length)
    if hi > lo:
        out[0, lo:hi] = hp.numpy()[lo - start:hi - start]
        out[1, lo:hi] = hc.numpy()[lo - start:hi - start]
    return out, {k: params[k] for k in BANK_PARAMS}


def _lal_precessing(approximant: str) -> bool:
    import lalsimulation

    try:
        code = lalsimulation.GetApproximantFromString(approximant)
        return lalsimulation.SimInspiralGetSpinSupportFromApproximant(code) >= \
            lalsimulation.SIM_INSPIRAL_PRECESSINGSPIN
    except RuntimeError:
        return False


def write_polarization_bank(path: str | Path, n_signals: int, seed: int, priors: Priors = Priors(),
                            approximant: str = "IMRPhenomXPHM", workers: int = 1,
                            progress: bool = True) -> dict[str, Any]:
    """Store h+/hx of ``n_signals`` sources of any LALSimulation approximant (made with PyCBC,
    float16 codes times a float32 scale per waveform, ~25 KB each). Row ``j`` is a function of
    ``(seed, j)``. Sky, polarisation, merger time, SNR and noise are drawn when training."""
    import pandas as pd

    if n_signals < 1:
        raise G2NetError(f"--n-signals {n_signals}: a bank needs at least 1 waveform")
    priors.validate(approximant)
    length, merger = segment_geometry(priors)
    tasks = [(seed, row, priors, approximant, length, merger) for row in range(n_signals)]
    started = time.perf_counter()
    results = simulate._map_in_order(_bank_row, tasks, workers, "polarisation bank", "wf", progress)
    coded = [signal_bank.quantise_signal(r[0]) for r in results]
    arrays = {"polarizations": np.stack([c[0] for c in coded]),
              "scales": np.array([c[1] for c in coded], dtype=np.float32)}
    table = pd.DataFrame([r[1] for r in results])
    metadata = {"format": BANK_FORMAT, "format_version": BANK_FORMAT_VERSION, "seed": int(seed),
                "n_signals": int(n_signals), "approximant": approximant, "sample_rate": SAMPLE_RATE,
                "segment_samples": length, "merger_index": merger, "f_lower": simulate.F_LOWER,
                "f_ref": simulate.F_LOWER, "distance": simulate.REFERENCE_DISTANCE,
                "priors": dataclasses.asdict(priors)}
    arrays["metadata"] = np.array(json.dumps(metadata, sort_keys=True))
    for column in BANK_PARAMS:
        arrays[f"param_{column}"] = np.array(table[column].tolist(),
                                             dtype=str if column == "approximant" else np.float64)
    signal_bank.write_npz(Path(path), arrays)
    return {"path": str(path), "n_signals": n_signals, "bytes": Path(path).stat().st_size,
            "seconds": time.perf_counter() - started}


def load_polarization_bank(path: str | Path) -> PolarizationBank:
    """Read a bank of :func:`write_polarization_bank`; every problem is one G2NetError."""
    import pandas as pd

    path = Path(path)
    remedy = (f"write one with online.write_polarization_bank('{path}', K, seed) "
              "on a machine with PyCBC")
    with signal_bank.open_bank(path, BANK_FORMAT, "polarisation bank", "polarisation bank",
                               remedy) as (archive, metadata):
        if metadata.get("format_version") != BANK_FORMAT_VERSION:
            raise ValueError(f"format {metadata.get('format')} v{metadata.get('format_version')}")
        codes, scales = archive["polarizations"], archive["scales"]
        table = pd.DataFrame({c: archive[f"param_{c}"] for c in BANK_PARAMS})
    if metadata.get("sample_rate") != SAMPLE_RATE or codes.shape[1:] != (2, metadata["segment_samples"]):
        raise G2NetError(f"{path} holds waveforms of shape {codes.shape[1:]} at "
                         f"{metadata.get('sample_rate')} Hz; rebuild it with this online.py")
    return PolarizationBank(path, signal_bank.decode_signals(codes, scales), table, metadata)


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
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.priors = priors
        self.bank = load_polarization_bank(bank) if isinstance(bank, (str, Path)) else bank
        if self.bank is None:
            priors.validate(simulate.DEFAULT_APPROXIMANT)
            check_ml4gw_approximant(approximant)
            self.approximant = approximant
            length, merger = segment_geometry(priors)
            self.waveforms: Ml4gwWaveforms | None = Ml4gwWaveforms(approximant, priors, length, merger)
        else:
            simulate.check_positive_fraction(priors.positive_fraction)
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
        psd = torch.from_numpy(noise_model.psd_array(N_SAMPLES, SAMPLE_RATE))
        self.register_buffer("snr_psd", psd, persistent=False)
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.snr_psd.device

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
        positives = torch.nonzero(target > 0.5).flatten()
        signal = torch.zeros_like(data)
        params = {c: torch.full((batch,), math.nan, dtype=torch.float64, device=self.device)
                  for c in self.columns()[4:]}
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
        return [*simulate.INJECTION_COLUMNS, *extra] + (["bank_row"] if self.bank is not None else [])

    def signals(self, g: torch.Generator, n: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``n`` clean projected signals at their drawn network SNRs, and their parameters."""
        if self.bank is None:
            params = draw_parameters(g, n, self.priors, self.precessing, self.device)
            hp, hc = self.waveforms(params)
        else:
            rows = torch.randint(len(self.bank), (n,), generator=g, device=self.device)
            params = _extrinsic(g, n, self.priors, self.device)
            for k, column in enumerate(BANK_PARAMS[1:]):
                params[column] = self.bank_params[rows, k]
            params["bank_row"] = rows.double()
            hp, hc = self.bank_waveforms[rows, 0], self.bank_waveforms[rows, 1]
        strain = self.projector(hp.double(), hc.double(), params["ra"], params["dec"],
                                params["polarization"], params["gps_start"].double(), params["tc"])
        snrs = self.optimal_snr(strain)
        network = torch.sqrt((snrs ** 2).sum(-1))
        if not bool(torch.all(network > 0)):
            raise G2NetError("a signal misses the window (its merger time is outside it); narrow "
                             "tc_range")
        scale = params.pop("snr_wanted") / network
        params["distance"] = simulate.REFERENCE_DISTANCE / scale
        for k, name in enumerate(DETECTORS):
            params[f"snr_{name}"] = snrs[:, k] * scale
        params["snr_network"] = network * scale
        return strain * scale[:, None, None], params

    def optimal_snr(self, strain: Float[Tensor, "batch ifo time"]) -> Float[Tensor, "batch ifo"]:
        """Per-detector optimal SNR over ``simulate.SNR_BAND`` against the simulator PSD: the
        convention of :func:`simulate.optimal_snr`, computed by ``ml4gw.gw.compute_ifo_snr``."""
        from ml4gw.gw import compute_ifo_snr

        return compute_ifo_snr(strain, self.snr_psd, SAMPLE_RATE, highpass=simulate.SNR_BAND[0],
                               lowpass=simulate.SNR_BAND[1]).double()


# ----------------------------------------------------------------------------- seeding
def stream_seed(seed: int, rank: int, epoch: int) -> int:
    """Seed of rank ``rank``'s generator in ``epoch``: a stream of its own per (seed, rank, epoch),
    never the stream of a ``simulate --seed`` data set (a distinct spawn key)."""
    state = np.random.SeedSequence(seed, spawn_key=(2 ** 32 - 5, rank, epoch)).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def make_generator(device: torch.device | str, seed: int) -> torch.Generator:
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


# ----------------------------------------------------------------------------- batched augmentations
def batched_transform(transform: Any, n_samples: int = N_SAMPLES
                      ) -> Callable[[Tensor, torch.Generator], Tensor]:
    """A config's numpy ``train`` pipeline as one function of a batch (B, 3, T) and a generator.

    Preprocessing (Normalize / BandPass / Whiten) runs as ``transforms.torch_equivalent``; the
    augmentations below are redone batched, drawing from the batch generator so that the stream
    stays a function of the seed. Others raise: they have no batched version yet.
    """
    import transforms as T

    if transform is None:
        return lambda x, g: x
    steps = list(transform.transforms) if type(transform) is T.Compose and transform.p >= 1.0 \
        else [transform]
    functions = [_batched_step(step, n_samples) for step in steps]

    def apply(x: Tensor, g: torch.Generator) -> Tensor:
        for function in functions:
            x = function(x, g)
        return x

    return apply


def _batched_step(step: Any, n_samples: int) -> Callable[[Tensor, torch.Generator], Tensor]:
    import transforms as T

    def chosen(x: Tensor, g: torch.Generator) -> Tensor:  # (B, 1, 1) mask of examples it applies to
        if step.always_apply or step.p >= 1.0:
            return torch.ones((x.shape[0], 1, 1), dtype=torch.bool, device=x.device)
        return torch.rand((x.shape[0], 1, 1), generator=g, device=x.device, dtype=torch.float64) < step.p

    kind = type(step)
    if kind in (T.Normalize, T.BandPass, T.Whiten) and (step.always_apply or step.p >= 1.0):
        module: torch.nn.Module | None = None

        def preprocess(x: Tensor, g: torch.Generator) -> Tensor:
            nonlocal module
            if module is None:
                module = T.torch_equivalent(step, n_samples).to(x.device)
            return module(x)

        return preprocess
    if kind is T.FlipWave:
        return lambda x, g: torch.where(chosen(x, g), -x, x)
    if kind is T.FlipWavePerChannel:
        def flip_rows(x: Tensor, g: torch.Generator) -> Tensor:
            mask = chosen(x, g)
            signs = torch.where(torch.rand(x.shape[:-1] + (1,), generator=g, device=x.device) < 0.5, -1.0, 1.0)
            return torch.where(mask, x * signs.to(x.dtype), x)
        return flip_rows
    if kind in (T.GlobalTimeShift, T.IndependentTimeShift):
        limit = int(round(step.max_shift * step.sample_rate))

        def roll(x: Tensor, g: torch.Generator) -> Tensor:
            mask = chosen(x, g)
            rows = (x.shape[0], 1) if kind is T.GlobalTimeShift else x.shape[:-1]
            shifts = torch.randint(-limit, limit + 1, rows, generator=g, device=x.device)
            index = (torch.arange(x.shape[-1], device=x.device) - shifts[..., None]) % x.shape[-1]
            rolled = torch.gather(x, -1, index.expand(x.shape))
            return torch.where(mask, rolled, x)
        return roll
    if kind is T.GaussianNoiseSNR:
        def add_noise(x: Tensor, g: torch.Generator) -> Tensor:
            mask = chosen(x, g)
            snr_db = step.min_snr + (step.max_snr - step.min_snr) * torch.rand(
                (x.shape[0], 1, 1), generator=g, device=x.device, dtype=torch.float64)
            noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
            rms = lambda v: torch.sqrt(torch.mean(v.double() ** 2, dim=-1, keepdim=True))
            scaled = noise * (rms(x) / 10 ** (snr_db / 20) / rms(noise).clamp_min(1e-300)).to(x.dtype)
            return torch.where(mask, x + scaled, x)
        return add_noise
    if kind is T.Scale:
        def scale(x: Tensor, g: torch.Generator) -> Tensor:
            factor = step.min_scale + (step.max_scale - step.min_scale) * torch.rand(
                (x.shape[0], 1, 1), generator=g, device=x.device, dtype=x.dtype)
            return torch.where(chosen(x, g), x * factor, x)
        return scale
    if kind is T.SwapChannel:
        return lambda x, g: torch.where(chosen(x, g), x[:, [1, 0, 2]], x)
    raise G2NetError(f"{step!r} has no batched version for online training; drop it from the "
                     "config's train transforms or train from files (train_source = 'files')")


# ----------------------------------------------------------------------------- the training source
class OnlineSource:
    """What training iterates instead of a DataLoader: ``steps_per_epoch`` fresh batches
    ``(x float32 (B, 3, T), y float32 (B, 1))`` on ``device``, after the config's train transforms.

    Batch ``k`` of epoch ``e`` on rank ``r`` comes from the generator seeded ``stream_seed(seed, r,
    e)`` after ``k`` batches: :meth:`set_epoch` (called by the trainer) reseeds, so a resumed run
    continues the stream bit for bit; :meth:`state_dict` records position and generator state.
    """

    def __init__(self, simulator: OnlineSimulator, batch_size: int, steps_per_epoch: int, seed: int,
                 transform: Any = None, rank: int = 0):
        if steps_per_epoch < 1 or batch_size < 1:
            raise G2NetError(f"online training needs steps_per_epoch >= 1 and batch_size >= 1, got "
                             f"{steps_per_epoch} and {batch_size}")
        self.simulator, self.batch_size, self.steps = simulator, batch_size, steps_per_epoch
        self.seed, self.rank = seed, rank
        self.transform = batched_transform(transform)
        self.epoch, self.step = 0, 0
        self.generator = make_generator(simulator.device, stream_seed(seed, rank, 0))

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0
        self.generator.manual_seed(stream_seed(self.seed, self.rank, epoch))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while self.step < self.steps:
            batch = self.simulator.sample(self.generator, self.batch_size)
            x = self.transform(batch.data, self.generator)
            self.step += 1
            yield x.float(), batch.target.float()[:, None]

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "rank": self.rank, "epoch": self.epoch, "step": self.step,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a saved stream. Under torchrun rank 0 saves the checkpoint: another rank
        takes the position and re-derives its own generator for that epoch."""
        if state["seed"] != self.seed:
            raise G2NetError(f"the checkpoint's online stream has seed {state['seed']}, this run "
                             f"{self.seed}; resume with the same config")
        epoch, step = int(state["epoch"]), int(state["step"])
        if state["rank"] == self.rank:
            self.epoch, self.step = epoch, step
            generator = state["generator"]
            self.generator.set_state(generator.cpu() if hasattr(generator, "cpu") else generator)
        else:  # checkpoints are written at epoch ends, where the next set_epoch reseeds anyway
            self.set_epoch(epoch)
            self.step = step


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

    Ids and labels are :func:`simulate.make_ids` / :func:`simulate.make_targets` of the seed; the
    examples of each batch of ``batch_size`` come from a generator of ``(seed, first index)``.
    The same seed gives the same bytes on the same device and ``batch_size``.
    """
    from tqdm import tqdm

    record = simulate.run_record(n_train, n_test, seed, priors, approximant, bank)
    record.update(engine="ml4gw", device=str(device), batch_size=int(batch_size))
    simulate.validate_run(out, n_train, n_test, seed, 1, overwrite, record)
    device = torch.device(device)
    simulator = OnlineSimulator(priors, approximant, bank, device)
    out = Path(out)
    total = n_train + n_test
    ids = simulate.make_ids(seed, total)
    targets = simulate.make_targets(seed, n_train, n_test, priors.positive_fraction)
    splits = ["train"] * n_train + ["test"] * n_test
    simulate.begin_run(out, overwrite, record)
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
                simulate._save_example(simulate.example_path(out, splits[index], ids[index]), data[k])
                row: dict[str, Any] = {"id": ids[index], "split": splits[index],
                                       "target": int(targets[index])}
                if targets[index]:
                    row["approximant"] = simulator.approximant
                    row.update({c: float(params[c][k]) for c in params})
                    row["gps_start"] = int(round(row["gps_start"]))
                    if "bank_row" in row:
                        row["bank_row"] = int(row["bank_row"])
                rows.append(row)
            bar.update(last - first)
    elapsed = time.perf_counter() - started
    simulate.end_run(out, rows, columns, record)
    return {"n_train": n_train, "n_test": n_test, "positives": int(targets.sum()), "seconds": elapsed,
            "rate": total / elapsed if elapsed > 0 else float("inf"), "device": str(device)}


# ----------------------------------------------------------------------------- configs
def online_settings(cfg: type) -> dict[str, Any]:
    """The config's ``online`` dict over ``configs.Baseline.online`` (every key has its default
    there), checked: a G2NetError names an unknown key or prior."""
    import configs

    defaults = configs.Baseline.online
    settings = {**defaults, **(getattr(cfg, "online", None) or {})}
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise G2NetError(f"config {cfg.name}: unknown online settings {unknown}; known: "
                         f"{sorted(defaults)}")
    fields = {f.name for f in dataclasses.fields(Priors)}
    bad = sorted(set(settings["priors"]) - fields)
    if bad:
        raise G2NetError(f"config {cfg.name}: online priors {bad} are not simulate.Priors fields "
                         f"({', '.join(sorted(fields))})")
    if settings["approximant"] not in ML4GW_APPROXIMANTS and cfg.train_source == "online":
        check_ml4gw_approximant(settings["approximant"])
    return settings


def make_priors(settings: Mapping[str, Any]) -> Priors:
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in settings["priors"].items()}
    return Priors(**values)


def make_source(cfg: type, device: torch.device, seed: int, rank: int = 0,
                max_steps: int | None = None) -> OnlineSource:
    """The training source of a config with ``train_source`` 'online' or 'bank' (``max_steps``
    caps the epoch: ``--debug``)."""
    import utils

    source = getattr(cfg, "train_source", "files")
    if source not in SOURCES[1:]:
        raise G2NetError(f"config {cfg.name}: train_source {source!r} is not an online source "
                         f"({', '.join(SOURCES)})")
    if cfg.pseudo_labels:
        raise G2NetError(f"config {cfg.name}: pseudo-labels extend a file training set; an online "
                         "source has none (train_source = 'files')")
    settings = online_settings(cfg)
    bank = None
    if source == "bank":
        if not settings["signal_bank"]:
            raise G2NetError(f"config {cfg.name}: train_source 'bank' needs online['signal_bank'] "
                             "(a polarisation bank, relative to the input folder)")
        bank = Path(settings["signal_bank"])
        bank = bank if bank.is_absolute() else utils.input_dir() / bank
    where = torch.device(settings["device"]) if settings["device"] else device
    simulator = OnlineSimulator(make_priors(settings), settings["approximant"], bank, where)
    steps = int(settings["steps_per_epoch"])
    steps = min(steps, max_steps) if max_steps is not None else steps
    return OnlineSource(simulator, cfg.batch_size, steps, seed, cfg.transforms.get("train"), rank)


# ----------------------------------------------------------------------------- command line
@utils_cli_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python online.py --write-polarization-bank BANK.npz --n-signals K --seed S
    [--approximant IMRPhenomXPHM] [--workers W] [--mass-range A B] [--spin-range A B]
    [--tc-range A B]``: the bank a ``train_source = 'bank'`` config names in ``online['signal_bank']``."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n\n")[0])
    parser.add_argument("--write-polarization-bank", required=True, metavar="BANK.npz")
    parser.add_argument("--n-signals", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--approximant", default="IMRPhenomXPHM",
                        help="any LALSimulation approximant PyCBC generates in the time domain")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    pair = {"nargs": 2, "type": float, "metavar": ("MIN", "MAX")}
    parser.add_argument("--mass-range", **pair)
    parser.add_argument("--spin-range", **pair, help="aligned spins; precessing: magnitude up to max |.|")
    parser.add_argument("--tc-range", **pair, help="merger times the bank must allow (segment length)")
    args = parser.parse_args(argv)
    priors = Priors(**{name: tuple(getattr(args, name)) for name in ("mass_range", "spin_range", "tc_range")
                       if getattr(args, name) is not None})
    summary = write_polarization_bank(args.write_polarization_bank, args.n_signals, args.seed, priors,
                                      args.approximant, args.workers, progress=not args.no_progress)
    print(f"wrote {summary['n_signals']} {args.approximant} waveforms ({summary['bytes'] / 1e3:.0f} KB) "
          f"to {summary['path']} in {summary['seconds']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
