"""scripts/learning_curve.py and search.py --checkpoint: each epoch's snapshot searched and
scored, its training time from history.csv, resumable, and refused inputs in one line."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import configs
import evaluate_search
import search
import simulate_strain
from g2net.search.triggers import read_triggers, write_triggers
from utils import G2NetError

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("learning_curve", ROOT / "scripts" / "learning_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def strain(tmp_path_factory):
    """200 s of H1+L1+V1 strain with loud injections, and its noise: 30 slides of 2.5 s give 3,875 s
    of background, which reaches 1,000 false alarms per month."""
    out = tmp_path_factory.mktemp("curve_strain")
    simulate_strain.main(["--out", str(out), "--duration", "200", "--padding", "20", "--detectors",
                          "H1,L1,V1", "--chirp-distance-range", "15", "30", "--seed", "2", "--no-progress"])
    return out


@pytest.fixture
def snapshots(tmp_path, monkeypatch):
    """Two epochs of a Debug fold (different weights) and the history.csv of their run."""
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path / "results"))
    folder = tmp_path / "results" / "Debug_debug"
    folder.mkdir(parents=True)
    for epoch in range(2):
        torch.manual_seed(epoch)
        model = configs.Debug.model(**configs.Debug.model_params)
        torch.save({"model": model.state_dict(), "state": {"finished": False, "epoch": epoch}},
                   folder / f"fold0_epoch{epoch}.pt")
    (folder / "history.csv").write_text(
        "fold,epoch,train_loss,valid_loss,valid_auc,lr,seconds,elapsed_seconds,examples,examples_seen,best\n"
        "0,0,0.6,0.6,0.71,0.001,30.0,30.0,100,100,0\n"
        "0,1,0.5,0.5,0.74,0.0005,31.5,61.5,100,200,1\n")
    return folder


SEARCH = ["--", "--stride", "1.0", "--slide-step", "2.5", "--no-progress"]


def _args(strain, out, *extra):
    return ["--config", "Debug", "--debug", "--foreground", str(strain / "foreground.hdf"),
            "--background", str(strain / "background.hdf"), "--injections", str(strain / "injections.hdf"),
            "--slides", "30", "--out", str(out), *extra]


def test_each_epoch_is_searched_with_its_snapshot_and_scored(strain, snapshots, tmp_path, monkeypatch):
    module = _script()
    out = tmp_path / "curve"
    rows = module.main(_args(strain, out, *SEARCH))
    assert [r["epoch"] for r in rows] == [0, 1]
    assert [r["train_seconds"] for r in rows] == [30.0, 61.5]  # from history.csv, cumulative
    assert [r["examples_seen"] for r in rows] == [100, 200] and rows[1]["valid_auc"] == 0.74
    stats = []
    for epoch in (0, 1):
        time, stat, _, attrs = read_triggers(out / f"bg_epoch{epoch}.hdf")
        assert attrs["checkpoints"] == str(snapshots / f"fold0_epoch{epoch}.pt") and attrs["slides"] == 30
        assert read_triggers(out / f"fg_epoch{epoch}.hdf")[3]["slides"] == 0
        stats.append(stat)
        # the row is evaluate_search.py's own reading of the same two files
        summary = evaluate_search.main([
            "--injections", str(strain / "injections.hdf"), "--foreground-files", str(strain / "foreground.hdf"),
            "--foreground-events", str(out / f"fg_epoch{epoch}.hdf"), "--background-events",
            str(out / f"bg_epoch{epoch}.hdf"), "--label", "x", "--out", str(tmp_path / f"check{epoch}")])
        at = summary["searches"]["x"]["at_far_per_month"]
        assert rows[epoch]["reached_1000"] == 1 and rows[epoch]["reached_1"] == 0  # 3,875 s of background
        assert attrs["duration"] == 3875.0
        # untrained weights find little: the row holds whatever evaluate_search.py measured
        assert rows[epoch]["distance_1000"] == at["1000"]["distance"]
        assert rows[epoch]["found_1000"] == at["1000"]["found"]
    assert len(stats[0]) != len(stats[1]) or not np.allclose(stats[0], stats[1])  # two models
    with open(out / "learning_curve.csv") as handle:
        written = list(csv.DictReader(handle))
    assert [float(r["distance_1000"]) for r in written] == pytest.approx([r["distance_1000"] for r in rows])
    assert [r["epoch"] for r in written] == ["0", "1"] and written[1]["train_seconds"] == "61.5"
    assert (out / "learning_curve.png").stat().st_size > 10_000

    # a rerun keeps the finished searches (a killed run resumes where it stopped)
    monkeypatch.setattr(search, "main", lambda *a, **k: pytest.fail("searched again"))
    again = module.main(_args(strain, out, *SEARCH))
    assert [r["distance_1000"] for r in again] == [r["distance_1000"] for r in rows]

    # --reference: a search that finds every injection above a quiet background, scored beside
    # each epoch (the kept searches, not searched again): its distance and the network's fraction
    # of it, paired, as evaluate_search.py computes them, in the rows and the CSV
    with h5py.File(strain / "injections.hdf") as f:
        tc = np.sort(f["tc"][()])
    fg, bg = tmp_path / "ref_fg.hdf", tmp_path / "ref_bg.hdf"
    write_triggers(fg, tc, np.full(len(tc), 100.0), 0.3)
    write_triggers(bg, np.arange(10.0, 190.0, 30.0), np.full(6, 1.0), 0.3, attrs=dict(duration=3875.0))
    against = module.main(_args(strain, out, "--reference", str(fg), str(bg), *SEARCH))
    alone = evaluate_search.main([
        "--injections", str(strain / "injections.hdf"), "--foreground-files", str(strain / "foreground.hdf"),
        "--foreground-events", str(fg), "--background-events", str(bg), "--label", "r",
        "--out", str(tmp_path / "alone")])["searches"]["r"]["at_far_per_month"]["1000"]
    assert alone["found"] == alone["injections"] > 0  # a perfect reference
    for row, plain in zip(against, rows):
        assert row["distance_1000"] == plain["distance_1000"]
        assert row["reference_reached_1000"] == 1 and row["reference_distance_1000"] == alone["distance"]
        # the reference finds everything, so every resample has a ratio: network / reference
        assert row["ratio_1000"] == pytest.approx(row["distance_1000"] / alone["distance"])
        assert row["ratio_low_1000"] <= row["ratio_1000"] <= row["ratio_high_1000"] <= 1.0
    with open(out / "learning_curve.csv") as handle:
        written = list(csv.DictReader(handle))
    assert float(written[0]["reference_distance_1000"]) == pytest.approx(alone["distance"])
    assert "ratio_low_1" in written[0] and written[0]["reference_reached_1"] == "0"


def test_search_checkpoint_option(strain, snapshots, tmp_path):
    """--checkpoint scores with exactly that file; a missing one is refused before any output."""
    one = search.main(["--config", "Debug", "--debug", "--input", str(strain / "foreground.hdf"),
                       "--output", str(tmp_path / "a.hdf"), "--stride", "1.0", "--no-progress",
                       "--checkpoint", str(snapshots / "fold0_epoch1.pt")])
    both = search.main(["--config", "Debug", "--debug", "--input", str(strain / "foreground.hdf"),
                        "--output", str(tmp_path / "b.hdf"), "--stride", "1.0", "--no-progress",
                        "--checkpoint", str(snapshots / "fold0_epoch0.pt"), str(snapshots / "fold0_epoch1.pt")])
    assert not np.array_equal(one["stat"], both["stat"])  # the mean of two models is another statistic
    with pytest.raises(G2NetError, match="no such checkpoint file"):
        search.main(["--config", "Debug", "--debug", "--input", str(strain / "foreground.hdf"),
                     "--output", str(tmp_path / "c.hdf"), "--checkpoint", str(tmp_path / "nope.pt")])
    assert not (tmp_path / "c.hdf").exists()
    with h5py.File(tmp_path / "a.hdf") as f:
        assert f.attrs["checkpoints"] == str(snapshots / "fold0_epoch1.pt")


@pytest.mark.parametrize("extra,message", [
    (["--epochs", "5"], "--epochs 5: no such snapshot"),
    (["--", "--slides", "3"], "--slides after --: the script sets it"),
    (["--reference", "nope_fg.hdf", "nope_bg.hdf"], "--reference nope_fg.hdf: no such trigger file"),
])
def test_refused_before_any_search(strain, snapshots, tmp_path, monkeypatch, capsys, extra, message):
    module = _script()
    monkeypatch.setattr(search, "main", lambda *a, **k: pytest.fail("searched"))
    with pytest.raises(SystemExit) as done:
        module.main(_args(strain, tmp_path / "curve", *extra))
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "curve").exists()


def test_no_snapshots_says_which_config_keeps_them(strain, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path / "results"))
    (tmp_path / "results" / "Debug_debug").mkdir(parents=True)
    with pytest.raises(SystemExit):
        _script().main(_args(strain, tmp_path / "curve"))
    assert "SaveAllSnapshots, e.g. Demo2detOnlineCurve" in capsys.readouterr().err
