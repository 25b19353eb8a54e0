"""spectral.py, the one owner of the PSD and whitening conventions: the estimate and its expected
value, the PSD whitening divides by, and whitening in numpy and torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from g2net.simulation import noise as sim_noise
from g2net import spectral
from g2net import whitening
import transforms as T
from utils import N_SAMPLES, SAMPLE_RATE, G2NetError

FS = SAMPLE_RATE
N = N_SAMPLES
FREQS = np.fft.rfftfreq(N, 1 / FS)


def band_levels(psd: np.ndarray, low: float = 30.0, high: float = 500.0, width: float = 10.0):
    """The PSD averaged in ``width`` Hz bands between ``low`` and ``high``: (3, n_bands)."""
    edges = np.arange(low, high + width / 2, width)
    return np.stack([psd[:, (FREQS >= a) & (FREQS < b)].mean(axis=1)
                     for a, b in zip(edges[:-1], edges[1:])], axis=1)


def steep_psd(n_samples: int) -> np.ndarray:
    """A detector-like PSD with a steep low-frequency wall and a narrow line (3, n // 2 + 1)."""
    f = np.maximum(np.fft.rfftfreq(n_samples, 1 / FS), 5.0)
    shape = (30.0 / f) ** 8 + 1.0 + (f / 300.0) ** 2 + 50.0 * (np.abs(f - 60.0) < 0.3)
    return np.stack([k * 1e-46 * shape for k in (1.0, 1.3, 4.0)])


@pytest.fixture(scope="module")
def simulator_noise() -> np.ndarray:
    rng = np.random.default_rng(11)
    return np.stack([sim_noise.colored_noise(rng) for _ in range(64)])


def test_whitened_simulator_noise_has_unit_variance_per_sample(simulator_noise):
    """The estimate, the 'simulator' PSD and whitening share one convention: the simulator's noise
    comes out white with unit variance per sample where the window is one, in every detector."""
    window, gain = whitening.whitening_kernel("simulator", N)
    white = whitening.whiten(simulator_noise, window, gain)
    assert white.shape == simulator_noise.shape and white.dtype == np.float64
    middle = white[..., N // 8: 7 * N // 8]
    np.testing.assert_allclose(middle.var(axis=(0, 2)), 1.0, atol=0.05)
    levels = band_levels(spectral.estimate_psd(white), 30, 1000) * FS / 2  # unit variance <=> 1
    assert np.all(np.abs(levels - 1) < 0.2), levels.round(2)


def test_numpy_and_torch_whitening_agree(simulator_noise):
    window, gain = whitening.whitening_kernel("simulator", N)
    want = whitening.whiten(simulator_noise[:8], window, gain)
    got = whitening.whiten_torch(torch.from_numpy(simulator_noise[:8]), torch.from_numpy(window),
                                torch.from_numpy(gain).to(torch.complex128)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
    # the transforms are thin wrappers: the same numbers, bit for bit in numpy
    np.testing.assert_array_equal(T.Whiten(psd="simulator")(simulator_noise[0]), want[0])
    module = T.TorchWhiten(psd="simulator")
    np.testing.assert_array_equal(module(torch.from_numpy(simulator_noise[:8])).numpy(), got)


def test_estimate_of_noise_with_a_known_psd_is_that_psd():
    """White noise of variance s^2 has the one-sided PSD 2 s^2 / fs in every bin."""
    rng = np.random.default_rng(0)
    estimate = spectral.estimate_psd(rng.normal(0, 2.0, (100, 3, 1024)), FS)
    assert estimate.shape == (3, 513)
    np.testing.assert_allclose(estimate.mean(axis=1), 2 * 4.0 / FS, rtol=0.01)


def test_expected_estimate_psd_is_exact():
    flat = np.full((3, 2 * N + 1), 3e-47)
    np.testing.assert_allclose(spectral.expected_estimate_psd(flat, N, FS), 3e-47, rtol=1e-9)
    rng = np.random.default_rng(2)
    noise = np.stack([sim_noise.colored_noise(rng, N, FS) for _ in range(256)])
    ratio = spectral.estimate_psd(noise) / whitening.load_psd("simulator")
    # every bin: a mean of 256 chi-squared(2)/2 variables, relative spread 1/16
    assert abs(ratio.mean() - 1) < 0.01 and abs(ratio.std() - 1 / 16) < 0.01
    bands = band_levels(spectral.estimate_psd(noise), 0, 1020) / band_levels(
        whitening.load_psd("simulator"), 0, 1020)
    assert np.all(np.abs(bands - 1) < 0.1), "walls, bumps and lines included"
    with pytest.raises(ValueError, match="twice as fine"):
        spectral.expected_estimate_psd(np.ones((3, N // 2 + 1)), N, FS)


def test_operator_is_the_expected_estimate_map_and_its_adjoint():
    """TukeyEstimateOperator (for the deconvolution) and expected_estimate_psd are one map."""
    n = 512
    operator = spectral.TukeyEstimateOperator(n, FS, oversampling=4)
    coarse = steep_psd(n)
    fine = (operator.interp @ coarse.T).T  # the PSD the noise is drawn from, on the 4x grid
    want = spectral.expected_estimate_psd(fine, n, FS)
    np.testing.assert_allclose(operator.forward(coarse), want, rtol=1e-9, atol=1e-12 * want.max())
    # leakage is real: the wall's power fills the bins above it far beyond the PSD itself
    at_40_hz = np.fft.rfftfreq(n, 1 / FS).searchsorted(40.0)
    assert np.all(want[:, at_40_hz] > 100 * coarse[:, at_40_hz])
    rng = np.random.default_rng(0)
    x, y = rng.random((3, coarse.shape[-1])), rng.random((3, coarse.shape[-1]))
    np.testing.assert_allclose(np.sum(operator.forward(x) * y), np.sum(x * operator.adjoint(y)),
                               rtol=1e-10)


def test_deconvolution_recovers_a_generating_psd():
    n = 512
    operator = spectral.TukeyEstimateOperator(n, FS, oversampling=4)
    target = operator.forward(steep_psd(n))
    recovered = spectral.deconvolve_psd(target, operator, iterations=200)
    assert np.all(recovered >= 0)
    band = (np.fft.rfftfreq(n, 1 / FS) >= 20) & (np.fft.rfftfreq(n, 1 / FS) <= 1000)
    assert np.median(np.abs(operator.forward(recovered)[:, band] / target[:, band] - 1)) < 1e-3


def test_inverse_asd_is_the_whitening_gain():
    psd = np.array([[4.0, 0.0, np.nan, np.inf, 1e-46]])
    gain = spectral.inverse_asd(psd, sample_rate=2.0)
    np.testing.assert_allclose(gain, [[0.5, 0.0, 0.0, 0.0, 1e23]], rtol=1e-12)


def test_load_psd_errors_by_layer(tmp_path, monkeypatch):
    """A bad PSD *file* is the user's data (G2NetError saying what to run); a wrongly shaped array
    passed in code is a programming error (ValueError)."""
    monkeypatch.setenv("G2NET_INPUT_DIR", str(tmp_path))
    psd = steep_psd(N)
    np.save(tmp_path / "psd.npy", psd)
    np.testing.assert_array_equal(whitening.load_psd("psd.npy"), psd)
    np.testing.assert_array_equal(whitening.load_psd(torch.from_numpy(psd)), psd)
    with pytest.raises(G2NetError, match="prep_data.py --psd"):
        whitening.load_psd("missing.npy")
    (tmp_path / "broken.npy").write_bytes(b"not a numpy file")
    with pytest.raises(G2NetError, match="cannot read PSD file"):
        whitening.load_psd("broken.npy")
    np.save(tmp_path / "short.npy", psd[:, :100])
    with pytest.raises(G2NetError, match=r"\(3, 2049\)"):
        whitening.load_psd("short.npy")
    with pytest.raises(ValueError, match=r"\(3, 2049\)"):
        whitening.load_psd(psd[:, :100])
    assert whitening.load_psd("simulator", 1024).shape == (3, 513)


def test_noise_model_draws_noise_whose_expected_estimate_is_the_table():
    """noise_model's generating PSD goes through spectral's leakage map back to its table."""
    expected = whitening.load_psd("simulator")
    band = (FREQS >= 20) & (FREQS <= 1000)
    ratio = expected[:, band] / sim_noise.psd_array()[:, band]
    assert np.median(np.abs(ratio - 1)) < 0.01
