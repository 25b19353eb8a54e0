"""Online simulation (online.py): its physics against PyCBC/LALSuite and the simulator's own
conventions, and the stream's determinism. Small batches, fixed seeds."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from g2net.simulation import banks as sim_banks
from g2net.simulation import layout
from g2net.simulation import ml4gw_engine
from g2net.simulation import noise as sim_noise
from g2net.simulation import physics as sim_physics
from g2net.simulation import priors as sim_priors
from g2net.simulation import pycbc_engine
from g2net import spectral
from g2net.experiments import online as online_source
import transforms
import utils
from g2net.simulation.priors import Priors
from g2net.experiments import runner

FS = 2048


def _series(values):
    from pycbc.types import TimeSeries

    return TimeSeries(np.asarray(values, dtype=np.float64), delta_t=1.0 / FS)


def _row(batch: ml4gw_engine.Batch, i: int, approximant: str) -> dict:
    row = {k: float(v[i]) for k, v in batch.params.items()}
    row.update(approximant=approximant, gps_start=int(round(row["gps_start"])))
    return row


@pytest.fixture(scope="module")
def aligned_batch() -> ml4gw_engine.Batch:
    torch.manual_seed(0)
    simulator = ml4gw_engine.OnlineSimulator(Priors(positive_fraction=1.0))
    return simulator.sample(ml4gw_engine.make_generator("cpu", 11), 4)


def test_imrphenomd_signals_match_pycbc_injections_of_the_same_row(aligned_batch):
    """Waveform (ml4gw IMRPhenomD vs lalsimulation through PyCBC) and projection together: the
    clean detector strain of each row against pycbc_engine.injection_signal of that row."""
    from pycbc.filter import match

    psds = pycbc_engine._snr_psds(utils.N_SAMPLES, float(FS))
    for i in range(4):
        row = _row(aligned_batch, i, "IMRPhenomD")
        reference = pycbc_engine.injection_signal(row)
        mine = aligned_batch.signal[i].numpy()
        for d in range(3):
            value, shift = match(_series(mine[d]), _series(reference[d]), psd=psds[d],
                                 low_frequency_cutoff=20.0)
            assert value >= 0.999, (i, d, value)
            assert shift in (0, utils.N_SAMPLES - 1, 1), shift  # merger times agree to a sample


def test_injected_snr_is_the_drawn_one_under_pycbc_sigma(aligned_batch):
    """pycbc_engine.optimal_snr (pycbc.filter.sigma, simulator PSD, 20-1000 Hz) of each clean signal."""
    for i in range(4):
        per_detector, network = pycbc_engine.optimal_snr(aligned_batch.signal[i].numpy())
        assert network == pytest.approx(float(aligned_batch.params["snr_network"][i]), rel=0.02)
        for d, name in enumerate(utils.DETECTORS):
            assert per_detector[d] == pytest.approx(float(aligned_batch.params[f"snr_{name}"][i]),
                                                    rel=0.02, abs=1e-3)
        low, high = Priors().snr_range
        assert low <= network <= high


def test_data_is_noise_plus_signal_and_negatives_have_no_parameters():
    simulator = ml4gw_engine.OnlineSimulator(Priors(positive_fraction=0.5))
    batch = simulator.sample(ml4gw_engine.make_generator("cpu", 3), 6)
    assert batch.target.sum() == 3
    negatives = batch.target == 0
    assert torch.all(batch.signal[negatives] == 0)
    assert torch.isnan(batch.params["mass1"][negatives]).all()
    assert torch.isfinite(batch.params["mass1"][~negatives]).all()
    assert batch.data.shape == (6, 3, utils.N_SAMPLES) and batch.data.dtype == torch.float64


def test_antenna_patterns_and_delays_equal_pycbc_detector():
    from pycbc.detector import Detector

    rng = np.random.default_rng(5)
    n = 16
    ra, dec = rng.uniform(0, 2 * math.pi, n), np.arcsin(rng.uniform(-1, 1, n))
    psi, gps = rng.uniform(0, 2 * math.pi, n), rng.uniform(1238166018, 1269363618, n)
    projector = ml4gw_engine.Projector(*sim_banks.segment_geometry(Priors()))
    antenna, delays = projector.responses(*(torch.from_numpy(v) for v in (ra, dec, psi, gps)))
    for d, name in enumerate(utils.DETECTORS):
        det = Detector(name)
        fp, fc = det.antenna_pattern(ra, dec, psi, gps)
        np.testing.assert_allclose(antenna[:, 0, d].numpy(), fp, atol=1e-6, rtol=0)
        np.testing.assert_allclose(antenna[:, 1, d].numpy(), fc, atol=1e-6, rtol=0)
        expected = [det.time_delay_from_earth_center(a, b, t) for a, b, t in zip(ra, dec, gps)]
        np.testing.assert_allclose(delays[:, d].numpy(), expected, atol=1e-6, rtol=0)


def test_fractional_delays_move_a_signal_by_exactly_that_time():
    """The projector's shift: a Gaussian pulse at the merger index lands at tc + delay."""
    length, merger = sim_banks.segment_geometry(Priors())
    projector = ml4gw_engine.Projector(length, merger)
    t = (np.arange(length) - merger) / FS
    pulse = torch.from_numpy(np.exp(-0.5 * (t / 0.004) ** 2))[None]
    args = [torch.tensor([v], dtype=torch.float64) for v in (1.0, 0.3, 0.7, 1.25e9, 1.61234)]
    strain = projector(pulse, torch.zeros_like(pulse), *args)[0].numpy()
    antenna, delays = projector.responses(*args[:3], args[3] + args[4])  # at the merger time
    grid = np.arange(utils.N_SAMPLES) / FS
    for d in range(3):
        expected = antenna[0, 0, d].item() * np.exp(-0.5 * ((grid - 1.61234 - delays[0, d].item()) / 0.004) ** 2)
        np.testing.assert_allclose(strain[d], expected, atol=1e-9)


