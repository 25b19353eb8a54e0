"""Signal banks: PyCBC signals stored compactly here, injected into fresh noise without PyCBC; the
bank module's own API (write, load, decode, byte-identical rewrites) and simulate.py keeping none of
the bank format's code."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

from g2net.simulation import banks as sim_banks
from g2net.simulation import layout
from g2net.simulation import noise as sim_noise
from g2net.simulation import priors as sim_priors
from g2net.simulation import pycbc_engine
import simulate
from utils import DETECTORS, N_SAMPLES, G2NetError, example_path  # noqa: E402

K, BANK_SEED = 6, 21
N_TRAIN, N_TEST, SEED = 14, 6, 5  # 7 + 3 positives: each bank row used once or twice
DATA_ARGS = ["--n-train", str(N_TRAIN), "--n-test", str(N_TEST), "--seed", str(SEED), "--no-progress"]


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bank") / "bank.npz"
    simulate.main(["--write-signal-bank", str(path), "--n-signals", str(K), "--seed", str(BANK_SEED),
                   "--workers", "1", "--no-progress"])
    return path


@pytest.fixture(scope="module")
def bank(bank_path) -> sim_banks.SignalBank:
    return sim_banks.load_signal_bank(bank_path)


@pytest.fixture(scope="module")
def bank_data(bank_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("from_bank") / "one_worker"
    simulate.main(["--out", str(out), "--signal-bank", str(bank_path), "--workers", "1", *DATA_ARGS])
    return out


def test_bank_is_compact_and_byte_identical_whatever_the_workers(bank_path, bank, tmp_path):
    other = tmp_path / "two_workers.npz"
    simulate.main(["--write-signal-bank", str(other), "--n-signals", str(K), "--seed", str(BANK_SEED),
                   "--workers", "2", "--no-progress"])
    assert other.read_bytes() == bank_path.read_bytes()
    assert not list(bank_path.parent.glob(".*.tmp"))
    # float16 codes (24,576 bytes) + a float32 scale + 16 parameters: ~24.7 KB a signal
    per_signal = 2 * len(DETECTORS) * N_SAMPLES + 4 + 8 * (len(sim_banks.BANK_COLUMNS) - 1)
    assert K * per_signal < bank_path.stat().st_size < K * per_signal + 12_000
    assert bank.decode().shape == (K, 3, N_SAMPLES) and bank.decode().dtype == np.float64
    assert list(bank.table.columns) == sim_banks.BANK_COLUMNS and len(bank.table) == K
    meta = bank.metadata
    assert (meta["format"], meta["format_version"], meta["seed"], meta["n_signals"]) == \
        (sim_banks.BANK_FORMAT, sim_banks.BANK_FORMAT_VERSION, BANK_SEED, K)
    assert (meta["approximant"], meta["sample_rate"], meta["n_samples"]) == ("IMRPhenomD", 2048, 4096)
    priors = sim_priors.Priors()
    assert bank.table["snr_network"].between(*priors.snr_range).all()
    assert bank.table["mass1"].between(*priors.mass_range).all()


def test_bank_signals_are_the_pycbc_signals_within_quantisation(bank):
    for row in range(K):
        stored = bank.signal(row)
        # drawn exactly as simulate draws a positive (same function, the bank's own stream) ...
        signal, params = pycbc_engine.draw_positive(sim_banks.bank_generator(BANK_SEED, row),
                                                sim_priors.Priors(), "IMRPhenomD", "test")
        assert params == pytest.approx(bank.table.iloc[row].to_dict())
        peak = np.abs(signal).max()
        assert np.abs(stored - signal).max() <= 2.5e-4 * peak  # float16: 2^-12 of the peak
        # ... and PyCBC rebuilds it from the stored parameters alone
        rebuilt = pycbc_engine.injection_signal(bank.table.iloc[row])
        assert np.abs(stored - rebuilt).max() <= 1e-3 * np.abs(rebuilt).max()


def test_stored_signals_have_the_table_snr(bank):
    for row in range(K):
        per_detector, network = pycbc_engine.optimal_snr(bank.signal(row))
        table = bank.table.iloc[row]
        assert network == pytest.approx(table["snr_network"], rel=0.01)
        np.testing.assert_allclose(per_detector, table[[f"snr_{d}" for d in DETECTORS]].astype(float),
                                   rtol=0.01, atol=0.01)


def test_bank_data_is_regenerated_noise_plus_the_bank_signal(bank_data, bank):
    injections = layout.load_injections(bank_data / "injections.csv")
    assert list(injections.columns) == [*layout.INJECTION_COLUMNS, sim_banks.BANK_ROW_COLUMN]
    # ids and targets are those of a normal run with this seed
    assert injections["id"].tolist() == layout.make_ids(SEED, N_TRAIN + N_TEST)
    assert injections["target"].tolist() == layout.make_targets(SEED, N_TRAIN, N_TEST, 0.5).tolist()
    train = pd.read_csv(bank_data / "training_labels.csv", dtype={"id": str})
    assert train["id"].tolist() == injections["id"][:N_TRAIN].tolist()
    for index, row in injections.iterrows():
        data = np.load(example_path(bank_data, row["split"], row["id"]))
        assert data.shape == (3, N_SAMPLES) and data.dtype == np.float64
        noise = sim_noise.colored_noise(pycbc_engine.example_generators(SEED, index)[1])
        if row["target"] == 0:
            assert np.array_equal(data, noise)
            assert row[sim_banks.BANK_COLUMNS + [sim_banks.BANK_ROW_COLUMN]].isna().all()
        else:
            assert np.array_equal(data, noise + bank.signal(int(row["bank_row"])))
    positives = injections[injections["target"] == 1]
    n = len(positives)
    uses = np.bincount(positives["bank_row"].astype(int), minlength=K)
    assert set(uses) <= {n // K, -(-n // K)} and uses.sum() == n
    # the table of each positive is its bank row: the truth of the injected signal
    expected = bank.table.iloc[positives["bank_row"].astype(int)].reset_index(drop=True)
    pd.testing.assert_frame_equal(positives[sim_banks.BANK_COLUMNS].reset_index(drop=True), expected,
                                  check_dtype=False, rtol=1e-15)


def test_bank_rows_use_every_row_before_repeating_one():
    rows = sim_banks.bank_rows(3, 23, 5)
    for cycle in range(4):
        assert sorted(rows[5 * cycle:5 * cycle + 5]) == list(range(5))
    assert sorted(np.bincount(rows)) == [4, 4, 5, 5, 5]  # floor(23 / 5) or ceil(23 / 5) each
    assert np.array_equal(rows, sim_banks.bank_rows(3, 23, 5))
    assert not np.array_equal(rows, sim_banks.bank_rows(4, 23, 5))


def test_bank_data_is_byte_identical_whatever_the_workers(bank_data, bank_path, tmp_path):
    other = tmp_path / "two_workers"
    simulate.main(["--out", str(other), "--signal-bank", str(bank_path), "--workers", "2", *DATA_ARGS])
    ours, theirs = all_files(bank_data), all_files(other)
    assert ours.keys() == theirs.keys() and len(ours) == N_TRAIN + N_TEST + 5  # + simulation.json
    assert all(ours[name] == theirs[name] for name in ours)


def test_bank_data_needs_neither_pycbc_nor_lal(bank_data, bank_path, tmp_path):
    out = tmp_path / "no_pycbc"
    script = textwrap.dedent(f"""
        import sys
        sys.modules["pycbc"] = None  # any import of pycbc or lal now raises ImportError
        sys.modules["lal"] = None
        import simulate
        simulate.main(["--out", {str(out)!r}, "--signal-bank", {str(bank_path)!r}, "--workers", "2",
                       *{DATA_ARGS!r}])
        loaded = [name for name, module in sys.modules.items()
                  if module is not None and name.split(".")[0] in ("pycbc", "lal", "lalsimulation")]
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ours, theirs = all_files(bank_data), all_files(out)
    assert ours.keys() == theirs.keys() and all(ours[name] == theirs[name] for name in ours)


