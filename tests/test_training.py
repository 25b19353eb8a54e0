"""The training core end to end on a tiny simulated set: outputs, resume, inference, errors."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import (REPO, RUN_FOLDER_NOISE, SIM_TEST, SIM_TRAIN, assert_untouched, file_digests,
                      run_script)

import configs
import evaluate
import g2net.stacking
import stacking
from g2net.experiments import runner
from g2net.training import runtime as rt
from g2net.training.history import COLUMNS as HISTORY_COLUMNS
from utils import G2NetError, cli_errors


@pytest.fixture(scope="module")
def debug_run(simulated_input, tmp_path_factory) -> tuple[dict[str, str], Path, subprocess.CompletedProcess]:
    """``train.py --config Debug --tta`` once; tests below read its outputs."""
    results = tmp_path_factory.mktemp("debug_results")
    env = {"G2NET_INPUT_DIR": str(simulated_input), "G2NET_RESULTS_DIR": str(results)}
    done = run_script("train.py", "--config", "Debug", "--tta", env=env)
    return env, results / "Debug", done


def test_debug_run_writes_every_output_with_its_shape(debug_run):
    env, out, done = debug_run
    cv = configs.Debug.cv
    for name in ("outoffolds.npy", "outoffolds_tta.npy"):
        oof = np.load(out / name)
        assert oof.shape == (SIM_TRAIN, 1) and oof.dtype == np.float32
        assert np.isfinite(oof).all()
    for name in ("predictions.npy", "predictions_tta.npy"):
        test = np.load(out / name)
        assert test.shape == (cv, SIM_TEST, 1) and test.dtype == np.float32
        assert np.isfinite(test).all()
    # the two folds' models differ, so their test predictions must too
    assert not np.allclose(np.load(out / "predictions.npy")[0], np.load(out / "predictions.npy")[1])
    folds = np.load(out / "folds.npy")
    assert sorted(np.bincount(folds)) == [SIM_TRAIN // 2, SIM_TRAIN // 2]
    for k in range(cv):
        saved = torch.load(out / f"fold{k}.pt", weights_only=True)
        assert set(saved) == {"model", "state"}
        state = saved["state"]
        assert state["finished"] and state["epoch"] in range(configs.Debug.num_epochs)
        assert 0.0 <= state["best_score"] <= 1.0 and 0 <= state["best_epoch"] < configs.Debug.num_epochs
        assert not (out / f"fold{k}_last.pt").exists()
    logs = list(out.glob("Debug_*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "num_epochs: 2" in text and "model_params:" in text  # the config is printed
    epoch_lines = [line for line in text.splitlines() if "train_loss=" in line]
    assert len(epoch_lines) == cv * configs.Debug.num_epochs
    assert all("valid_loss=" in l and "valid_auc=" in l and "lr=" in l for l in epoch_lines)
    assert "out-of-fold AUC" in done.stdout


def test_debug_run_writes_its_history_and_learning_curve(debug_run):
    env, out, _ = debug_run
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert list(zip(history["fold"], history["epoch"])) == [(k, e) for k in range(configs.Debug.cv)
                                                           for e in range(configs.Debug.num_epochs)]
    for k, rows in history.groupby("fold"):
        state = torch.load(out / f"fold{k}.pt", weights_only=True)["state"]
        np.testing.assert_allclose(rows["valid_auc"], [h["score"] for h in state["history"]])
        np.testing.assert_allclose(rows["train_loss"], [h["train_loss"] for h in state["history"]])
        assert rows["best"].tolist() == [int(e == state["best_epoch"]) for e in rows["epoch"]]
        # every training example of the fold is seen once an epoch (the last partial batch dropped)
        batch = configs.Debug.batch_size
        assert rows["examples"].tolist() == [SIM_TRAIN // 2 // batch * batch] * configs.Debug.num_epochs
        assert rows["examples_seen"].tolist() == list(np.cumsum(rows["examples"]))
        np.testing.assert_allclose(rows["elapsed_seconds"], np.cumsum(rows["seconds"]), atol=2e-3)
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tta_is_the_mean_of_plain_and_flipped_logits(debug_run, simulated_input):
    _, out, _ = debug_run
    plain, tta = np.load(out / "predictions.npy")[0], np.load(out / "predictions_tta.npy")[0]
    model = configs.Debug.model(**configs.Debug.model_params).eval()
    model.load_state_dict(torch.load(out / "fold0.pt", weights_only=True)["model"])
    cache = np.load(simulated_input / "test_cache.npy", mmap_mode="r")
    flip = configs.Debug.transforms["tta"]
    with torch.no_grad():
        flipped = model(torch.from_numpy(np.stack([flip(np.asarray(x)) for x in cache[:8]]))).numpy()
    np.testing.assert_allclose(tta[:8], (plain[:8] + flipped) / 2, rtol=1e-4, atol=1e-5)
    assert not np.allclose(plain, tta)


def test_inference_reproduces_the_outputs_and_skip_existing_skips(debug_run, tmp_path):
    env, out, _ = debug_run
    before = {n: np.load(out / n) for n in ("outoffolds.npy", "predictions.npy")}
    done = run_script("train.py", "--config", "Debug", "--inference", env=env)
    for name, array in before.items():
        np.testing.assert_allclose(np.load(out / name), array, rtol=1e-5, atol=1e-6)
    assert "train_loss=" not in done.stdout
    done = run_script("train.py", "--config", "Debug", "--skip_existing", "--limit_fold", "1", env=env)
    assert "skipped" in done.stdout and "train_loss=" not in done.stdout


def test_predict_scores_a_folder_with_the_fold_mean(debug_run, simulated_input, tmp_path):
    env, out, _ = debug_run
    target = tmp_path / "scores.csv"
    run_script("predict.py", "--config", "Debug", "--input", str(simulated_input), "--out", str(target),
               env=env)
    scores = pd.read_csv(target, dtype={"id": str})
    sample = pd.read_csv(simulated_input / "sample_submission.csv", dtype={"id": str})
    assert list(scores["id"]) == list(sample["id"])
    test_ids = pd.read_csv(simulated_input / "test.csv", dtype={"id": str})["id"]
    logits = np.load(out / "predictions.npy").mean(axis=0)[:, 0]
    expected = pd.Series(1 / (1 + np.exp(-logits)), index=test_ids)
    np.testing.assert_allclose(scores["target"], expected[scores["id"]].values, rtol=1e-4, atol=1e-6)
    assert scores["target"].between(0, 1).all()


def test_resume_after_sigkill_is_bit_identical(debug_run, tmp_path):
    env, reference, _ = debug_run
    env = {**env, "G2NET_RESULTS_DIR": str(tmp_path / "results")}
    out = tmp_path / "results" / "Debug"
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), "--config", "Debug"], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "fold0_last.pt").exists():  # the first epoch of fold 0 is checkpointed
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "outoffolds.npy").exists()
    done = run_script("train.py", "--config", "Debug", "--resume", env=env)
    assert "resumed from" in done.stdout
    for name in ("outoffolds.npy", "predictions.npy"):
        assert np.array_equal(np.load(out / name), np.load(reference / name)), name
    # the resumed fold's history continues its own rows: the same epochs and figures as unbroken
    numbers = ["fold", "epoch", "train_loss", "valid_loss", "valid_auc", "lr", "examples_seen", "best"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv")[numbers],
                                  pd.read_csv(reference / "history.csv")[numbers])


def test_unknown_config_lists_the_closest_names(experiment_env):
    done = run_script("train.py", "--config", "Demoo", env=experiment_env, check=False)
    assert done.returncode == 2
    assert "unknown config 'Demoo'" in done.stderr and "Demo" in done.stderr
    assert "Traceback" not in done.stderr


def test_train_and_train_pseudo_refuse_each_others_configs(experiment_env):
    done = run_script("train.py", "--config", "DebugPseudo", env=experiment_env, check=False)
    assert done.returncode == 2 and "train_pseudo.py --config DebugPseudo" in done.stderr
    done = run_script("train_pseudo.py", "--config", "Debug", env=experiment_env, check=False)
    assert done.returncode == 2 and "train.py --config Debug" in done.stderr


def test_missing_inputs_say_how_to_make_them(tmp_path):
    env = {"G2NET_INPUT_DIR": str(tmp_path / "nothing"), "G2NET_RESULTS_DIR": str(tmp_path / "r")}
    done = run_script("train.py", "--config", "Debug", env=env, check=False)
    assert done.returncode == 2
    assert "train.csv not found" in done.stderr and "prep_data.py" in done.stderr


def test_missing_pseudo_parent_stops_before_training(experiment_env):
    done = run_script("train_pseudo.py", "--config", "DebugPseudo", "--debug", env=experiment_env,
                      check=False)
    assert done.returncode == 2
    assert "Debug" in done.stderr and "python train.py --config Debug" in done.stderr
    assert "train_loss=" not in done.stdout


class NaNAfter(nn.Module):
    """BCE that turns into NaN after ``calls`` evaluations: a diverging run, reproducibly."""

    def __init__(self, calls: int):
        super().__init__()
        self.calls, self.seen = calls, 0
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, output, target):
        self.seen += 1
        loss = self.bce(output, target)
        return loss * float("nan") if self.seen > self.calls else loss


def test_nan_loss_stops_the_fold_and_keeps_the_last_good_checkpoint(experiment_env, tmp_path):
    steps_per_epoch = (SIM_TRAIN // 2) // configs.Debug.batch_size

    class DivergingDebug(configs.Debug):
        name = "Diverging"
        criterion = NaNAfter(steps_per_epoch + 1)  # one good epoch and its validation

    args = runner.build_parser("test").parse_args(["--silent", "--limit_fold", "0"])
    with pytest.raises(G2NetError, match="loss became nan in epoch 1") as caught:
        runner.run_experiment(DivergingDebug, args)
    out = Path(experiment_env["G2NET_RESULTS_DIR"]) / "Diverging"
    assert f"The last completed epoch of this run is kept in {out / 'fold0_last.pt'}: rerun with " \
           "--resume to continue from it." in str(caught.value)
    good = torch.load(out / "fold0_last.pt", weights_only=True)
    assert good["state"]["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())
    assert not (out / "fold0.pt").exists()  # fold<k>.pt is only ever a finished fold


def test_limit_fold_out_of_range_is_refused(experiment_env):
    args = runner.build_parser("test").parse_args(["--silent", "--limit_fold", "5"])
    with pytest.raises(G2NetError, match="out of range.*2 folds"):
        runner.run_experiment(configs.Debug, args)


def test_gpu_runs_move_exact_preprocessing_to_the_device_and_cpu_runs_do_not():
    cpu = rt.Runtime(torch.device("cpu"), 0)
    assert rt.for_device(configs.Seq03aug3, cpu) is configs.Seq03aug3
    moved = rt.for_device(configs.Seq03aug3, rt.Runtime(torch.device("cuda", 0), 0))
    assert issubclass(moved, configs.Seq03aug3) and moved.name == "Seq03aug3"
    steps = [type(s).__name__ for s in moved.transforms["gpu"].steps]
    assert steps == ["Normalize", "BandPass"]
    assert [type(s).__name__ for s in moved.transforms["train"].transforms] == ["FlipWave"]
    assert configs.Seq03aug3.transforms.get("gpu") is None  # the config class is untouched


def test_demo_learns_well_above_chance(tmp_path):
    """Demo, as make demo trains it, on 600 simulated examples with the default priors."""
    root = tmp_path / "input"
    run_script("simulate.py", "--out", str(root), "--n-train", "600", "--n-test", "20", "--seed", "3",
               "--workers", "2", "--no-progress")
    run_script("prep_data.py", "--input", str(root), "--cache", "--no-progress")
    env = {"G2NET_INPUT_DIR": str(root), "G2NET_RESULTS_DIR": str(tmp_path / "results")}
    done = run_script("train.py", "--config", "Demo", "--silent", env=env)
    oof = np.load(tmp_path / "results" / "Demo" / "outoffolds.npy")[:, 0]
    targets = pd.read_csv(root / "train.csv")["target"].values
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(targets, oof) > 0.75, done.stdout


def test_snapshot_callbacks_write_what_they_say(experiment_env):
    from g2net.training.callbacks import SaveAllSnapshots, SaveEveryEpoch

    class EveryEpoch(configs.Debug):
        name = "EveryEpoch"
        callbacks = [SaveEveryEpoch(), SaveAllSnapshots()]

    args = runner.build_parser("test").parse_args(["--silent", "--limit_fold", "0"])
    runner.run_experiment(EveryEpoch, args)
    out = Path(experiment_env["G2NET_RESULTS_DIR"]) / "EveryEpoch"
    last = torch.load(out / "fold0.pt", weights_only=True)
    snapshots = [torch.load(out / f"fold0_epoch{e}.pt", weights_only=True) for e in range(2)]
    assert [s["state"]["epoch"] for s in snapshots] == [0, 1]
    for key, value in last["model"].items():  # SaveEveryEpoch keeps the last epoch, not the best
        assert torch.equal(value, snapshots[1]["model"][key])
    assert not any(torch.equal(v, snapshots[0]["model"][k]) for k, v in last["model"].items()
                   if v.is_floating_point() and v.numel() > 1)


def test_notify_me_posts_only_when_a_webhook_is_configured(monkeypatch):
    import http.server
    import json
    import threading

    from utils import notify_me

    monkeypatch.delenv("G2NET_WEBHOOK_URL", raising=False)
    assert notify_me("nothing configured") is False
    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.handle_request, daemon=True).start()
    monkeypatch.setenv("G2NET_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/")
    assert notify_me("fold 0 done") is True
    assert received == [{"text": "fold 0 done"}]
    server.server_close()
    monkeypatch.setenv("G2NET_WEBHOOK_URL", "http://127.0.0.1:9/unreachable")
    assert notify_me("lost") is False


# -- train.py's inputs: one line instead of a traceback, every existing file left as it was ------

def train_error(argv: list[str], capsys) -> str:
    """train.py in this process: exit status 2 and one error line, returned."""
    with pytest.raises(SystemExit) as caught:
        cli_errors(runner.main)(argv, pseudo=False)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("variable, default", [("G2NET_RESULTS_DIR", "results"), ("G2NET_INPUT_DIR", "input")])
def test_an_empty_folder_variable_is_refused_and_nothing_is_written_here(experiment_env, tmp_path,
                                                                          monkeypatch, capsys, variable,
                                                                          default):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setenv(variable, "")
    assert train_error(["--config", "Debug", "--silent"], capsys) == (
        f"error: {variable} is set but empty; unset it (default {default}/) or set it to a folder")
    assert list(here.iterdir()) == []


def test_a_results_folder_that_is_a_file_is_one_line(results, tmp_path, monkeypatch, capsys):
    taken = tmp_path / "results.txt"
    taken.write_text("my notes")
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(taken))
    assert train_error(["--config", "Debug", "--silent"], capsys) == (
        f"error: the results folder (G2NET_RESULTS_DIR) {taken} is a file, not a folder; give a folder "
        "to write into")
    assert taken.read_text() == "my notes"
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(results.parent))
    (results.parent / "Debug_debug").write_text("not a run")
    before = file_digests(results.parent)
    assert train_error(["--config", "Debug", "--debug", "--silent"], capsys) == (
        f"error: the results folder of Debug {results.parent / 'Debug_debug'} is a file, not a folder; "
        "give a folder to write into")
    assert_untouched(before, results.parent)


def write_train_csv(simulated_input: Path, root: Path, change) -> Path:
    """An input folder whose train.csv is the simulated one (absolute paths) changed by ``change``
    (a function of the table, or bytes to write instead)."""
    root.mkdir()
    for name in ("train.csv", "test.csv"):
        table = pd.read_csv(simulated_input / name, dtype={"id": str})
        table["path"] = [str(simulated_input / p) for p in table["path"]]
        if name == "train.csv" and callable(change):
            table = change(table)
        table.to_csv(root / name, index=False)
    if isinstance(change, bytes):
        (root / "train.csv").write_bytes(change)
    return root


def one_target(table: pd.DataFrame, value) -> pd.DataFrame:
    table["target"] = table["target"].astype(object)
    table.loc[3, "target"] = value
    return table


@pytest.mark.parametrize("change, message", [
    (lambda t: t.iloc[:1], r"train\.csv \(1 rows, \d positives\) cannot be split into the folds of "
                           r"config Debug \(.*\); use more examples of each class, or a config with "
                           r"fewer folds \(cv\)"),
    (lambda t: t.assign(path=t["path"].where(t.index != 5, "/data/notes.txt")),
     r"train\.csv: 1 paths are not \.npy example files \('/data/notes\.txt'\); rerun python "
     r"prep_data\.py --cache for .*"),
    (lambda t: one_target(t, "yes"), r"train\.csv: 1 target values are not numbers in \[0, 1\] \(ids "
                                     r"[0-9a-f]{10}\); rerun python prep_data\.py --cache"),
    (lambda t: one_target(t, "2"), r"1 target values are not numbers in \[0, 1\]"),
    (lambda t: t.drop(columns="target"), r"train\.csv has no column target; put the competition files"),
    (lambda t: pd.concat([t, t.iloc[:1]]), r"train\.csv: 1 ids appear more than once"),
    (bytes(range(128, 256)) * 16, r"train\.csv is not a readable csv \('utf-8' codec can't decode"),
])
def test_a_broken_train_csv_is_one_line_and_the_finished_run_is_untouched(results, simulated_input, tmp_path,
                                                                          monkeypatch, capsys, change,
                                                                          message):
    monkeypatch.setenv("G2NET_INPUT_DIR", str(write_train_csv(simulated_input, tmp_path / "edited", change)))
    before = file_digests(results, RUN_FOLDER_NOISE)
    assert re.fullmatch("error: .*" + message + ".*", train_error(["--config", "Debug", "--silent"], capsys))
    assert_untouched(before, results, RUN_FOLDER_NOISE)


def test_the_data_record_of_a_run_is_what_stacking_and_evaluate_check(debug_run, simulated_input,
                                                                      tmp_path, monkeypatch, capsys):
    env, out, _ = debug_run
    record = json.loads((out / "data.json").read_text())["files"]
    assert set(record) == {"outoffolds.npy", "outoffolds_tta.npy", "predictions.npy",
                           "predictions_tta.npy", "folds.npy"}
    monkeypatch.setenv("G2NET_RESULTS_DIR", env["G2NET_RESULTS_DIR"])
    before = file_digests(out)
    other = write_train_csv(simulated_input, tmp_path / "other",
                            lambda t: t.assign(target=np.where(t.index < 10, 1 - t["target"], t["target"])))
    for name in ("sample_submission.csv", "test_labels.csv", "injections.csv", "simulation.json"):
        shutil.copy(simulated_input / name, other / name)
    monkeypatch.setenv("G2NET_INPUT_DIR", str(simulated_input))
    inputs = g2net.stacking.load_inputs(printer=lambda line: None)
    assert g2net.stacking.load_experiment("Debug", inputs.n_train, inputs.n_test, inputs.identity).unrecorded == []
    monkeypatch.setenv("G2NET_INPUT_DIR", str(other))  # ten labels changed: another data set
    with pytest.raises(SystemExit) as caught:
        stacking.main(["--models", "Debug"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: experiment 'Debug': predictions_tta.npy was made from other data than the input folder "
        "holds now (another train.csv (its ids or labels)); retrain it on the current data: python "
        "train.py --config Debug (train_pseudo.py for a pseudo config)")
    simulation = json.loads((other / "simulation.json").read_text())
    (other / "simulation.json").write_text(json.dumps({**simulation, "seed": simulation["seed"] + 1}))
    with pytest.raises(SystemExit) as caught:  # the test set of another simulation of the same size
        evaluate.main(["--experiments", "Debug", "--out", str(tmp_path / "evaluation")])
    assert caught.value.code == 2
    assert "predictions.npy was made from other data than the input folder holds now (another " \
           "simulation.json (another simulation run))" in capsys.readouterr().err
    assert not (tmp_path / "evaluation").exists()
    assert_untouched(before, out)