def test_noise_asd_is_the_model_within_ten_percent_from_20_to_500_hz():
    noise = ml4gw_engine.NoiseGenerator()(ml4gw_engine.make_generator("cpu", 0), 512).numpy()
    estimate = spectral.estimate_psd(noise)
    model = sim_noise.psd_array()
    freqs = np.fft.rfftfreq(utils.N_SAMPLES, 1 / FS)
    band = (freqs >= 20) & (freqs <= 500)
    ratio = np.sqrt(estimate[:, band] / model[:, band])
    assert ratio.min() > 1 / 1.1 and ratio.max() < 1.1, (ratio.min(), ratio.max())
    np.testing.assert_allclose(ratio.mean(axis=1), 1.0, atol=0.01)


def test_priors_are_drawn_inside_their_ranges_with_the_simulator_distributions():
    priors = Priors(snr_range=(4.0, 30.0), snr_distribution="powerlaw", tc_range=(1.6, 1.8))
    params = sim_priors.draw_parameters_torch(ml4gw_engine.make_generator("cpu", 1), 4000, priors, False, torch.device("cpu"))
    assert torch.all(params["mass1"] >= params["mass2"])
    assert params["mass2"].min() >= 10 and params["mass1"].max() <= 50
    assert params["tc"].min() >= 1.6 and params["tc"].max() <= 1.8
    # isotropic sky and orientation: sin(dec) and cos(inclination) uniform on [-1, 1]
    assert abs(float(torch.sin(params["dec"]).mean())) < 0.05
    assert float(torch.cos(params["inclination"]).var()) == pytest.approx(1 / 3, rel=0.1)
    snr = params["snr_wanted"].numpy()
    numpy_draws = [sim_priors.draw_snr(np.random.default_rng(k), priors) for k in range(4000)]
    assert np.median(snr) == pytest.approx(np.median(numpy_draws), rel=0.05)
    assert snr.min() >= 4.0 and snr.max() <= 30.0


def test_precessing_spins_are_isotropic_and_bounded():
    params = sim_priors.draw_parameters_torch(ml4gw_engine.make_generator("cpu", 2), 4000, Priors(spin_range=(-0.8, 0.8)),
                                    True, torch.device("cpu"))
    magnitude = torch.sqrt(params["spin1x"] ** 2 + params["spin1y"] ** 2 + params["spin1z"] ** 2)
    assert magnitude.max() <= 0.8 + 1e-12
    assert float((params["spin1z"] / magnitude).var()) == pytest.approx(1 / 3, rel=0.1)


