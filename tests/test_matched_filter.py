"""Matched filter: SNR recovery, noise normalisation, physical coincidence, bank match, cache, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

import matched_filter as mf
import g2net.evaluation
from g2net.filtering import bank as template_bank
from g2net.filtering import baseline
from g2net.filtering import templates
from g2net.simulation import noise as sim_noise
from g2net.simulation import priors as sim_priors
from g2net.simulation import pycbc_engine
from utils import G2NetError

# A narrow corner of the simulator's prior keeps banks small and tests fast.
NARROW = sim_priors.Priors(mass_range=(30.0, 40.0), spin_range=(-0.1, 0.1))
SPEC = template_bank.BankSpec(size=12, mass_range=NARROW.mass_range, spin_range=NARROW.spin_range,
                   duration=1.7, n_candidates=200)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return template_bank.build_bank(SPEC, sim_noise.psd_array(), progress=False)


@pytest.fixture(scope="module")
def matched(bank):
    return baseline.MatchedFilter(bank, window=baseline.default_window(), device="cpu")


def _injection(bank, index: int, seed: int, snr: float = 10.0) -> np.ndarray:
    """Clean signal (3, 4096) of bank template ``index`` at network SNR ``snr`` (simulator's SNR)."""
    m1, m2 = bank.masses
    params = sim_priors.draw_parameters(np.random.default_rng(seed), NARROW, "IMRPhenomD")
    params.update(mass1=float(m1[index]), mass2=float(m2[index]),
                  spin1z=float(bank.chi_eff[index]), spin2z=float(bank.chi_eff[index]))
    signal = pycbc_engine.injection_signal(params)
    _, network = pycbc_engine.optimal_snr(signal)
    return signal * snr / network


def test_recovers_injected_snr10(bank, matched):
    signals = np.stack([_injection(bank, i, seed=i) for i in range(4)])
    clean = matched.statistic(signals)
    # No noise: only the sample grid and the template cut lose anything.
    assert np.all(np.abs(clean - 10.0) < 0.3), clean
    noise = np.stack([sim_noise.colored_noise(np.random.default_rng(100 + i)) for i in range(8)])
    noisy = matched.statistic(np.concatenate([signals, signals]) + noise)
    assert abs(noisy.mean() - 10.0) < 1.0, noisy  # within 10% of the optimal SNR
    # noise moves each network SNR by about one (more upward: the maximum over templates and
    # times); 3 is three of those
    assert np.all(np.abs(noisy - 10.0) < 3.0), noisy
    assert np.all(matched.statistic(noise) < 8.0)  # noise alone stays well below


def test_noise_snr_is_normalised(bank, matched):
    """Unit-norm templates on whitened noise: E|z|^2 = 2 in every detector (unit real/imag parts)."""
    noise = np.stack([sim_noise.colored_noise(np.random.default_rng(i)) for i in range(6)])
    snr2 = matched.snr_series(noise).numpy()
    middle = snr2[..., 512:-512]  # away from the Tukey taper
    per_detector = middle.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(per_detector, 2.0, rtol=0.08)


def test_only_physical_delays_combine(bank, matched):
    """Hanford and Livingston peaks 5 ms apart add up; 30 ms apart they cannot."""
    signal = _injection(bank, 0, seed=3)
    snrs, _ = pycbc_engine.optimal_snr(signal)
    both = float(np.hypot(snrs[0], snrs[1]))
    hl = signal.copy()
    hl[2] = 0.0
    near, far = hl.copy(), hl.copy()
    near[1] = np.roll(hl[1], int(0.005 * 2048))
    far[1] = np.roll(hl[1], int(0.030 * 2048))
    stat_near, stat_far = matched.statistic(np.stack([near, far]))
    assert stat_near == pytest.approx(both, rel=0.04)
    assert stat_far < 0.93 * both
    assert stat_far >= 0.97 * max(snrs[0], snrs[1])


def test_bank_covers_its_prior(bank):
    """The bank-match property on a narrow prior (the full default prior is measured in docs)."""
    matches = template_bank.injection_matches(bank, 12, seed=5, priors=NARROW, progress=False)
    assert np.mean(matches >= 0.95) >= 0.95, np.sort(matches)
    assert bank.pool_coverage > 0.9
    assert len(bank) == SPEC.size


def test_sliding_max_matches_brute_force():
    x = np.random.default_rng(0).normal(size=(2, 50))
    import torch

    got = templates.sliding_max(torch.from_numpy(x), 4).numpy()
    want = np.stack([[row[i:i + 9].max() for i in range(len(row) - 8)] for row in x])
    np.testing.assert_array_equal(got, want)


def test_bank_is_cached(tmp_path, monkeypatch, bank):
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path))
    psd = sim_noise.psd_array()
    spec = template_bank.BankSpec(size=3, mass_range=(30.0, 32.0), spin_range=(0.0, 0.0),
                       duration=1.5, n_candidates=16)
    first = template_bank.load_or_build_bank(spec, psd, progress=False)
    assert template_bank.bank_cache_path(spec, psd).is_file()
    monkeypatch.setattr(template_bank, "build_bank", lambda *a, **k: pytest.fail("bank rebuilt"))
    again = template_bank.load_or_build_bank(spec, psd)
    np.testing.assert_array_equal(first.mchirp, again.mchirp)
    np.testing.assert_allclose(first.waveforms, again.waveforms)
    other = template_bank.BankSpec(size=4, mass_range=(30.0, 32.0), spin_range=(0.0, 0.0))
    assert template_bank.bank_cache_path(other, psd) != template_bank.bank_cache_path(spec, psd)
    assert template_bank.bank_cache_path(spec, psd * 2) != template_bank.bank_cache_path(spec, psd)


