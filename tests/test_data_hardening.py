"""Issue 11, data side: caches tied to their csv, simulate.py refusing to mix runs and finishing an
interrupted one, strict .npy reading, predict.py inputs checked as prep_data checks them, one
predictions reader, the signal-bank module's API, and library calls equal to the code they replace.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import predict
from g2net.simulation import banks as sim_banks
from g2net.simulation import layout
from g2net.simulation import pycbc_engine
import g2net.stacking
from g2net.training import pseudo
import prep_data
import simulate
from conftest import REPO
from datasets import load_cache
from test_prep_data import make_folder
from utils import G2NetError, atomic_write, example_path, load_npy, load_predictions


def quiet(**kwargs):
    lines: list[str] = []
    return lines, dict(progress=False, printer=lines.append, **kwargs)


def train_table(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "train.csv", dtype={"id": str})


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- 1. caches tied to the exact table they were built from -----------------------------------

def test_reordered_labels_drop_the_stale_cache_and_a_kept_copy_is_refused(tmp_path):
    root = tmp_path / "input"
    truth = make_folder(root, n_train=12, n_test=5)
    lines, options = quiet(cache=True)
    prep_data.prepare(root, **options)
    cache_file, stamp_file = root / "train_cache.npy", root / "train_cache.json"
    stamp = json.loads(stamp_file.read_text())
    assert stamp["table"] == "train.csv" and stamp["shape"] == [12, 3, 4096] and stamp["dtype"] == "float32"
    cache = load_cache(cache_file, train_table(root))
    np.testing.assert_array_equal(cache, truth["train"][2].astype(np.float32))
    kept = tmp_path / "kept"
    kept.mkdir()
    shutil.copy(cache_file, kept / cache_file.name)
    shutil.copy(stamp_file, kept / stamp_file.name)

    labels = pd.read_csv(root / "training_labels.csv", dtype={"id": str})
    labels.iloc[::-1].to_csv(root / "training_labels.csv", index=False)  # same rows, new order
    lines, options = quiet()
    prep_data.prepare(root, **options)
    assert not cache_file.exists() and not stamp_file.exists()
    assert any("train_cache.npy: it no longer matches train.csv" in line for line in lines)
    load_cache(root / "test_cache.npy", len(pd.read_csv(root / "test.csv")))  # test side unchanged: kept

    shutil.copy(kept / cache_file.name, cache_file)  # the old cache back beside the new csv
    shutil.copy(kept / stamp_file.name, stamp_file)
    for table in (train_table(root), 12):
        with pytest.raises(G2NetError, match=r"earlier train\.csv.*rerun `python prep_data\.py --cache`") as info:
            load_cache(cache_file, table)
        one_line_error(info)

    prep_data.prepare(root, **quiet(cache=True)[1])
    np.testing.assert_array_equal(load_cache(cache_file, train_table(root)),
                                  truth["train"][2][::-1].astype(np.float32))


def test_load_cache_refuses_a_cache_without_sidecar_or_of_another_table(tmp_path):
    root = tmp_path / "input"
    make_folder(root, n_train=6, n_test=3)
    prep_data.prepare(root, **quiet(cache=True)[1])
    cache_file = root / "train_cache.npy"
    with pytest.raises(G2NetError, match="not those of the table given"):
        load_cache(cache_file, train_table(root).iloc[::-1])
    with pytest.raises(G2NetError, match="its csv lists 5 examples"):
        load_cache(cache_file, 5)
    (root / "train_cache.json").unlink()
    with pytest.raises(G2NetError, match="no readable train_cache.json.*prep_data.py --cache"):
        load_cache(cache_file, 6)
    prep_data.write_cache_stamp(cache_file, root / "train.csv")  # a cache made by hand, tied by hand
    assert load_cache(cache_file, 6).shape == (6, 3, 4096)


# --- 1/2. simulate.py: no silent replacement, interrupted runs named and finished --------------

SMALL = ["--n-train", "4", "--n-test", "2", "--workers", "1", "--no-progress"]


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_finished_simulation_is_replaced_only_with_overwrite_which_removes_prepared_outputs(tmp_path, capsys):
    out = tmp_path / "sim"
    simulate.main(["--out", str(out), "--seed", "7", *SMALL])
    prep_data.prepare(out, **quiet(cache=True, psd=True)[1])
    before = files_of(out)
    with pytest.raises(SystemExit):
        simulate.main(["--out", str(out), "--seed", "8", *SMALL])
    error = capsys.readouterr().err
    assert "finished simulation (--n-train 4 --n-test 2 --seed 7)" in error and "--overwrite" in error
    assert files_of(out) == before
    simulate.main(["--out", str(out), "--seed", "7", *SMALL])  # same arguments: same bytes, caches valid
    assert files_of(out) == before
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
    assert files_of(out) == files_of(tmp_path / "clean")
    assert json.loads((out / layout.RUN_FILE).read_text())["complete"]


# --- 3. strict .npy reading ------------------------------------------------------------------

def test_a_valid_npy_followed_by_trailing_bytes_is_refused(tmp_path):
    path = tmp_path / "x.npy"
    array = np.arange(3 * 4096, dtype=np.float64).reshape(3, 4096)
    np.save(path, array)
    np.testing.assert_array_equal(load_npy(path), array)
    with open(path, "ab") as handle:
        handle.write(b"garbage")
    with pytest.raises(ValueError, match="7 bytes of trailing data"):
        load_npy(path)
    assert np.load(path).shape == (3, 4096)  # what np.load alone would have accepted
    _, problem = prep_data.load_example(path)
    assert problem[0] == "unreadable" and "trailing" in problem[1]


# --- 4. predict.py checks its inputs as prep_data.py does -------------------------------------

def predict_folder(tmp_path: Path, ids: list[str], arrays: dict[str, object] | None = None,
                   csv_text: str | None = None) -> Path:
    root = tmp_path / "new"
    (root / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for example_id in ids:
        if "/" in example_id or "." in example_id:
            continue
        path = example_path(root, "test", example_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        make = (arrays or {}).get(example_id)
        if make is None:
            np.save(path, rng.standard_normal((3, 4096)))
        else:
            make(path)
    (root / "sample_submission.csv").write_text(
        csv_text if csv_text is not None else "id,target\n" + "".join(f"{i},0.5\n" for i in ids))
    return root


def truncated(path: Path) -> None:
    np.save(path, np.zeros((3, 4096)))
    path.write_bytes(path.read_bytes()[:-100])


@pytest.mark.parametrize("ids, arrays, csv_text, message", [
    (["../../..../secret"], None, None, r"ids are not at least 3 letters/digits"),
    (["aaa111", "bbb222", "aaa111"], None, None, r"1 ids appear more than once: aaa111"),
    (["aaa111", "bbb222"], {"bbb222": lambda p: np.save(p, np.ones((3, 4096), dtype=np.int64))}, None,
     r"1 not of dtype float64 \(first: dtype int64\): bbb222"),
    (["aaa111"], {"aaa111": lambda p: np.save(p, np.ones((3, 4096)) * (1 + 1j))}, None,
     r"not of dtype float64 \(first: dtype complex128\)"),
    (["aaa111"], {"aaa111": lambda p: np.savez(open(p, "wb"), x=np.zeros((3, 4096)))}, None,
     r"not readable as a \.npy array \(first: an \.npz archive"),
    (["aaa111"], {"aaa111": lambda p: np.save(p, np.array([object()] * 3), allow_pickle=True)}, None,
     r"not readable.*Python objects"),
    (["aaa111"], {"aaa111": truncated}, None, r"not readable as a \.npy array \(first: EOFError"),
    (["aaa111"], None, "", r"is not a readable csv"),
    (["aaa111"], None, "id,target\n", r"lists no examples"),
])
def test_predict_refuses_bad_inputs_in_one_line(tmp_path, ids, arrays, csv_text, message):
    root = predict_folder(tmp_path, ids, arrays, csv_text)
    with pytest.raises(G2NetError, match=message) as info:
        predict.main(["--config", "Debug", "--input", str(root)])
    one_line_error(info)


def test_secret_outside_the_input_folder_is_never_read(tmp_path, monkeypatch):
    secret = tmp_path / "secret.npy"
    np.save(secret, np.zeros((3, 4096)))
    root = predict_folder(tmp_path, ["../../../secret"])
    read = []
    monkeypatch.setattr(prep_data, "load_example", lambda path: read.append(path))
    with pytest.raises(G2NetError, match="ids are not"):
        predict.main(["--config", "Debug", "--input", str(root)])
    assert read == []


def test_predict_files_are_checked_too(tmp_path):
    good, bad = tmp_path / "a" / "x1.npy", tmp_path / "b" / "x1.npy"
    for path in (good, bad):
        path.parent.mkdir()
    np.save(good, np.zeros((3, 4096)))
    np.save(bad, np.zeros((3, 4096), dtype=np.int64))
    with pytest.raises(G2NetError, match="names 1 ids more than once"):
        predict.main(["--config", "Debug", "--files", str(good), str(bad)])
    with pytest.raises(G2NetError, match=r"1 files not of dtype float64: .*x1\.npy \(dtype int64\)"):
        predict.main(["--config", "Debug", "--files", str(bad)])


def test_predict_and_prep_data_share_one_checker():
    assert predict.check_split is prep_data.check_split
    source = (REPO / "predict.py").read_text()
    assert "read_csv" not in source and "np.load(" not in source


# --- 5. one reader of predictions files -------------------------------------------------------

BROKEN = {
    "truncated": lambda p: (np.save(p, np.zeros((2, 5, 1), dtype=np.float32)),
                            p.write_bytes(p.read_bytes()[:-8])),
    "object": lambda p: np.save(p, np.array([None, 1.0], dtype=object), allow_pickle=True),
    "complex": lambda p: np.save(p, np.zeros((2, 5, 1), dtype=np.complex64)),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_stacking_and_pseudo_name_a_broken_predictions_file_and_the_fix(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path))
    folder = tmp_path / "Parent"
    folder.mkdir()
    BROKEN[kind](folder / "predictions.npy")
    np.save(folder / "outoffolds.npy", np.zeros(8, dtype=np.float32))
    with pytest.raises(G2NetError, match=r"predictions\.npy.*`python train\.py --config Parent --inference`") as info:
        g2net.stacking.load_experiment("Parent", 8, 5)
    one_line_error(info)
    with pytest.raises(G2NetError, match=r"predictions\.npy.*`python train\.py --config Parent --inference`") as info:
        pseudo.load_parent_predictions("Parent", 5)
    one_line_error(info)


def test_load_predictions_returns_float64_of_a_good_file(tmp_path):
    path = tmp_path / "p.npy"
    np.save(path, np.array([[1.5], [-2.0]], dtype=np.float32))
    loaded = load_predictions(path, "remake it")
    assert loaded.dtype == np.float64 and loaded.tolist() == [[1.5], [-2.0]]
    with pytest.raises(G2NetError, match="missing.npy not found; remake it"):
        load_predictions(tmp_path / "missing.npy", "remake it")


# --- 6. the signal-bank module ------------------------------------------------------------------

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


# --- 7. library calls equal to the code they replace ------------------------------------------

def old_minmax(values):
    low, high = float(np.min(values)), float(np.max(values))
    if high - low <= 0.0:
        return np.full_like(values, 0.5, dtype=np.float64)
    return (values - low) / (high - low)


def old_sigmoid(logits):
    logits = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(logits)
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    exp_x = np.exp(logits[~positive])
    out[~positive] = exp_x / (1.0 + exp_x)
    return out


def test_minmax_and_sigmoid_equal_the_old_code():
    values = np.random.default_rng(5).normal(size=200) * 3 + 1
    np.testing.assert_allclose(g2net.stacking.minmax(values), old_minmax(values), rtol=0, atol=1e-15)
    assert g2net.stacking.minmax(values).min() == 0.0 and g2net.stacking.minmax(values).max() == 1.0
    np.testing.assert_array_equal(g2net.stacking.minmax(np.full(4, 2.0)), np.full(4, 0.5))
    logits = np.concatenate([values * 10, [-800.0, -50.0, 0.0, 50.0, 800.0]])
    np.testing.assert_allclose(pseudo.sigmoid(logits), old_sigmoid(logits), rtol=1e-15, atol=0)
    assert pseudo.sigmoid(np.array([-800.0]))[0] == 0.0 and pseudo.sigmoid(np.array([800.0]))[0] == 1.0


@pytest.mark.parametrize("workers", [1, 3])
def test_map_in_order_keeps_task_order_for_any_workers(workers):
    tasks = list(range(50, 0, -1))
    assert pycbc_engine._map_in_order(str, tasks, workers, "t", "x", progress=False) == [str(t) for t in tasks]


def test_one_temporary_file_writer():
    found = []
    for path in sorted(REPO.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"os\.replace|mkstemp|\.rename\(", line):
                found.append(path.name)
    assert set(found) == {"utils.py"}, found


def test_atomic_write_leftovers_are_named_for_the_stale_temporary_cleanup(tmp_path):
    def killed(handle):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "train.csv", killed)
    assert list(tmp_path.iterdir()) == []  # removed on the way out
    child = subprocess.run(["python3", "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".train.csv.{int(child.stdout)}.abcd1234.tmp"  # a dead process's temporary
    leftover.write_text("x")
    assert prep_data.remove_stale_temporaries(tmp_path, printer=lambda _: None) == [leftover]