def test_imrphenompv2_strain_matches_lalsimulation_with_the_same_reference_frequency():
    """The precessing path (docs/online.md): ml4gw IMRPhenomPv2 against lalsimulation's at
    inclinations 1.3-1.46 rad, where PyCBC's default f_ref once made them look different."""
    from pycbc.filter import match
    from pycbc.waveform import get_td_waveform

    priors = Priors(spin_range=(-0.8, 0.8), inclination_range=(1.3, 1.46))
    length, merger = sim_banks.segment_geometry(priors)
    waveforms = ml4gw_engine.Ml4gwWaveforms("IMRPhenomPv2", priors, length, merger)
    params = sim_priors.draw_parameters_torch(ml4gw_engine.make_generator("cpu", 4), 2, priors, True, torch.device("cpu"))
    hp, hc = waveforms(params)
    psd = sim_noise.detector_psd("H1", FS / length, length // 2 + 1)  # no zero bins below 20 Hz
    for i in range(2):
        p = {k: float(v[i]) for k, v in params.items()}
        ref_p, ref_c = get_td_waveform(
            approximant="IMRPhenomPv2", mass1=p["mass1"], mass2=p["mass2"], spin1x=p["spin1x"],
            spin1y=p["spin1y"], spin1z=p["spin1z"], spin2x=p["spin2x"], spin2y=p["spin2y"],
            spin2z=p["spin2z"], distance=sim_physics.REFERENCE_DISTANCE, inclination=p["inclination"],
            coa_phase=p["coa_phase"], delta_t=1 / FS, f_lower=sim_physics.F_LOWER, f_ref=sim_physics.F_LOWER)
        start = int(round(float(ref_p.start_time) * FS)) + merger
        for mine, ref in ((hp[i], ref_p), (hc[i], ref_c)):
            placed = np.zeros(length)
            lo = max(start, 0)
            placed[lo:start + len(ref)] = ref.numpy()[lo - start:length - start]
            placed[:int(sim_banks.EDGE_TAPER * FS) + 1] = 0  # the segment's tapered start
            trimmed = mine.numpy().copy()
            trimmed[:int(sim_banks.EDGE_TAPER * FS) + 1] = 0
            assert match(_series(trimmed), _series(placed), psd=psd, low_frequency_cutoff=20.0)[0] >= 0.999


def test_stream_is_deterministic_per_seed_rank_and_epoch_and_resumes_bit_for_bit():
    simulator = ml4gw_engine.OnlineSimulator()
    source = online_source.OnlineSource(simulator, batch_size=4, steps_per_epoch=3, seed=9)
    assert len(source) == 3
    source.set_epoch(1)
    first = [x.clone() for x, _ in source]
    assert len(first) == 3 and first[0].dtype == torch.float32 and first[0].shape == (4, 3, 4096)
    source.set_epoch(1)
    again = iter(source)
    head = next(again)[0]
    saved = source.state_dict()
    assert torch.equal(head, first[0])
    restored = online_source.OnlineSource(ml4gw_engine.OnlineSimulator(), batch_size=4, steps_per_epoch=3, seed=9)
    restored.load_state_dict(saved)
    rest = [x for x, _ in restored]
    assert len(rest) == 2 and all(torch.equal(a, b) for a, b in zip(rest, first[1:]))
    other_rank = online_source.OnlineSource(simulator, batch_size=4, steps_per_epoch=1, seed=9, rank=1)
    other_rank.set_epoch(1)
    other_epoch = online_source.OnlineSource(simulator, batch_size=4, steps_per_epoch=1, seed=9)
    other_epoch.set_epoch(2)
    assert not torch.equal(next(iter(other_rank))[0], first[0])
    assert not torch.equal(next(iter(other_epoch))[0], first[0])
    with pytest.raises(utils.G2NetError, match="seed"):
        online_source.OnlineSource(simulator, batch_size=4, steps_per_epoch=3, seed=8).load_state_dict(saved)


def test_batched_augmentations_follow_the_numpy_ones():
    import transforms as T

    x = torch.randn(64, 3, 4096, dtype=torch.float64)
    g = ml4gw_engine.make_generator("cpu", 0)
    flipped = transforms.batched(T.Compose([T.FlipWave(p=0.5)]))(x, g)
    signs = (flipped[:, 0, 0] / x[:, 0, 0]).round()
    assert set(signs.tolist()) == {-1.0, 1.0} and torch.equal(flipped.abs(), x.abs())
    shifted = transforms.batched(T.GlobalTimeShift(max_shift=0.1, always_apply=True))(x, g)
    for i in range(4):  # every row of an example rolled by the same amount
        lags = [int(torch.argmax(torch.fft.irfft(torch.fft.rfft(shifted[i, d]) * torch.fft.rfft(x[i, d]).conj())))
                for d in range(3)]
        assert len(set(lags)) == 1
    whiten = T.Compose([T.Whiten(psd="simulator"), T.BandPass(20, 500)])
    batched = transforms.batched(whiten)(x[:2], g)
    np.testing.assert_allclose(batched.numpy(), np.stack([whiten(v) for v in x[:2].numpy()]), atol=1e-8)
    with pytest.raises(ValueError, match="no batched version"):
        transforms.batched(T.TimeMask(always_apply=True))


def test_polarization_bank_round_trip_gives_fresh_examples(tmp_path):
    path = tmp_path / "bank.npz"
    summary = pycbc_engine.write_polarization_bank(path, 2, seed=3, approximant="IMRPhenomD", progress=False)
    assert summary["n_signals"] == 2
    bank = sim_banks.load_polarization_bank(path)
    assert bank.polarizations.shape[:2] == (2, 2) and len(bank) == 2
    simulator = ml4gw_engine.OnlineSimulator(Priors(positive_fraction=1.0), bank=bank)
    batch = simulator.sample(ml4gw_engine.make_generator("cpu", 0), 4)
    rows = batch.params["bank_row"].long()
    assert set(rows.tolist()) <= {0, 1}
    for i in range(4):
        assert pycbc_engine.optimal_snr(batch.signal[i].numpy())[1] == pytest.approx(
            float(batch.params["snr_network"][i]), rel=0.02)
    # same stored waveform or not, sky, polarisation, time and SNR differ: distinct strain
    assert (batch.signal[0] - batch.signal[1]).abs().max() > 0.1 * batch.signal[0].abs().max()
    with pytest.raises(utils.G2NetError, match="not a polarisation bank"):
        (tmp_path / "bad.npz").write_bytes(b"nonsense")
        sim_banks.load_polarization_bank(tmp_path / "bad.npz")


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def ml4gw_input(tmp_path_factory):
    """``simulate.py --engine ml4gw`` output, prepared by prep_data.py."""
    from conftest import run_script

    root = tmp_path_factory.mktemp("ml4gw") / "input"
    done = run_script("simulate.py", "--engine", "ml4gw", "--out", str(root), "--n-train", "64",
                      "--n-test", "16", "--seed", "5", "--no-progress")
    assert "wrote 64 train + 16 test examples" in done.stdout
    run_script("prep_data.py", "--input", str(root), "--cache", "--no-progress")
    return root


def test_ml4gw_engine_writes_the_competition_layout_that_prep_data_reads(ml4gw_input):
    import pandas as pd

    table = layout.load_injections(ml4gw_input / "injections.csv")
    assert list(table.columns) == layout.INJECTION_COLUMNS
    assert len(table) == 80 and table["target"].sum() == 40
    prepared = pd.read_csv(ml4gw_input / "train.csv")
    assert len(prepared) == 64 and prepared["target"].sum() == 32
    row = table[table["target"] == 1].iloc[0]
    data = np.load(utils.example_path(ml4gw_input, row["split"], row["id"]))
    assert data.shape == (3, utils.N_SAMPLES) and data.dtype == np.float64
    # the written signal is the row's physics: its PyCBC re-injection has the row's SNR
    assert pycbc_engine.optimal_snr(pycbc_engine.injection_signal(row))[1] == pytest.approx(row["snr_network"], rel=0.02)


def _fitted_amplitude(data: np.ndarray, signal: np.ndarray) -> float:
    """Least-squares amplitude of ``signal`` in ``data``, both whitened by the simulator PSD."""
    from g2net.whitening import whiten, whitening_kernel

    window, gain = whitening_kernel("simulator")
    white_data, white_signal = whiten(data, window, gain), whiten(signal, window, gain)
    return float(np.sum(white_data * white_signal) / np.sum(white_signal ** 2))


def test_recorded_parameters_remake_the_ml4gw_signal_with_pycbc(tmp_path):
    """injections.csv of the ml4gw engine records f_ref: PyCBC remakes each injected signal from its
    row alone (fitted amplitude ~1). Without the reference frequency (PyCBC's default) it does not."""
    ml4gw_engine.simulate_files(tmp_path, 16, 0, seed=3, priors=sim_priors.Priors(snr_range=(20, 30)),
                                progress=False)
    table = layout.load_injections(tmp_path / "injections.csv")
    positives = table[table["target"] == 1]
    assert len(positives) == 8 and (positives["f_ref"] == sim_physics.F_REF).all()
    remade, unrecorded = [], []
    for _, row in positives.iterrows():
        data = np.load(utils.example_path(tmp_path, "train", row["id"]))
        remade.append(_fitted_amplitude(data, pycbc_engine.injection_signal(row.to_dict())))
        old = {k: v for k, v in row.to_dict().items() if k != "f_ref"}
        unrecorded.append(_fitted_amplitude(data, pycbc_engine.injection_signal(old)))
    # network SNR 20-30: the fit scatters by ~1/SNR
    assert all(0.85 < a < 1.15 for a in remade), remade
    assert abs(np.median(remade) - 1) < 0.05
    assert np.median(unrecorded) < 0.6, unrecorded


def test_files_and_online_training_on_ml4gw_output_and_bit_identical_resume(ml4gw_input, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from conftest import REPO, run_script

    env = {"G2NET_INPUT_DIR": str(ml4gw_input), "G2NET_RESULTS_DIR": str(tmp_path / "files")}
    run_script("train.py", "--config", "Debug", "--limit_fold", "0", env=env)
    assert np.isfinite(np.load(tmp_path / "files" / "Debug" / "predictions.npy")[0]).all()
    reference = tmp_path / "reference"
    env = {**env, "G2NET_RESULTS_DIR": str(reference)}
    done = run_script("train.py", "--config", "DebugOnline", "--limit_fold", "0", env=env)
    assert "generated batches" in done.stdout
    resumed = tmp_path / "resumed"
    env = {**env, "G2NET_RESULTS_DIR": str(resumed)}
    out = resumed / "DebugOnline"
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), "--config", "DebugOnline",
                             "--limit_fold", "0"], cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / "fold0_last.pt").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(out / "fold0_last.pt", weights_only=False)
    assert saved["train_source"]["epoch"] == 0 and saved["train_source"]["step"] == 3
    done = run_script("train.py", "--config", "DebugOnline", "--limit_fold", "0", "--resume", env=env)
    assert "resumed from" in done.stdout
    for name in ("outoffolds.npy", "predictions.npy"):
        assert np.array_equal(np.load(out / name), np.load(reference / "DebugOnline" / name),
                              equal_nan=True), name