def forged_bank(bank_path: Path, path: Path, rows: slice = slice(None), **metadata) -> Path:
    """A copy of the test bank with some rows and some metadata changed."""
    bank = sim_banks.load_signal_bank(bank_path)
    with np.load(bank_path) as archive:
        codes, scales = archive["signals"][rows], archive["scales"][rows]
    meta = {**bank.metadata, "n_signals": len(codes), **metadata}
    sim_banks.write_signal_bank(path, codes, scales, bank.table.iloc[rows], meta)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda bank, tmp: tmp / "missing.npz", "not found; make one with `python simulate.py --write-signal-bank"),
    (lambda bank, tmp: (tmp / "text.npz").write_text("id,target\n") and tmp / "text.npz",
     "is not a signal bank written by simulate.py --write-signal-bank"),
    (lambda bank, tmp: np.save(tmp / "array.npy", np.zeros(3)) or tmp / "array.npy", "is not a signal bank"),
    (lambda bank, tmp: forged_bank(bank, tmp / "v9.npz", format_version=9),
     "format version 9; this simulate.py reads version 1: rebuild it"),
    (lambda bank, tmp: forged_bank(bank, tmp / "rate.npz", sample_rate=4096),
     "at 4096 Hz; the competition layout needs ['H1', 'L1', 'V1'], 4096 samples at 2048 Hz"),
    (lambda bank, tmp: forged_bank(bank, tmp / "length.npz", n_samples=8192), "8192 samples at 2048 Hz"),
    (lambda bank, tmp: forged_bank(bank, tmp / "empty.npz", rows=slice(0, 0)),
     "holds no signals but positives were asked for"),
])
def test_bad_banks_are_one_clear_error(bank_path, bank_data, tmp_path, capsys, make, message):
    path = make(bank_path, tmp_path)
    out = tmp_path / "out"
    simulate.main(["--out", str(out), "--n-train", "2", "--n-test", "0", "--seed", "1",
                   "--workers", "1", "--no-progress"])
    before = all_files(out)
    with pytest.raises(SystemExit) as exit_info:
        simulate.main(["--out", str(out), "--signal-bank", str(path), "--workers", "1", *DATA_ARGS])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1
    assert all_files(out) == before  # the earlier simulation is left as it was


