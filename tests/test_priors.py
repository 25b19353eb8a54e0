"""The priors: declared once (g2net.simulation.priors), sampled by a numpy and a torch backend that
agree in distribution, and recorded with the reference frequency that remakes each signal."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from g2net.simulation import physics
from g2net.simulation.priors import (LAWS, Priors, draw_parameters, draw_parameters_torch,
                                     draw_precessing_spins, draw_snr)

N = 3000
PRIORS = Priors(mass_range=(12.0, 45.0), spin_range=(-0.4, 0.6), dec_range=(-1.0, 1.2),
                inclination_range=(0.3, 2.5), tc_range=(1.6, 1.8), gps_range=(1000, 1100),
                snr_range=(6.0, 25.0))


def numpy_draws(priors: Priors, snr_distribution: str = "uniform") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    priors = Priors(**{**priors.__dict__, "snr_distribution": snr_distribution})
    rows = []
    for _ in range(N):
        row = draw_parameters(rng, priors, "IMRPhenomD")
        row["snr_wanted"] = draw_snr(rng, priors)
        rows.append(row)
    return {key: np.array([row[key] for row in rows]) for key in rows[0] if key != "approximant"}


def torch_draws(priors: Priors, snr_distribution: str = "uniform", precessing: bool = False
                ) -> dict[str, np.ndarray]:
    priors = Priors(**{**priors.__dict__, "snr_distribution": snr_distribution})
    g = torch.Generator().manual_seed(0)
    return {key: value.numpy() for key, value in
            draw_parameters_torch(g, N, priors, precessing, torch.device("cpu")).items()}


@pytest.mark.parametrize("distribution", ["uniform", "loguniform", "powerlaw"])
def test_numpy_and_torch_backends_agree_in_distribution(distribution):
    ours, theirs = numpy_draws(PRIORS, distribution), torch_draws(PRIORS, distribution)
    names = ["mass1", "mass2", "spin1z", "spin2z", "ra", "dec", "polarization", "inclination",
             "coa_phase", "gps_start", "tc", "snr_wanted"]
    for name in names:
        p_value = ks_2samp(ours[name], theirs[name]).pvalue
        assert p_value > 1e-3, (name, p_value)
    # and both against the law itself: cos(inclination) and sin(dec) uniform on their images
    for draws in (ours, theirs):
        low, high = np.cos(PRIORS.inclination_range[1]), np.cos(PRIORS.inclination_range[0])
        assert ks_2samp(np.cos(draws["inclination"]), np.random.default_rng(1).uniform(low, high, N)).pvalue > 1e-3
        assert np.all(draws["mass1"] >= draws["mass2"])
        assert set(np.unique(draws["gps_start"])) <= set(range(1000, 1101))


def test_every_law_is_sampled_within_its_bounds():
    ours, theirs = numpy_draws(PRIORS), torch_draws(PRIORS)
    for name, law in LAWS.items():
        low, high = getattr(PRIORS, law.bounds)
        for draws in (ours, theirs):
            values = draws["mass1" if name == "mass" else name]
            assert values.min() >= low - 1e-12 and values.max() <= high + 1e-12, name
    snr_low, snr_high = PRIORS.snr_range
    powerlaw = numpy_draws(PRIORS, "powerlaw")["snr_wanted"]
    # p(snr) ~ snr^-4: the median is where the cumulative reaches one half
    median = (snr_low ** -3 - 0.5 * (snr_low ** -3 - snr_high ** -3)) ** (-1 / 3)
    assert np.median(powerlaw) == pytest.approx(median, rel=0.03)


def test_precessing_spins_agree_in_distribution_and_respect_the_magnitude_limit():
    rng = np.random.default_rng(5)
    spins = [draw_precessing_spins(rng, PRIORS) for _ in range(N)]
    torch_spins = torch_draws(PRIORS, precessing=True)
    for k in (1, 2):
        ours = np.array([[s[f"spin{k}{c}"] for c in "xyz"] for s in spins])
        theirs = np.stack([torch_spins[f"spin{k}{c}"] for c in "xyz"], axis=1)
        for vectors in (ours, theirs):
            assert np.linalg.norm(vectors, axis=1).max() <= 0.6 + 1e-12
        assert ks_2samp(np.linalg.norm(ours, axis=1), np.linalg.norm(theirs, axis=1)).pvalue > 1e-3
        assert ks_2samp(ours[:, 2], theirs[:, 2]).pvalue > 1e-3


def test_a_source_records_the_reference_frequency_its_engines_use():
    row = draw_parameters(np.random.default_rng(0), Priors(), "IMRPhenomD")
    assert row["f_ref"] == physics.F_REF == 20.0
    assert not math.isnan(row["distance"]) and row["distance"] == physics.REFERENCE_DISTANCE