def test_online_configs_have_valid_settings_and_batchable_train_transforms():
    import configs

    online_configs = [c for c in runner.all_configs().values() if c.train_source != "files"]
    assert {"DemoOnline", "Seq03wOnline", "Nspec16Online"} <= {c.name for c in online_configs}
    for cfg in online_configs:
        settings = online_source.online_settings(cfg)
        assert settings["steps_per_epoch"] >= 1 and cfg.pseudo_labels is None
        transforms.batched(cfg.transforms["train"])  # raises for a transform it cannot batch
    for name in ("Demo", "Seq03w", "Nspec16"):
        parent, child = getattr(configs, name), getattr(configs, name + "Online")
        assert child.model is parent.model and child.model_params == parent.model_params
        assert child.transforms is parent.transforms


def test_bad_online_settings_are_refused_with_a_message():
    import configs

    class Typo(configs.DemoOnline):
        online = dict(configs.Baseline.online, step_per_epoch=5)

    class BadPrior(configs.DemoOnline):
        online = dict(configs.Baseline.online, priors=dict(snr=(1, 2)))

    class Xphm(configs.DemoOnline):
        online = dict(configs.Baseline.online, approximant="IMRPhenomXPHM")

    for cfg, message in ((Typo, "unknown online settings"), (BadPrior, "not Priors fields"),
                         (Xphm, "polarisation bank")):
        with pytest.raises(utils.G2NetError, match=message):
            online_source.online_settings(cfg)