def test_cli_writes_experiment_layout(tmp_path, monkeypatch, capsys):
    data = tmp_path / "sim"
    pycbc_engine.simulate(data, n_train=2, n_test=6, seed=1, workers=1, progress=False)
    import prep_data

    prep_data.main(["--input", str(data), "--no-progress"])
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path / "results"))
    mf.main(["--input", str(data), "--split", "test", "--bank-size", "4", "--candidates", "24",
             "--batch-size", "4"])
    out = tmp_path / "results" / "matched_filter"
    predictions = np.load(out / "predictions.npy")
    assert predictions.shape == (1, 6, 1) and predictions.dtype == np.float32
    assert np.all(np.isfinite(predictions)) and np.all(predictions > -baseline.SNR_OFFSET)
    summary = json.loads((out / "summary_test.json").read_text())
    assert summary["n_examples"] == 6 and summary["n_templates"] == 4
    assert "examples/s" in capsys.readouterr().out
    mf.main(["--input", str(data), "--split", "train", "--bank-size", "4", "--candidates", "24"])
    assert np.load(out / "outoffolds.npy").shape == (2, 1)
    with pytest.raises(SystemExit):
        mf.main(["--input", str(tmp_path / "absent")])
    assert "does not exist" in capsys.readouterr().err


def test_bad_inputs_are_clear_errors(matched):
    with pytest.raises(G2NetError, match=r"takes \(B, 3, 4096\) strain"):
        matched.statistic(np.zeros((2, 2, 4096)))
    with pytest.raises(G2NetError, match="exceeds the 5 candidates"):
        template_bank.build_bank(template_bank.BankSpec(size=6, n_candidates=5), sim_noise.psd_array(), progress=False)
    one = [np.array([30.0]), np.array([1.2]), np.array([0.0])]
    tiny = template_bank.TemplateBank(SPEC, *one, template_bank.template_waveforms(SPEC, *one), pool_coverage=1.0)
    with pytest.raises(G2NetError, match="window"):  # no room for Virgo's 27 ms at the end
        baseline.MatchedFilter(tiny, window=(1.99, 2.0), device="cpu")


def test_neighbour_matches_measure_spacing(bank):
    spacing = bank.neighbour_matches(sim_noise.psd_array())
    assert spacing.shape == (len(bank),)
    assert np.all((spacing > 0.5) & (spacing < 1.0 - 1e-6))  # close, but no duplicates


