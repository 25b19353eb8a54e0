"""Where injection parameters come from: the priors as data, and the two backends that sample them.

:class:`Priors` holds the bounds (and the SNR distribution and positive fraction) a simulation is
asked for; :data:`LAWS` says how each parameter is distributed within its bounds. The numpy backend
(:func:`draw_parameters`, :func:`draw_snr`, :func:`draw_precessing_spins`) draws one source from a
``numpy.random.Generator`` for the PyCBC engine; the torch backend (``*_torch``) draws a batch from a
``torch.Generator`` for the ml4gw engine. Both sample every law with the same formula
(tests/test_priors.py checks they agree in distribution); the order of the draws is part of each
backend's random stream and is kept so that a seed remakes the data it made before.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from g2net.simulation.physics import DEFAULT_APPROXIMANT, F_REF, REFERENCE_DISTANCE
from utils import N_SAMPLES, SAMPLE_RATE, G2NetError

if TYPE_CHECKING:  # torch is imported by the torch backend only: the PyCBC engine runs without it
    import torch
    from torch import Tensor

SNR_DISTRIBUTIONS = ("uniform", "loguniform", "powerlaw")
UNIFORM, UNIFORM_IN_SIN, UNIFORM_IN_COS, INTEGER = "uniform", "uniform in sin", "uniform in cos", "integer"


@dataclass(frozen=True)
class Law:
    """How one parameter is drawn: ``kind`` within the bounds held by the :class:`Priors` field
    ``bounds``."""
    bounds: str
    kind: str


# Every drawn parameter but the SNR (``snr_distribution`` over ``snr_range``) and precessing spins
# (isotropic directions, magnitudes uniform up to max |spin_range|).
LAWS: dict[str, Law] = {
    "mass": Law("mass_range", UNIFORM),  # each component; mass1 is the heavier
    "spin1z": Law("spin_range", UNIFORM),  # aligned spins
    "spin2z": Law("spin_range", UNIFORM),
    "ra": Law("ra_range", UNIFORM),
    "dec": Law("dec_range", UNIFORM_IN_SIN),  # isotropic sky
    "polarization": Law("polarization_range", UNIFORM),
    "inclination": Law("inclination_range", UNIFORM_IN_COS),  # isotropic orientation
    "coa_phase": Law("coa_phase_range", UNIFORM),
    "gps_start": Law("gps_range", INTEGER),  # window start, whole seconds
    "tc": Law("tc_range", UNIFORM),  # geocentric merger, s after the window start
}
# the order each backend draws in (part of its random stream)
NUMPY_ORDER = ("spin1z", "spin2z", "ra", "dec", "polarization", "inclination", "coa_phase",
               "gps_start", "tc")
TORCH_ALIGNED_SPINS = ("spin1z", "spin2z")
TORCH_EXTRINSIC_ORDER = ("dec", "inclination", "ra", "polarization", "coa_phase", "gps_start", "tc")


@dataclass(frozen=True)
class Priors:
    """Where the injection parameters are drawn from (defaults documented in docs/simulator.md).

    Masses are detector-frame solar masses, angles radians, times seconds.
    """
    mass_range: tuple[float, float] = (10.0, 50.0)  # each component uniform; mass1 >= mass2
    spin_range: tuple[float, float] = (-0.5, 0.5)  # aligned spins spin1z, spin2z, each uniform
    ra_range: tuple[float, float] = (0.0, 2 * math.pi)  # uniform
    dec_range: tuple[float, float] = (-math.pi / 2, math.pi / 2)  # uniform in sin(dec): isotropic
    inclination_range: tuple[float, float] = (0.0, math.pi)  # uniform in cos: isotropic
    polarization_range: tuple[float, float] = (0.0, 2 * math.pi)  # uniform
    coa_phase_range: tuple[float, float] = (0.0, 2 * math.pi)  # uniform
    tc_range: tuple[float, float] = (1.5, 1.9)  # geocentric merger, s after the window start
    gps_range: tuple[int, int] = (1238166018, 1269363618)  # window start, whole seconds (O3)
    snr_range: tuple[float, float] = (5.0, 20.0)  # optimal network SNR
    snr_distribution: str = "uniform"  # uniform | loguniform | powerlaw (p ~ snr^-4)
    positive_fraction: float = 0.5

    def validate(self, approximant: str) -> None:
        """Raise G2NetError naming the first prior that makes no sense."""
        duration = N_SAMPLES / SAMPLE_RATE

        def ordered(name: str, lo_ok: float, hi_ok: float) -> None:
            value = getattr(self, name)
            option = "--" + name.replace("_", "-")
            if not all(map(math.isfinite, value)) or value[0] > value[1]:
                raise G2NetError(f"{option} {value[0]:g} {value[1]:g}: need finite MIN <= MAX")
            if value[0] < lo_ok or value[1] > hi_ok:
                raise G2NetError(f"{option} {value[0]:g} {value[1]:g}: must lie within "
                                 f"[{lo_ok:g}, {hi_ok:g}]")

        if not all(map(math.isfinite, self.mass_range)) or not 0 < self.mass_range[0] <= self.mass_range[1]:
            raise G2NetError(f"--mass-range {self.mass_range[0]:g} {self.mass_range[1]:g}: need "
                             "0 < MIN <= MAX (solar masses)")
        ordered("spin_range", -0.99, 0.99)
        ordered("ra_range", 0.0, 2 * math.pi)
        ordered("dec_range", -math.pi / 2, math.pi / 2)
        ordered("inclination_range", 0.0, math.pi)
        ordered("polarization_range", 0.0, 2 * math.pi)
        ordered("coa_phase_range", 0.0, 2 * math.pi)
        ordered("tc_range", 0.0, duration)
        if not self.gps_range[0] <= self.gps_range[1]:
            raise G2NetError(f"--gps-range {self.gps_range[0]} {self.gps_range[1]}: need MIN <= MAX")
        if not all(map(math.isfinite, self.snr_range)) or not 0 < self.snr_range[0] <= self.snr_range[1]:
            raise G2NetError(f"--snr-range {self.snr_range[0]:g} {self.snr_range[1]:g}: need 0 < MIN <= MAX")
        if self.snr_distribution not in SNR_DISTRIBUTIONS:
            raise G2NetError(f"--snr-distribution {self.snr_distribution!r}: use one of "
                             f"{', '.join(SNR_DISTRIBUTIONS)}")
        check_positive_fraction(self.positive_fraction)
        check_approximant(approximant)


def check_positive_fraction(value: float) -> None:
    """The one prior a --signal-bank run still takes: it shapes the data set, not the signals."""
    if not 0.0 <= value <= 1.0:
        raise G2NetError(f"--positive-fraction {value:g}: must be in [0, 1]")


@functools.lru_cache(maxsize=None)
def _td_approximants() -> tuple[str, ...]:
    from pycbc.waveform import td_approximants  # deferred: PyCBC is heavy and only needed here

    return tuple(td_approximants())


def check_approximant(approximant: str) -> None:
    if approximant not in _td_approximants():
        known = _td_approximants()
        raise G2NetError(f"--approximant {approximant!r} is not a time-domain approximant PyCBC "
                         f"knows; try {DEFAULT_APPROXIMANT} or one of {', '.join(sorted(known)[:12])}, ...")


def spin_magnitude_limit(priors: Priors) -> float:
    """Largest spin magnitude of a precessing source: max |spin_range|."""
    return max(abs(priors.spin_range[0]), abs(priors.spin_range[1]))


# ----------------------------------------------------------------------------- numpy backend
def _uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1])) if bounds[0] < bounds[1] else float(bounds[0])


def sample(rng: np.random.Generator, law: Law, priors: Priors) -> float:
    """One value of ``law`` (an empty range gives its bound without drawing)."""
    low, high = getattr(priors, law.bounds)
    if law.kind == UNIFORM:
        return _uniform(rng, (low, high))
    if law.kind == UNIFORM_IN_SIN:
        return math.asin(_uniform(rng, (math.sin(low), math.sin(high))))
    if law.kind == UNIFORM_IN_COS:
        return math.acos(_uniform(rng, (math.cos(high), math.cos(low))))
    if law.kind == INTEGER:
        return int(rng.integers(low, high + 1))
    raise ValueError(f"unknown law {law.kind!r}")


def snr_from_uniform(u: Any, priors: Priors) -> Any:
    """The network SNR at quantile ``u`` (a float or a tensor): uniform, log-uniform, or
    p(snr) ~ snr^-4 (sources uniform in volume). Both backends map their uniform draws through it."""
    low, high = priors.snr_range
    if priors.snr_distribution == "uniform":
        return low + u * (high - low)
    if priors.snr_distribution == "loguniform":
        return low * (high / low) ** u
    return (low ** -3 + u * (high ** -3 - low ** -3)) ** (-1.0 / 3.0)


def draw_snr(rng: np.random.Generator, priors: Priors) -> float:
    """Optimal network SNR (see :func:`snr_from_uniform`)."""
    u = _uniform(rng, (0.0, 1.0))
    low, high = priors.snr_range
    return float(low) if low == high else float(snr_from_uniform(u, priors))


def draw_parameters(rng: np.random.Generator, priors: Priors, approximant: str) -> dict[str, Any]:
    """One source at ``REFERENCE_DISTANCE`` (the distance is rescaled to the drawn SNR later)."""
    masses = sorted((sample(rng, LAWS["mass"], priors), sample(rng, LAWS["mass"], priors)), reverse=True)
    params: dict[str, Any] = {"approximant": approximant, "f_ref": F_REF, "mass1": masses[0],
                              "mass2": masses[1], "distance": REFERENCE_DISTANCE}
    params.update({name: sample(rng, LAWS[name], priors) for name in NUMPY_ORDER})
    return params


def draw_precessing_spins(rng: np.random.Generator, priors: Priors) -> dict[str, float]:
    """Spin vectors of a precessing source: isotropic directions, magnitudes uniform up to
    :func:`spin_magnitude_limit`."""
    top, spins = spin_magnitude_limit(priors), {}
    for k in (1, 2):
        magnitude, cos_tilt, azimuth = rng.uniform(0, top), rng.uniform(-1, 1), rng.uniform(0, 2 * math.pi)
        sin_tilt = math.sqrt(1 - cos_tilt ** 2)
        spins.update({f"spin{k}x": magnitude * sin_tilt * math.cos(azimuth),
                      f"spin{k}y": magnitude * sin_tilt * math.sin(azimuth),
                      f"spin{k}z": magnitude * cos_tilt})
    return spins


# ----------------------------------------------------------------------------- torch backend
def _uniform_torch(g: torch.Generator, n: int, bounds: Sequence[float], device: torch.device) -> Tensor:
    import torch  # deferred: keeps torch out of the numpy simulator's import path

    u = torch.rand(n, generator=g, dtype=torch.float64, device=device)
    return bounds[0] + u * (bounds[1] - bounds[0])


def sample_torch(g: torch.Generator, n: int, law: Law, priors: Priors, device: torch.device) -> Tensor:
    """``n`` values of ``law`` (float64; the formulas of :func:`sample`)."""
    import torch  # deferred: keeps torch out of the numpy simulator's import path

    low, high = getattr(priors, law.bounds)
    if law.kind == UNIFORM:
        return _uniform_torch(g, n, (low, high), device)
    if law.kind == UNIFORM_IN_SIN:
        return torch.asin(_uniform_torch(g, n, (math.sin(low), math.sin(high)), device))
    if law.kind == UNIFORM_IN_COS:
        return torch.acos(_uniform_torch(g, n, (math.cos(high), math.cos(low)), device))
    if law.kind == INTEGER:
        return torch.randint(int(low), int(high) + 1, (n,), generator=g, device=device)
    raise ValueError(f"unknown law {law.kind!r}")


def draw_snr_torch(g: torch.Generator, n: int, priors: Priors, device: torch.device) -> Tensor:
    """``n`` network SNRs (see :func:`snr_from_uniform`)."""
    return snr_from_uniform(_uniform_torch(g, n, (0.0, 1.0), device), priors)


def draw_parameters_torch(g: torch.Generator, n: int, priors: Priors, precessing: bool,
                          device: torch.device) -> dict[str, Tensor]:
    """``n`` sources, as :func:`draw_parameters` and :func:`draw_snr` draw one (``snr_wanted``);
    a precessing approximant takes the spins of :func:`draw_precessing_spins`."""
    import torch  # deferred: keeps torch out of the numpy simulator's import path

    a, b = (sample_torch(g, n, LAWS["mass"], priors, device) for _ in range(2))
    params = {"mass1": torch.maximum(a, b), "mass2": torch.minimum(a, b)}
    if precessing:
        top = spin_magnitude_limit(priors)
        for k in (1, 2):
            magnitude = _uniform_torch(g, n, (0.0, top), device)
            cos_tilt = _uniform_torch(g, n, (-1.0, 1.0), device)
            azimuth = _uniform_torch(g, n, (0.0, 2 * math.pi), device)
            sin_tilt = torch.sqrt(1 - cos_tilt ** 2)
            params[f"spin{k}x"] = magnitude * sin_tilt * torch.cos(azimuth)
            params[f"spin{k}y"] = magnitude * sin_tilt * torch.sin(azimuth)
            params[f"spin{k}z"] = magnitude * cos_tilt
    else:
        params.update({name: sample_torch(g, n, LAWS[name], priors, device) for name in TORCH_ALIGNED_SPINS})
    params.update(draw_extrinsic_torch(g, n, priors, device))
    return params


def draw_extrinsic_torch(g: torch.Generator, n: int, priors: Priors, device: torch.device
                         ) -> dict[str, Tensor]:
    """Sky, orientation, phase, times and network SNR (``snr_wanted``): what a polarisation-bank
    source draws every step."""
    out = {name: sample_torch(g, n, LAWS[name], priors, device) for name in TORCH_EXTRINSIC_ORDER}
    out["snr_wanted"] = draw_snr_torch(g, n, priors, device)
    return out