def test_a_two_detector_source_makes_h1_l1_with_the_snr_prior_over_them():
    """Demo2detOnline's source: V1 stays empty, the network SNR is over H1 and L1 (as
    simulate.py --detectors H1,L1 writes), and SelectDetectors keeps the two rows in the batch."""
    simulator = ml4gw_engine.OnlineSimulator(sim_priors.Priors(snr_range=(10, 12)), detectors=("H1", "L1"))
    g = torch.Generator().manual_seed(0)
    batch = simulator.sample(g, 8, torch.ones(8))
    assert torch.all(batch.data[:, 2] == 0) and torch.all(batch.signal[:, 2] == 0)
    assert torch.all(torch.isnan(batch.params["snr_V1"]))
    network = torch.sqrt(batch.params["snr_H1"] ** 2 + batch.params["snr_L1"] ** 2)
    torch.testing.assert_close(network, batch.params["snr_network"])
    assert torch.all((batch.params["snr_network"] >= 10) & (batch.params["snr_network"] <= 12))
    # the clean signal really has that SNR in the two detectors
    torch.testing.assert_close(torch.sqrt((simulator.optimal_snr(batch.signal)[:, :2] ** 2).sum(-1)),
                               batch.params["snr_network"], rtol=1e-6, atol=1e-6)
    select = transforms.SelectDetectors(("H1", "L1"))
    assert torch.equal(transforms.batched(select)(batch.data, g), batch.data[:, :2])
    cfg = runner.get_config("Demo2detOnline")
    source = online_source.make_source(cfg, torch.device("cpu"), seed=0, max_steps=1)
    x, y = next(iter(source))
    assert x.shape == (32, 2, 4096) and source.simulator.absent == [2]
