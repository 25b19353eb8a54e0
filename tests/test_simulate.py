"""simulate.py: the competition layout, reproducible bytes, physics checked against PyCBC, workers
that keep the task order, and its run record: a finished simulation is replaced only with
--overwrite (which removes prep_data's outputs), an interrupted one is named and finished by the
same arguments."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

from g2net.simulation import layout
from g2net.simulation import noise as sim_noise
from g2net.simulation import physics as sim_physics
from g2net.simulation import priors as sim_priors
from g2net.simulation import pycbc_engine
import prep_data
import simulate
from conftest import quiet
from datasets import load_cache
import utils
from utils import DETECTORS, N_SAMPLES, SAMPLE_RATE, example_path  # noqa: E402

N_TRAIN, N_TEST, SEED = 24, 8, 11
ARGS = ["--n-train", str(N_TRAIN), "--n-test", str(N_TEST), "--seed", str(SEED), "--no-progress"]


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("simulate") / "one_worker"
    simulate.main(["--out", str(out), "--workers", "1", *ARGS])
    return out


@pytest.fixture(scope="module")
def injections(sim_dir) -> pd.DataFrame:
    return layout.load_injections(sim_dir / "injections.csv")


@pytest.fixture(scope="module")
def positives(injections) -> pd.DataFrame:
    return injections[injections["target"] == 1]


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_ids_dtypes_and_tables(sim_dir, injections):
    train = pd.read_csv(sim_dir / "training_labels.csv", dtype={"id": str})
    test = pd.read_csv(sim_dir / "test_labels.csv", dtype={"id": str})
    submission = pd.read_csv(sim_dir / "sample_submission.csv", dtype={"id": str})
    assert list(train.columns) == ["id", "target"] and len(train) == N_TRAIN
    assert list(test.columns) == ["id", "target"] and len(test) == N_TEST
    assert list(submission.columns) == ["id", "target"] and (submission["target"] == 0.5).all()
    assert submission["id"].tolist() == test["id"].tolist()
    assert list(injections.columns) == layout.INJECTION_COLUMNS
    assert injections["id"].tolist() == train["id"].tolist() + test["id"].tolist()
    ids = injections["id"]
    assert ids.is_unique and all(re.fullmatch(r"[0-9a-f]{10}", i) for i in ids)
    # about half positives: exactly round(n / 2) per split with the default fraction
    assert train["target"].sum() == N_TRAIN // 2 and test["target"].sum() == N_TEST // 2
    for split, frame in (("train", train), ("test", test)):
        for example_id in frame["id"]:
            path = sim_dir / split / example_id[0] / example_id[1] / example_id[2] / f"{example_id}.npy"
            assert path == example_path(sim_dir, split, example_id)
            data = np.load(path)
            assert data.shape == (3, N_SAMPLES) and data.dtype == np.float64
            assert np.all(np.isfinite(data)) and 1e-22 < data.std() < 1e-19  # raw strain
    assert not list(sim_dir.rglob(".*.tmp"))
    physics = layout.INJECTION_COLUMNS[3:]
    negatives = injections[injections["target"] == 0]
    assert negatives[physics].isna().all().all()
    assert injections.loc[injections["target"] == 1, physics].notna().all().all()


def test_parameters_respect_the_priors(positives):
    priors = sim_priors.Priors()
    assert (positives["approximant"] == sim_physics.DEFAULT_APPROXIMANT).all()
    assert (positives["mass1"] >= positives["mass2"]).all()
    assert positives[["mass1", "mass2"]].stack().between(*priors.mass_range).all()
    assert positives[["spin1z", "spin2z"]].stack().between(*priors.spin_range).all()
    assert positives["tc"].between(*priors.tc_range).all()
    assert positives["snr_network"].between(*priors.snr_range).all()
    assert (positives["gps_start"] % 1 == 0).all()
    np.testing.assert_allclose(np.sqrt((positives[[f"snr_{d}" for d in DETECTORS]] ** 2).sum(axis=1)),
                               positives["snr_network"], rtol=1e-9)


def test_same_seed_same_bytes_whatever_the_workers(sim_dir, tmp_path):
    other = tmp_path / "two_workers"
    simulate.main(["--out", str(other), "--workers", "2", *ARGS])
    ours, theirs = all_files(sim_dir), all_files(other)
    assert ours.keys() == theirs.keys() and len(ours) == N_TRAIN + N_TEST + 5  # + simulation.json
    assert all(ours[name] == theirs[name] for name in ours)
    reseeded = tmp_path / "other_seed"
    simulate.main(["--out", str(reseeded), "--workers", "1", "--n-train", "4", "--n-test", "0",
                   "--seed", str(SEED + 1), "--no-progress"])
    new_ids = set(pd.read_csv(reseeded / "training_labels.csv", dtype={"id": str})["id"])
    assert not new_ids & set(pd.read_csv(sim_dir / "training_labels.csv", dtype={"id": str})["id"])


def pycbc_recompute(row: pd.Series) -> np.ndarray:
    """Independent rebuild of one injection: PyCBC waveform, projection, placement in the window."""
    from pycbc.detector import Detector
    from pycbc.waveform import get_td_waveform

    hp, hc = get_td_waveform(approximant=row["approximant"], mass1=row["mass1"], mass2=row["mass2"],
                             spin1z=row["spin1z"], spin2z=row["spin2z"], distance=row["distance"],
                             inclination=row["inclination"], coa_phase=row["coa_phase"],
                             delta_t=1.0 / SAMPLE_RATE, f_lower=20.0, f_ref=row["f_ref"])
    merger = float(row["gps_start"]) + float(row["tc"])
    hp.start_time += merger
    hc.start_time += merger
    signal = np.zeros((3, N_SAMPLES))
    for k, name in enumerate(DETECTORS):
        strain = Detector(name).project_wave(hp, hc, row["ra"], row["dec"], row["polarization"])
        first = int(round((float(strain.start_time) - float(row["gps_start"])) * SAMPLE_RATE))
        values = strain.numpy()
        lo, hi = max(0, first), min(N_SAMPLES, first + len(values))
        signal[k, lo:hi] = values[lo - first:hi - first]
    return signal


@pytest.fixture(scope="module")
def recomputed(positives) -> dict[str, np.ndarray]:
    return {row["id"]: pycbc_recompute(row) for _, row in positives.iterrows()}


def test_snr_recomputed_with_pycbc_matches_the_table(positives, recomputed):
    from pycbc.filter import sigma
    from pycbc.types import TimeSeries

    psds = [sim_noise.detector_psd(name, SAMPLE_RATE / N_SAMPLES, N_SAMPLES // 2 + 1,
                                     low_frequency_cutoff=20.0) for name in DETECTORS]
    for _, row in positives.iterrows():
        per_detector = [sigma(TimeSeries(strain, delta_t=1.0 / SAMPLE_RATE), psd=psd,
                              low_frequency_cutoff=20.0, high_frequency_cutoff=1000.0)
                        for strain, psd in zip(recomputed[row["id"]], psds)]
        network = math.sqrt(sum(s ** 2 for s in per_detector))
        assert network == pytest.approx(row["snr_network"], rel=0.05)
        np.testing.assert_allclose(per_detector, row[[f"snr_{d}" for d in DETECTORS]].astype(float),
                                   rtol=0.05, atol=0.05)


def test_stored_data_is_noise_plus_the_row_signal(sim_dir, injections, recomputed):
    """From the injections.csv columns alone (f_ref included) the injected signal comes back."""
    assert (injections.loc[injections["target"] == 1, "f_ref"] == 20.0).all()
    for index, row in injections.iterrows():
        data = np.load(example_path(sim_dir, row["split"], row["id"]))
        _, noise_rng = pycbc_engine.example_generators(SEED, index)
        residual = data - sim_noise.colored_noise(noise_rng)
        if row["target"] == 0:
            assert np.all(residual == 0)
            continue
        signal = pycbc_engine.injection_signal(row)
        np.testing.assert_allclose(residual, signal, rtol=0, atol=1e-9 * np.abs(signal).max())
        # PyCBC on the uncropped waveform agrees to ~1e-3: LAL's projection evaluates the moving
        # light-travel delay on a grid anchored at the series start (simulate.py crops first),
        # a microsecond-level difference
        full = recomputed[row["id"]]
        assert np.linalg.norm(signal - full) < 1e-2 * np.linalg.norm(full)
        assert pycbc_engine.optimal_snr(signal)[1] == pytest.approx(row["snr_network"], rel=1e-6)


def arrival_time(strain: np.ndarray, upsample: int = 16) -> float:
    """Seconds from the window start to the peak of the amplitude envelope (sub-sample)."""
    from scipy.signal import hilbert, resample

    envelope = np.abs(hilbert(resample(strain, len(strain) * upsample)))
    return float(np.argmax(envelope)) / (SAMPLE_RATE * upsample)


def test_arrival_time_differences_match_the_light_travel_time(positives, recomputed):
    from pycbc.detector import Detector

    hanford = Detector("H1")
    for _, row in positives.iterrows():
        times = [arrival_time(strain) for strain in recomputed[row["id"]]]
        merger = float(row["gps_start"]) + float(row["tc"])
        for k, other in ((1, "L1"), (2, "V1")):
            expected = hanford.time_delay_from_detector(Detector(other), row["ra"], row["dec"], merger)
            assert abs((times[0] - times[k]) - expected) * SAMPLE_RATE < 1.0, (row["id"], other)
        # and the geocentric merger time sits where tc says (the envelope peaks near merger)
        geocentre = times[0] - hanford.time_delay_from_earth_center(row["ra"], row["dec"], merger)
        assert abs(geocentre - row["tc"]) < 0.01


def test_other_approximant_and_snr_distribution(tmp_path):
    out = tmp_path / "phenomt"
    simulate.main(["--out", str(out), "--n-train", "4", "--n-test", "0", "--seed", "3", "--workers", "1",
                   "--approximant", "IMRPhenomT", "--snr-range", "30", "40", "--snr-distribution",
                   "powerlaw", "--positive-fraction", "1", "--no-progress"])
    table = layout.load_injections(out / "injections.csv")
    assert (table["target"] == 1).all() and (table["approximant"] == "IMRPhenomT").all()
    assert table["snr_network"].between(30, 40).all()
    row = table.iloc[0]
    assert pycbc_engine.optimal_snr(pycbc_engine.injection_signal(row))[1] == pytest.approx(row["snr_network"], rel=1e-6)
    # no test examples: no test side at all, and prep_data.py prepares the training side alone
    import prep_data

    assert not (out / "sample_submission.csv").exists() and not (out / "test_labels.csv").exists()
    prep_data.main(["--input", str(out), "--no-progress"])
    assert len(pd.read_csv(out / "train.csv")) == 4 and not (out / "test.csv").exists()
    import datasets  # training, which needs a test table, says what is missing
    from utils import G2NetError

    with pytest.raises(G2NetError, match=r"has no test examples \(simulate.py --n-test 0\)"):
        datasets.read_prepared(out / "test.csv", "test")


def test_snr_distributions_have_the_right_shape():
    rng = np.random.default_rng(0)
    draws = {name: np.array([sim_priors.draw_snr(rng, sim_priors.Priors(snr_range=(5.0, 20.0),
                                                                    snr_distribution=name))
                             for _ in range(4000)]) for name in sim_priors.SNR_DISTRIBUTIONS}
    assert np.median(draws["uniform"]) == pytest.approx(12.5, abs=0.4)
    assert np.median(draws["loguniform"]) == pytest.approx(10.0, abs=0.4)
    # p ~ snr^-4: median where the cumulative (5^-3 - s^-3) / (5^-3 - 20^-3) is one half
    assert np.median(draws["powerlaw"]) == pytest.approx((0.5 * (5.0 ** -3 + 20.0 ** -3)) ** (-1 / 3), abs=0.2)
    for values in draws.values():
        assert values.min() >= 5.0 and values.max() <= 20.0


@pytest.mark.parametrize("extra, message", [
    (["--n-train", "-1"], "--n-train"),
    (["--n-train", "0", "--n-test", "0"], "not both 0"),
    (["--seed", "-3"], "--seed"),
    (["--workers", "0"], "--workers"),
    (["--mass-range", "40", "10"], "--mass-range"),
    (["--mass-range", "0", "10"], "--mass-range"),
    (["--spin-range", "-0.5", "1.2"], "--spin-range"),
    (["--dec-range", "-2", "0"], "--dec-range"),
    (["--inclination-range", "0", "4"], "--inclination-range"),
    (["--tc-range", "1.5", "2.5"], "--tc-range"),
    (["--snr-range", "0", "10"], "--snr-range"),
    (["--snr-distribution", "gaussian"], "--snr-distribution"),
    (["--positive-fraction", "1.5"], "--positive-fraction"),
    (["--approximant", "NoSuchWaveform"], "--approximant"),
])
def test_bad_arguments_are_one_clear_error(tmp_path, capsys, extra, message):
    argv = ["--out", str(tmp_path / "out"), "--n-train", "2", "--n-test", "2", "--seed", "1",
            "--workers", "1", "--no-progress", *extra]
    with pytest.raises(SystemExit) as exit_info:
        simulate.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # argparse's usage line comes first
    assert "error: " in error and message in error
    assert not (tmp_path / "out" / "training_labels.csv").exists()


@pytest.mark.parametrize("workers", [1, 3])
def test_map_in_order_keeps_task_order_for_any_workers(workers):
    tasks = list(range(50, 0, -1))
    assert pycbc_engine._map_in_order(str, tasks, workers, "t", "x", progress=False) == [str(t) for t in tasks]


# -- the run record: no silent replacement, interrupted runs named and finished ------------------

def test_replaces_a_simulation_but_not_other_data(tmp_path, capsys):
    out = tmp_path / "again"
    small = ["--out", str(out), "--n-test", "0", "--no-progress", "--workers", "1"]
    simulate.main([*small, "--n-train", "6", "--seed", "1"])
    with pytest.raises(SystemExit):  # another simulation's arguments: only with --overwrite
        simulate.main([*small, "--n-train", "2", "--seed", "2"])
    assert "--n-train 6 --n-test 0 --seed 1" in capsys.readouterr().err
    simulate.main([*small, "--n-train", "2", "--seed", "2", "--overwrite"])
    ids = pd.read_csv(out / "training_labels.csv", dtype={"id": str})["id"]
    assert sorted(p.stem for p in (out / "train").rglob("*.npy")) == sorted(ids)
    (out / "injections.csv").unlink()  # now it looks like someone else's competition folder
    (out / layout.RUN_FILE).unlink()
    with pytest.raises(SystemExit):
        simulate.main([*small, "--n-train", "2", "--seed", "3"])
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.stem for p in (out / "train").rglob("*.npy")) == sorted(ids)
    simulate.main([*small, "--n-train", "2", "--seed", "3", "--overwrite"])
    assert (out / "injections.csv").is_file()


def test_a_simulation_made_before_f_ref_was_recorded_is_not_finished_with_new_signals(tmp_path, capsys):
    """Its signals follow PyCBC's default reference frequency: the same arguments must not add
    examples made at f_ref 20 Hz to it; --overwrite remakes it."""
    import json

    out = tmp_path / "sim"
    args = ["--out", str(out), "--n-train", "2", "--n-test", "0", "--seed", "3", "--workers", "1",
            "--no-progress"]
    simulate.main(args)
    record = json.loads((out / layout.RUN_FILE).read_text())
    assert record["f_ref"] == 20.0
    del record["f_ref"]
    (out / layout.RUN_FILE).write_text(json.dumps(record))
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(SystemExit):
        simulate.main(args)
    error = capsys.readouterr().err
    assert "made before simulate.py used f_ref 20 Hz" in error and "--overwrite" in error
    assert sorted(p.name for p in out.rglob("*")) == before
    simulate.main([*args, "--overwrite"])
    assert json.loads((out / layout.RUN_FILE).read_text())["f_ref"] == 20.0


SMALL = ["--n-train", "4", "--n-test", "2", "--workers", "1", "--no-progress"]


def test_a_finished_simulation_is_replaced_only_with_overwrite_which_removes_prepared_outputs(tmp_path, capsys):
    out = tmp_path / "sim"
    simulate.main(["--out", str(out), "--seed", "7", *SMALL])
    prep_data.prepare(out, **quiet(cache=True, psd=True)[1])
    before = all_files(out)
    with pytest.raises(SystemExit):
        simulate.main(["--out", str(out), "--seed", "8", *SMALL])
    error = capsys.readouterr().err
    assert "finished simulation (--n-train 4 --n-test 2 --seed 7)" in error and "--overwrite" in error
    assert all_files(out) == before
    simulate.main(["--out", str(out), "--seed", "7", *SMALL])  # same arguments: same bytes, caches valid
    assert all_files(out) == before
    load_cache(out / "train_cache.npy", 4)
    simulate.main(["--out", str(out), "--seed", "8", "--overwrite", *SMALL])
    for name in prep_data.prepared_files():
        assert not (out / name).exists(), name
    assert json.loads((out / layout.RUN_FILE).read_text())["seed"] == 8


def test_an_interrupted_simulation_is_named_and_the_same_arguments_finish_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sim"
    save = layout.save_example
    calls = []

    def dying_save(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the run is killed after two examples
        save(path, data)

    monkeypatch.setattr(layout, "save_example", dying_save)
    with pytest.raises(KeyboardInterrupt):
        simulate.main(["--out", str(out), "--seed", "7", *SMALL])
    monkeypatch.setattr(layout, "save_example", save)
    assert not json.loads((out / layout.RUN_FILE).read_text())["complete"]
    with pytest.raises(SystemExit):
        simulate.main(["--out", str(out), "--seed", "8", *SMALL])
    error = capsys.readouterr().err
    assert "was interrupted (--n-train 4 --n-test 2 --seed 7); rerun with those arguments to finish " \
           "it, or pass --overwrite" in error and "did not write" not in error
    simulate.main(["--out", str(out), "--seed", "7", *SMALL])
    simulate.main(["--out", str(tmp_path / "clean"), "--seed", "7", *SMALL])
    assert all_files(out) == all_files(tmp_path / "clean")
    assert json.loads((out / layout.RUN_FILE).read_text())["complete"]


# -- requests the machine cannot hold are refused before anything is written ---------------------

class Started(Exception):
    """Raised by a stand-in engine: the request got past every check."""


def engine_started(calls: list):
    def engine(out, n_train, n_test, seed, priors, approximant, workers, *args, **kwargs):
        calls.append({"out": out, "workers": workers})
        raise Started

    return engine


def simulate_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as caught:
        simulate.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_a_request_larger_than_the_disk_or_memory_is_one_line_and_writes_nothing(tmp_path, capsys,
                                                                              monkeypatch):
    calls = []
    monkeypatch.setattr(simulate, "simulate", engine_started(calls))
    out = tmp_path / "huge"
    line = simulate_error(["--out", str(out), "--n-train", "1000000000", "--n-test", "0", "--seed", "1",
                           "--workers", "1", "--no-progress"], capsys)
    assert re.fullmatch(rf"error: --n-train 1000000000 --n-test 0 with 1 worker\(s\) needs about "
                        rf"98432\.0 GB of disk but {re.escape(str(out))} has [0-9.]+ [GM]B free; ask for "
                        r"fewer examples \(several runs into separate folders\) or free some room", line)
    monkeypatch.setattr(utils, "available_memory", lambda: 100_000_000)
    line = simulate_error(["--out", str(out), "--n-train", "20000", "--n-test", "0", "--seed", "1",
                           "--workers", "1", "--no-progress"], capsys)
    assert line == ("error: --n-train 20000 --n-test 0 with 1 worker(s) needs about 0.2 GB of memory but "
                    "this machine has 0.1 GB available; ask for fewer examples (several runs into "
                    "separate folders) or free some room")
    line = simulate_error(["--write-signal-bank", str(tmp_path / "bank.npz"), "--n-signals", "40000",
                           "--seed", "1", "--workers", "1"], capsys)
    assert line == ("error: --n-signals 40000 with 1 worker(s) needs about 2.3 GB of memory but this "
                    "machine has 0.1 GB available; ask for fewer signals (several smaller banks) or free "
                    "some room")
    assert calls == [] and list(tmp_path.iterdir()) == []


def test_workers_are_capped_at_the_machines_cpus_and_an_empty_out_is_refused(tmp_path, capsys,
                                                                            monkeypatch):
    calls = []
    monkeypatch.setattr(simulate, "simulate", engine_started(calls))
    with pytest.raises(Started):
        simulate.main(["--out", str(tmp_path / "sim"), "--n-train", "4", "--n-test", "2", "--seed", "1",
                       "--workers", "1000000", "--no-progress"])
    assert calls[0]["workers"] == utils.cpu_count()
    assert (f"--workers 1000000: this machine has {utils.cpu_count()} CPUs; using {utils.cpu_count()} "
            "processes") in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert simulate_error(["--out", "", "--n-train", "4", "--n-test", "2", "--seed", "1"], capsys).endswith(
        "error: argument --out: an empty path; give a file or folder name (. for the "
        "current folder)")
    assert len(calls) == 1 and list(tmp_path.iterdir()) == []
