"""The calibrated noise: table and PSD conventions (PyCBC-consistent), and the match to real data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

from g2net.simulation import noise as sim_noise
from g2net import spectral
from utils import DETECTORS, N_SAMPLES, SAMPLE_RATE, G2NetError  # noqa: E402
from g2net.simulation import pycbc_engine

FREQS = np.fft.rfftfreq(N_SAMPLES, 1.0 / SAMPLE_RATE)
REAL_SAMPLE_CANDIDATES = (Path(__file__).resolve().parents[2] / "shared" / "real-g2net-sample",
                          Path("/work/shared/real-g2net-sample"))


def real_sample_dir() -> Path | None:
    return next((p for p in REAL_SAMPLE_CANDIDATES if (p / "training_labels.csv").is_file()), None)


@pytest.fixture(scope="module")
def simulated_noise() -> np.ndarray:
    rng = np.random.default_rng(2024)
    return np.stack([sim_noise.colored_noise(rng) for _ in range(400)])


@pytest.fixture(scope="module")
def real_negatives() -> np.ndarray:
    sample = real_sample_dir()
    if sample is None:
        pytest.skip("real G2Net sample not found at ../shared/real-g2net-sample or "
                    "/work/shared/real-g2net-sample: calibration bounds cannot be checked")
    import calibrate_noise

    return calibrate_noise.load_real_negatives(sample)


def test_table_covers_the_competition_grid():
    freqs, asd = sim_noise.load_asd()
    assert asd.shape == (3, len(FREQS))
    np.testing.assert_allclose(freqs, FREQS)
    assert np.all(np.isfinite(asd)) and np.all(asd >= 0)
    # strain noise of the order of the real data's: a few 1e-24 /sqrt(Hz) in the bucket
    assert np.all((asd[:, FREQS == 200.0] > 1e-24) & (asd[:, FREQS == 200.0] < 1e-23))


def test_psd_array_and_detector_psd_agree():
    psd = sim_noise.psd_array()
    assert psd.shape == (3, N_SAMPLES // 2 + 1)
    np.testing.assert_allclose(psd, sim_noise.load_asd()[1] ** 2)
    for row, name in enumerate(DETECTORS):
        series = sim_noise.detector_psd(name, 0.5, len(FREQS), low_frequency_cutoff=20.0)
        assert series.delta_f == 0.5 and len(series) == len(FREQS)
        values = series.numpy()
        assert np.all(values[FREQS < 20] == 0)
        np.testing.assert_allclose(values[FREQS >= 20], psd[row, FREQS >= 20])
    # a finer grid interpolates between table bins
    fine = sim_noise.detector_psd("L1", 0.25, 4097).numpy()
    np.testing.assert_allclose(fine[::2], psd[1])
    np.testing.assert_allclose(fine[401], 0.5 * (psd[1, 200] + psd[1, 201]))


def test_estimate_psd_of_white_noise_is_two_sigma_squared_over_rate():
    rng = np.random.default_rng(0)
    estimate = spectral.estimate_psd(rng.normal(0, 3.0, (200, 3, N_SAMPLES)))
    assert estimate.shape == (3, N_SAMPLES // 2 + 1)
    np.testing.assert_allclose(estimate.mean(axis=1), 2 * 9.0 / SAMPLE_RATE, rtol=0.01)
    assert spectral.estimate_psd(rng.normal(size=(3, 1024))).shape == (3, 513)


def test_colored_noise_has_the_table_psd(simulated_noise):
    """The Tukey estimate of the simulated noise is the table, leakage of the 10-15 Hz power included."""
    assert simulated_noise.shape == (400, 3, N_SAMPLES) and simulated_noise.dtype == np.float64
    log_ratio = np.log(spectral.estimate_psd(simulated_noise) / sim_noise.psd_array())
    band = (FREQS >= 20) & (FREQS <= 1000)
    smoothed = np.stack([np.convolve(row[band], np.ones(41) / 41, mode="valid") for row in log_ratio])
    assert np.abs(smoothed).max() < 0.04
    assert np.abs(log_ratio[:, band]).max() < np.log(1.3)  # every bin, line shoulders included
    # the generating PSD, deconvolved through the estimator, reproduces the table
    operator = spectral.TukeyEstimateOperator(oversampling=sim_noise.NOISE_OVERSAMPLING)
    source = sim_noise.generation_psd(N_SAMPLES)  # no oversampling: the table's own grid
    assert np.all(source >= 0)
    expected = operator.forward(sim_noise.generation_psd(N_SAMPLES))
    np.testing.assert_allclose(expected[:, band], sim_noise.psd_array()[:, band], rtol=0.2)
    assert np.median(np.abs(expected[:, band] / sim_noise.psd_array()[:, band] - 1)) < 0.01


def test_colored_noise_follows_pycbc_psd_convention(simulated_noise):
    """Noise drawn by PyCBC from the same PSD has the same level (strain^2/Hz, one-sided)."""
    from pycbc.noise import noise_from_psd

    psd = sim_noise.detector_psd("H1", 1.0 / 16, 16 * 1024 + 1, low_frequency_cutoff=20.0)
    stream = noise_from_psd(64 * N_SAMPLES, 1.0 / SAMPLE_RATE, psd, seed=3).numpy()
    theirs = spectral.estimate_psd(stream.reshape(64, 1, N_SAMPLES)[:, [0, 0, 0]])[0]
    ours = spectral.estimate_psd(simulated_noise[:64])[0]
    band = (FREQS >= 40) & (FREQS <= 900)
    assert abs(np.median(ours[band] / theirs[band]) - 1) < 0.05


def test_sigma_normalisation_matches_the_noise(simulated_noise):
    """(n|h) / sigma(h) has unit variance: pycbc.filter.sigma and the noise share one PSD convention.

    The noise is Tukey-tapered first, as every analysis of it must be: like the real data it is
    not periodic, and without a taper the 10-15 Hz power leaks over the whole band."""
    from scipy.signal.windows import tukey

    from pycbc.filter import sigma
    from pycbc.types import TimeSeries


    row = {"approximant": "IMRPhenomD", "mass1": 35.0, "mass2": 30.0, "spin1z": 0.0, "spin2z": 0.0,
           "distance": 500.0, "ra": 1.0, "dec": 0.2, "polarization": 0.3, "inclination": 0.4,
           "coa_phase": 0.0, "gps_start": 1250000000, "tc": 1.0}
    template = pycbc_engine.injection_signal(row)[0]
    psd = sim_noise.detector_psd("H1", 0.5, len(FREQS), low_frequency_cutoff=20.0).numpy()
    band = (FREQS >= 20) & (FREQS <= 1000)
    h = np.fft.rfft(template) / SAMPLE_RATE
    n = np.fft.rfft(simulated_noise[:, 0] * tukey(N_SAMPLES, spectral.TUKEY_ALPHA), axis=-1) / SAMPLE_RATE
    inner = 4 * 0.5 * np.real(np.sum(n[:, band] * np.conj(h[band]) / psd[band], axis=-1))
    norm = sigma(TimeSeries(template, delta_t=1.0 / SAMPLE_RATE), psd=sim_noise.detector_psd(
        "H1", 0.5, len(FREQS), low_frequency_cutoff=20.0), low_frequency_cutoff=20.0,
        high_frequency_cutoff=1000.0)
    assert abs(np.std(inner / norm) - 1) < 0.12


def test_simulated_noise_matches_the_real_negatives(simulated_noise, real_negatives):
    import calibrate_noise

    report = calibrate_noise.compare_with_real(real_negatives, simulated_noise)
    assert np.all(report["asd_ratio_min"] > 1 / 1.25), report
    assert np.all(report["asd_ratio_max"] < 1.25), report
    assert np.all(np.abs(report["rms_ratio"] - 1) < 0.20), report


def test_real_data_is_not_periodic_and_neither_is_ours(simulated_noise, real_negatives):
    """The window edges do not join up (no periodic wrap): jumps across the wrap are as large as
    the difference of independent samples, in the real data and in the simulated noise alike."""
    def wrap_jump(x):
        return np.sqrt(np.mean((x[..., 0] - x[..., -1]) ** 2) / np.mean(x ** 2))

    assert 1.0 < wrap_jump(real_negatives) < 2.0
    assert 1.0 < wrap_jump(simulated_noise) < 2.0


def test_missing_or_bad_table_is_a_clear_error(tmp_path):
    with pytest.raises(G2NetError, match="calibrate_noise"):
        sim_noise.load_asd(tmp_path / "absent.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1 2\n1 1 2\n")
    with pytest.raises(G2NetError, match="frequency asd_H1 asd_L1 asd_V1"):
        sim_noise.load_asd(bad)
    with pytest.raises(G2NetError, match="unknown detector"):
        sim_noise.detector_psd("K1", 0.5, 10)
    with pytest.raises(G2NetError, match="sample rate"):
        sim_noise.psd_on_grid(np.array([0.0, 2000.0]))
    with pytest.raises(G2NetError, match="shape"):
        spectral.estimate_psd(np.zeros(5))