def test_an_empty_bank_still_makes_negatives(bank_path, tmp_path):
    empty = forged_bank(bank_path, tmp_path / "empty.npz", rows=slice(0, 0))
    simulate.main(["--out", str(tmp_path / "out"), "--signal-bank", str(empty), "--workers", "1",
                   "--positive-fraction", "0", *DATA_ARGS])
    assert (layout.load_injections(tmp_path / "out" / "injections.csv")["target"] == 0).all()


@pytest.mark.parametrize("argv, message", [
    (["--write-signal-bank", "{tmp}/b.npz", "--n-signals", "0"], "argument --n-signals: '0': must be >= 1"),
    (["--write-signal-bank", "{tmp}/b.npz"], "--write-signal-bank needs --n-signals K"),
    (["--write-signal-bank", "{tmp}", "--n-signals", "2"], "is a folder"),
    (["--write-signal-bank", "{tmp}/b.npz", "--n-signals", "2", "--out", "{tmp}/o"],
     "--out: --write-signal-bank writes only the bank"),
    (["--write-signal-bank", "{tmp}/b.npz", "--n-signals", "2", "--positive-fraction", "0.3"],
     "--positive-fraction: a bank holds only signals"),
    (["--write-signal-bank", "{tmp}/b.npz", "--n-signals", "2", "--mass-range", "5", "1"], "--mass-range"),
    (["--write-signal-bank", "{tmp}/b.npz", "--n-signals", "2", "--approximant", "Nope"], "--approximant"),
    (["--out", "{tmp}/o", "--n-train", "2", "--n-test", "0", "--n-signals", "3"],
     "--n-signals: goes with --write-signal-bank"),
    (["--n-train", "2", "--n-test", "0"], "--out: required to write a data set"),
    (["--out", "{tmp}/o", "--n-train", "2", "--n-test", "0", "--signal-bank", "{bank}",
      "--mass-range", "10", "50", "--snr-range", "4", "8"],
     "--mass-range, --snr-range: the signal bank fixes the priors and the approximant"),
    (["--out", "{tmp}/o", "--n-train", "2", "--n-test", "0", "--signal-bank", "{bank}",
      "--approximant", "IMRPhenomD"], "--approximant: the signal bank fixes"),
])
def test_bad_bank_options_are_one_clear_error(bank_path, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, bank=bank_path) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        simulate.main([*argv, "--seed", "1", "--workers", "1", "--no-progress"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # argparse's own refusals follow its usage
    assert "error: " in error and message in error
    assert not (tmp_path / "b.npz").exists() and not (tmp_path / "o").exists()


def test_the_python_api_refuses_priors_with_a_bank(bank, tmp_path):
    with pytest.raises(G2NetError, match="fixes the priors"):
        pycbc_engine.simulate(tmp_path / "o", 2, 0, 1, sim_priors.Priors(snr_range=(4.0, 8.0)),
                          signal_bank=bank, progress=False)
    summary = pycbc_engine.simulate(tmp_path / "o", 2, 0, 1, sim_priors.Priors(positive_fraction=1.0),
                                signal_bank=bank, progress=False)
    assert summary["positives"] == 2 and summary["bank_signals"] == K
    assert json.loads(json.dumps(bank.metadata))["priors"]["snr_range"] == [5.0, 20.0]


def test_bank_records_the_reference_frequency_and_older_banks_load_as_pycbcs_default(bank_path, tmp_path):
    """Each signal's f_ref is stored; a bank written before that column existed was made with
    PyCBC's default reference frequency, and loads saying so (its rows then remake their signals)."""
    bank = sim_banks.load_signal_bank(bank_path)
    assert (bank.table["f_ref"] == 20.0).all() and bank.metadata["f_ref"] == 20.0
    with np.load(bank_path) as archive:
        arrays = {name: archive[name] for name in archive.files if name != "param_f_ref"}
    sim_banks.write_npz(tmp_path / "old.npz", arrays)
    old = sim_banks.load_signal_bank(tmp_path / "old.npz")
    assert (old.table["f_ref"] == 0.0).all()
    assert old.table.drop(columns="f_ref").equals(bank.table.drop(columns="f_ref"))
    assert pycbc_engine.reference_frequency({"mass1": 30.0}) == 0.0
    assert pycbc_engine.reference_frequency(bank.table.iloc[0].to_dict()) == 20.0


# -- the bank module's API, without PyCBC --------------------------------------------------------

def test_signal_bank_round_trip_and_row_decoding_without_pycbc(tmp_path):
    rng = np.random.default_rng(3)
    signals = rng.standard_normal((3, 3, 4096)) * 1e-21
    encoded = [sim_banks.quantise_signal(s) for s in signals]
    codes = np.stack([c for c, _ in encoded])
    scales = np.array([s for _, s in encoded], dtype=np.float32)
    table = pd.DataFrame({c: [1.0, 2.0, 3.0] for c in sim_banks.BANK_COLUMNS})
    table["approximant"], table["gps_start"] = "IMRPhenomD", [1, 2, 3]
    metadata = {"format": sim_banks.BANK_FORMAT, "format_version": sim_banks.BANK_FORMAT_VERSION,
                "sample_rate": 2048, "n_samples": 4096, "detectors": ["H1", "L1", "V1"], "n_signals": 3}
    path = tmp_path / "bank.npz"
    sim_banks.write_signal_bank(path, codes, scales, table, metadata)
    first = path.read_bytes()
    sim_banks.write_signal_bank(path, codes, scales, table, metadata)
    assert path.read_bytes() == first  # fixed zip timestamps: same bank, same bytes
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    bank = sim_banks.load_signal_bank(path)
    assert len(bank) == 3 and bank.codes.dtype == np.float16
    decoded = bank.decode()
    np.testing.assert_array_equal(decoded, sim_banks.decode_signals(codes, scales))
    for row in range(3):
        np.testing.assert_array_equal(bank.signal(row), decoded[row])  # bit for bit
        assert np.max(np.abs(bank.signal(row) - signals[row])) <= 2.5e-4 * np.max(np.abs(signals[row]))
    np.testing.assert_array_equal(bank.decode([2, 0]), decoded[[2, 0]])
    assert sim_banks.load_signal_bank is sim_banks.load_signal_bank
    assert layout.INJECTION_COLUMNS[3:] == sim_banks.BANK_COLUMNS


def test_simulate_keeps_no_bank_format_code():
    source = (REPO / "simulate.py").read_text()
    assert "zipfile" not in source and "def load_signal_bank" not in source and "class SignalBank" not in source