# ------------------------------------------------------------------------------------------------
# Library calls against hand-written reference implementations of the same quantities
# ------------------------------------------------------------------------------------------------
def _reference_sliding_max(x, radius: int):
    """Reference sliding maximum: torch's max pooling (2 radius + 1 comparisons per sample)."""
    import torch.nn.functional as F

    flat = x.reshape(-1, 1, x.shape[-1])
    pooled = F.max_pool1d(flat, kernel_size=2 * radius + 1, stride=1)
    return pooled.reshape(*x.shape[:-1], pooled.shape[-1])


@pytest.mark.parametrize("shape, radius", [((2, 50), 0), ((2, 50), 4), ((2, 3, 5, 64), 1),
                                           ((2, 3, 5, 64), 20), ((1, 7, 300), 55)])
def test_sliding_max_by_doubling_equals_max_pooling(shape, radius):
    import torch

    x = torch.from_numpy(np.random.default_rng(radius).normal(size=shape)).float()
    x = x[..., 1:]  # a non-contiguous slice, as the filter passes
    got = templates.sliding_max(x, radius)
    assert got.shape == x.shape[:-1] + (x.shape[-1] - 2 * radius,)
    np.testing.assert_array_equal(got.numpy(), _reference_sliding_max(x, radius).numpy())
    # written into a given (strided) array, as the strain filter does
    out = torch.full(shape[:-1] + (x.shape[-1] - 2 * radius + 3,), -1.0)[..., 3:]
    assert templates.sliding_max(x, radius, out=out) is out
    np.testing.assert_array_equal(out.numpy(), got.numpy())


def test_pycbc_conversions_equal_the_closed_formulas():
    pool = template_bank.candidate_pool(template_bank.BankSpec(n_candidates=300, seed=4))
    m1, m2, s1, s2 = pool["mass1"], pool["mass2"], pool["spin1z"], pool["spin2z"]
    np.testing.assert_allclose(pool["mchirp"], (m1 * m2) ** 0.6 / (m1 + m2) ** 0.2, rtol=1e-13)
    np.testing.assert_allclose(pool["chi_eff"], (m1 * s1 + m2 * s2) / (m1 + m2), rtol=1e-13,
                               atol=1e-15)
    np.testing.assert_allclose(pool["q"], m1 / m2, rtol=1e-15)
    bank = template_bank.TemplateBank(spec=SPEC, mchirp=pool["mchirp"], q=pool["q"], chi_eff=pool["chi_eff"],
                           waveforms=np.zeros((300, 1)), pool_coverage=1.0)
    back1, back2 = bank.masses
    np.testing.assert_allclose(back1, m1, rtol=1e-12)
    np.testing.assert_allclose(back2, m2, rtol=1e-12)


def test_evaluate_chirp_mass_equals_the_closed_formula(tmp_path):
    import pandas as pd


    rng = np.random.default_rng(1)
    ids = [f"{i:010x}" for i in range(40)]
    target = np.arange(40) % 2
    mass1 = np.where(target == 1, rng.uniform(20, 50, 40), np.nan)
    mass2 = np.where(target == 1, rng.uniform(10, 20, 40), np.nan)
    pd.DataFrame({"id": ids}).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"id": ids, "target": target}).to_csv(tmp_path / "test_labels.csv", index=False)
    pd.DataFrame({"id": ids, "target": target, "mass1": mass1, "mass2": mass2,
                  "snr_network": np.where(target == 1, 10.0, np.nan)}).to_csv(
        tmp_path / "injections.csv", index=False)
    truth = g2net.evaluation.load_truth(tmp_path)
    closed = (mass1 * mass2) ** 0.6 / (mass1 + mass2) ** 0.2  # the chirp mass, written out
    np.testing.assert_allclose(truth.mchirp[target == 1], closed[target == 1], rtol=1e-13)
    assert np.isnan(truth.mchirp[target == 0]).all()


def test_matched_filter_whitens_like_the_whiten_transform(matched):
    """One whitening convention: the filter's whitened spectrum is TorchWhiten's, same PSD."""
    import torch

    import transforms as T

    x = sim_noise.colored_noise(np.random.default_rng(8))[None]
    white = T.TorchWhiten(sim_noise.psd_array())(torch.from_numpy(x))
    want = torch.fft.rfft(white, dim=-1)[..., :matched.n_bins].to(torch.complex64)
    np.testing.assert_array_equal(matched._spectrum(x).numpy(), want.numpy())
